package io.strata.union.view;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A merged lower tree of lowers that never change ({@code Options.immutableLowers}) outlives
 * its last view, for the next view of the same directories; lowers that may change are read
 * afresh by every view after the last one went, as kernel overlayfs reads them at each mount.
 */
class KeptLowerTreeTest {
  @TempDir Path tmp;

  private static final UnionView.Options FIXED =
      UnionView.Options.defaults().withImmutableLowers(true);
  private static final UnionView.Options CHANGING = UnionView.Options.defaults();

  @BeforeEach
  @AfterEach
  void noKeptTrees() {
    UnionView.dropKeptLowerTrees(true);
  }

  private List<Path> layers(String name) throws Exception {
    Path top = tmp.resolve(name + "-top");
    Path bottom = tmp.resolve(name + "-bottom");
    Files.createDirectories(top.resolve("etc"));
    Files.createDirectories(bottom.resolve("etc"));
    Files.writeString(top.resolve("etc/conf"), "top");
    Files.writeString(bottom.resolve("etc/base"), "base");
    return List.of(top, bottom);
  }

  private static String read(UnionView v, String path) throws Exception {
    return new String(v.readSmallFile(path, 1 << 20), StandardCharsets.UTF_8);
  }

  private static long kept(UnionView v) {
    @SuppressWarnings("unchecked")
    var lower = (java.util.Map<String, Object>) v.cacheStats().get("lowerDirectories");
    return (Long) lower.get("keptFromEarlierMounts");
  }

  /** This process's descriptors that lead into {@code dir}. */
  private static List<String> descriptorsInto(Path dir) throws Exception {
    List<String> out = new ArrayList<>();
    String real = dir.toRealPath().toString();
    try (Stream<Path> fds = Files.list(Path.of("/proc/self/fd"))) {
      for (Path fd : (Iterable<Path>) fds::iterator) {
        try {
          String target = Files.readSymbolicLink(fd).toString();
          if (target.equals(real) || target.startsWith(real + "/")) {
            out.add(fd.getFileName() + " -> " + target);
          }
        } catch (java.io.IOException gone) {
          // the listing's own descriptor, closed meanwhile
        }
      }
    }
    return out;
  }

  @Test
  void theNextViewOfTheSameLayersTakesTheTreeBackWithoutHoldingTheLayersMeanwhile()
      throws Exception {
    List<Path> layers = layers("a");
    try (UnionView v = UnionView.open(layers, null, null, FIXED)) {
      assertThat(read(v, "/etc/base")).isEqualTo("base");
      assertThat(v.readdir("/etc")).extracting(UnionView.DirEntry::name)
          .contains("conf", "base");
      assertThat(kept(v)).isZero();
    }
    assertThat(UnionView.keptLowerTrees()).isEqualTo(1);
    // kept, but the layers' directories are not held open: their filesystem is free to go
    assertThat(descriptorsInto(tmp)).isEmpty();
    try (UnionView v = UnionView.open(layers, null, null, FIXED)) {
      assertThat(kept(v)).isEqualTo(1);
      assertThat(UnionView.keptLowerTrees()).isZero();
      assertThat(read(v, "/etc/conf")).isEqualTo("top");
      assertThat(read(v, "/etc/base")).isEqualTo("base");
      assertThat(v.readdir("/etc")).extracting(UnionView.DirEntry::name)
          .contains("conf", "base");
      assertThat(descriptorsInto(tmp)).hasSize(2); // its two roots, opened again
    }
    assertThat(UnionView.dropKeptLowerTrees(false)).isFalse(); // its minute is not up
    assertThat(UnionView.dropKeptLowerTrees(true)).isTrue();
    assertThat(UnionView.keptLowerTrees()).isZero();
    assertThat(descriptorsInto(tmp)).isEmpty();
  }

  @Test
  void lowersThatMayChangeAreReadAfreshAtTheNextView() throws Exception {
    List<Path> layers = layers("b");
    try (UnionView v = UnionView.open(layers, null, null, CHANGING)) {
      assertThat(read(v, "/etc/base")).isEqualTo("base");
    }
    assertThat(UnionView.keptLowerTrees()).isZero();
    Files.writeString(layers.get(1).resolve("etc/base"), "changed between mounts");
    Files.writeString(layers.get(1).resolve("etc/new"), "new");
    try (UnionView v = UnionView.open(layers, null, null, CHANGING)) {
      assertThat(read(v, "/etc/base")).isEqualTo("changed between mounts");
      assertThat(read(v, "/etc/new")).isEqualTo("new");
      assertThat(kept(v)).isZero();
    }
  }

  @Test
  void aViewThatDoesNotVouchForTheLowersDropsAKeptTree() throws Exception {
    List<Path> layers = layers("c");
    try (UnionView v = UnionView.open(layers, null, null, FIXED)) {
      assertThat(v.getattr("/etc/base").size()).isEqualTo(4);
    }
    assertThat(UnionView.keptLowerTrees()).isEqualTo(1);
    Files.writeString(layers.get(1).resolve("etc/base"), "longer now");
    try (UnionView v = UnionView.open(layers, null, null, CHANGING)) {
      assertThat(kept(v)).isZero();
      assertThat(v.getattr("/etc/base").size()).isEqualTo(10);
    }
    assertThat(UnionView.keptLowerTrees()).isZero();
    try (UnionView v = UnionView.open(layers, null, null, FIXED)) {
      assertThat(kept(v)).isZero(); // made afresh: nothing stale was left to take back
      assertThat(read(v, "/etc/base")).isEqualTo("longer now");
    }
  }

  @Test
  void aLayerMadeAgainAtTheSamePathIsNotMistakenForTheOneKept() throws Exception {
    List<Path> layers = layers("d");
    try (UnionView v = UnionView.open(layers, null, null, FIXED)) {
      assertThat(read(v, "/etc/base")).isEqualTo("base");
    }
    // removed and made again (as a store does when a layer is deleted and pulled again): the
    // inode number may well be reused, its ctime and birth time are new
    io.strata.layers.fs.Trees.deleteRecursively(layers.get(1));
    Thread.sleep(10);
    Files.createDirectories(layers.get(1).resolve("etc"));
    Files.writeString(layers.get(1).resolve("etc/other"), "other");
    try (UnionView v = UnionView.open(layers, null, null, FIXED)) {
      assertThat(kept(v)).isZero();
      assertThat(v.readdir("/etc")).extracting(UnionView.DirEntry::name)
          .contains("conf", "other").doesNotContain("base");
    }
  }

  @Test
  void atMostEightTreesAreKeptTheOldestGoingFirst() throws Exception {
    List<List<Path>> sets = new ArrayList<>();
    for (int i = 0; i < 10; i++) {
      sets.add(layers("set" + i));
      try (UnionView v = UnionView.open(sets.get(i), null, null, FIXED)) {
        read(v, "/etc/base");
      }
    }
    assertThat(UnionView.keptLowerTrees()).isEqualTo(LowerTree.MAX_KEPT);
    try (UnionView v = UnionView.open(sets.get(0), null, null, FIXED)) {
      assertThat(kept(v)).isZero(); // the first two went
    }
    try (UnionView v = UnionView.open(sets.get(9), null, null, FIXED)) {
      assertThat(kept(v)).isEqualTo(1);
    }
  }
}
