package io.strata.runtime.container;

import static org.assertj.core.api.Assertions.assertThat;

import io.strata.layers.LayerStore;
import io.strata.layers.base.Progress;
import io.strata.layers.fs.Mounts;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A container's writes, committed, are the next container's image. */
class ContainerCommitTest {
  @TempDir Path dir;
  LayerStore store;

  @AfterEach
  void nothingLeftBehind() throws Exception {
    assertThat(Mounts.table()).noneMatch(e -> e.mountpoint().startsWith(dir));
  }

  private String cli(int expect, String... args) {
    List<String> all = new ArrayList<>(List.of("--root", store.root().toString()));
    all.addAll(List.of(args));
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    PrintStream old = System.out;
    int code;
    try {
      System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
      code = io.strata.cli.Main.run(all.toArray(String[]::new));
    } finally {
      System.setOut(old);
    }
    String text = out.toString(StandardCharsets.UTF_8);
    assertThat(code).as(String.join(" ", args) + "\n" + text).isEqualTo(expect);
    return text;
  }

  @Test
  void aStoppedContainersChangesBecomeAnImageThatRuns() throws Exception {
    io.strata.layers.fs.Posix.chmod(dir, 0755);
    Path tar = TestImages.tar(TestImages.busyboxRoot(dir.resolve("bb")), dir.resolve("bb.tar"));
    store = LayerStore.open(dir.resolve("store"), System.err::println);
    store.importImage(tar, "bb:test", null, Progress.NONE);
    cli(0, "run", "--name", "cc", "bb:test", "sh", "-c",
        "echo hi > /new && rm /bin/ls && mkdir -p /srv/data && chmod 700 /srv/data");
    String diff = cli(0, "diff", "cc");
    assertThat(diff.lines().toList()).contains("A /new", "C /bin", "D /bin/ls", "A /srv",
        "A /srv/data");
    cli(0, "commit", "cc", "committed:1", "-c", "CMD [\"cat\", \"/new\"]");
    // (a container's output goes to strata's own stdout, so the checks are exit codes)
    cli(0, "run", "--rm", "committed:1"); // its CMD: cat /new
    cli(0, "run", "--rm", "committed:1", "sh", "-c", "test \"$(cat /new)\" = hi");
    cli(1, "run", "--rm", "committed:1", "test", "-e", "/bin/ls");
    cli(0, "run", "--rm", "committed:1", "sh", "-c", "test \"$(stat -c %a /srv/data)\" = 700");
    cli(0, "rm", "cc");
    cli(3, "diff", "cc");
  }
}
