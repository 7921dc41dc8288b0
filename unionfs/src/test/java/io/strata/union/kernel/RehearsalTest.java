package io.strata.union.kernel;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class RehearsalTest {
  @TempDir
  Path dir;

  @Test
  void everyRequestOfTheRehearsalIsAnsweredAsOnAMountAndNothingIsLeft() throws Exception {
    List<String> log = new ArrayList<>();
    assertThat(Rehearsal.run(dir, log::add)).as("%s", log)
        .isZero();
    assertThat(log).isEmpty();
    try (Stream<Path> left = Files.list(dir)) {
      assertThat(left).as("the scratch directory is removed").isEmpty();
    }
  }

  @Test
  void theScratchOfAKilledRehearsalIsRemovedByTheNextAndAFreshOneIsLeftAlone() throws Exception {
    Path killed = Files.createDirectories(dir.resolve("strata-rehearsal-1/upper/etc"));
    Files.writeString(killed.resolve("passwd"), "x");
    for (Path p : List.of(killed, killed.getParent(), killed.getParent().getParent())) {
      Files.setLastModifiedTime(p, java.nio.file.attribute.FileTime.fromMillis(
          System.currentTimeMillis() - 3_600_000));
    }
    Path running = Files.createDirectories(dir.resolve("strata-rehearsal-2"));
    Path other = Files.createDirectories(dir.resolve("something-else"));
    Files.setLastModifiedTime(other, java.nio.file.attribute.FileTime.fromMillis(0));
    // an old one someone else owns (in a shared /tmp): not ours to remove
    Path foreign = Files.createDirectories(dir.resolve("strata-rehearsal-3"));
    io.strata.layers.fs.Posix.lchown(foreign, 65534, 65534);
    Files.setLastModifiedTime(foreign, java.nio.file.attribute.FileTime.fromMillis(0));
    assertThat(Rehearsal.run(dir, s -> { })).isZero();
    assertThat(dir.resolve("strata-rehearsal-1")).doesNotExist();
    assertThat(running).isDirectory();
    assertThat(other).isDirectory();
    assertThat(foreign).isDirectory();
  }

  @Test
  void aRehearsalThatCannotStartSaysWhyAndThrowsNothing() {
    List<String> log = new ArrayList<>();
    assertThat(Rehearsal.run(dir.resolve("missing"), log::add)).isNegative();
    assertThat(log).singleElement().asString().contains("rehearsal").contains("missing");
  }
}
