package io.strata.union.view;

import static org.assertj.core.api.Assertions.assertThat;

import io.strata.layers.fs.Posix;
import io.strata.layers.fs.RawFs;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;
import java.util.stream.Stream;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * A lookup in a lower directory not merged yet goes name by name through the layers
 * ({@link LowerTree#entry}, {@link LowerTree#layers}); the merge itself is checked against
 * kernel overlayfs by the mount tests. Here the two must agree on every name of every
 * directory of layers full of whiteouts (both forms), opaque directories (both forms, also
 * at the root), directories over files and files over directories.
 */
class LowerTreeTest {
  @TempDir Path tmp;

  /** How whiteouts and opaque markers are written: the kernel's form, or the OCI files. */
  private boolean kernelForm;

  private void whiteout(Path p) throws Exception {
    Files.createDirectories(p.getParent());
    if (kernelForm) {
      Posix.mknod(p, Posix.S_IFCHR, 0, 0);
    } else {
      Files.createFile(p.resolveSibling(".wh." + p.getFileName()));
    }
  }

  private void opaque(Path dir) throws Exception {
    Files.createDirectories(dir);
    if (kernelForm) {
      Posix.lsetxattr(dir, "trusted.overlay.opaque", new byte[] {'y'});
    } else {
      Files.createFile(dir.resolve(".wh..wh..opq"));
    }
  }

  private static void file(Path p) throws Exception {
    Files.createDirectories(p.getParent());
    Files.writeString(p, p.getFileName().toString());
  }

  /** Four layers, top first. */
  private List<Path> layers() throws Exception {
    Path l1 = tmp.resolve("l1");
    Path l2 = tmp.resolve("l2");
    Path l3 = tmp.resolve("l3");
    Path l4 = tmp.resolve("l4");
    // bottom
    file(l4.resolve("a/x"));
    file(l4.resolve("a/y"));
    file(l4.resolve("b/deep/z"));
    file(l4.resolve("c"));
    file(l4.resolve("d/under"));
    file(l4.resolve("o/old"));
    file(l4.resolve("w/gone/inside"));
    file(l4.resolve("keep/k"));
    Files.createDirectories(l4.resolve("e/f/g"));
    Files.createSymbolicLink(l4.resolve("link"), Path.of("a/x"));
    // l3: a file over a directory, a directory over a file, whiteouts
    file(l3.resolve("b")); // hides b/ below
    file(l3.resolve("c/now-a-dir"));
    whiteout(l3.resolve("a/x"));
    whiteout(l3.resolve("w/gone"));
    file(l3.resolve("e/f/g/h"));
    file(l3.resolve("keep/k3"));
    // l2: an opaque directory, a whiteout of a whole directory, a name back after a whiteout
    opaque(l2.resolve("o"));
    file(l2.resolve("o/new"));
    whiteout(l2.resolve("d"));
    file(l2.resolve("a/x")); // back above its whiteout
    Files.createDirectories(l2.resolve("e/f"));
    file(l2.resolve("keep/k2"));
    // top: a directory that merges with three below, a whiteout beside a same-named file
    file(l1.resolve("e/f/top"));
    file(l1.resolve("keep/k1"));
    if (!kernelForm) { // a .wh. file beside the name it hides below (only the file form can)
      file(l1.resolve("both"));
      whiteout(l1.resolve("both"));
      file(l2.resolve("both/below"));
    }
    file(l1.resolve("root-file"));
    return List.of(l1, l2, l3, l4);
  }

  private static LowerTree tree(List<Path> layers) throws Exception {
    List<Loc> roots = new ArrayList<>();
    for (Path l : layers) {
      roots.add(new Loc(RawFs.open(RawFs.AT_FDCWD, RawFs.raw(l),
          RawFs.O_PATH | RawFs.O_DIRECTORY, 0), ""));
    }
    return new LowerTree(roots, 100_000);
  }

  /** Every relative path that appears in any layer, and a few that appear in none. */
  private static TreeSet<String> paths(List<Path> layers) throws Exception {
    TreeSet<String> all = new TreeSet<>();
    for (Path l : layers) {
      try (Stream<Path> s = Files.walk(l)) {
        s.filter(p -> !p.equals(l)).forEach(p -> {
          String rel = l.relativize(p).toString();
          all.add(rel.replace(".wh.", ""));
          all.add(rel);
        });
      }
    }
    all.addAll(List.of("nothing", "a/nothing", "b/deep", "b/deep/z", "c/x", "o/nothing"));
    all.remove("");
    return all;
  }

  /** An entry in words that two trees of the same layers (their own descriptors) share. */
  private static String describe(LowerTree t, LowerTree.Entry e) {
    if (e == null) {
      return "none";
    }
    List<String> dirs = new ArrayList<>();
    if (e.dirs() != null) {
      e.dirs().forEach(d -> dirs.add(t.layerIndex(d) + ":" + d.rel()));
    }
    return e.name() + " layer " + e.layer() + " at " + e.path().rel() + " type " + e.type()
        + " dir " + e.isDir() + " over " + dirs + " ino " + e.ino();
  }

  private static String describe(LowerTree t, List<Loc> layers) {
    if (layers == null) {
      return "none";
    }
    List<String> out = new ArrayList<>();
    layers.forEach(d -> out.add(t.layerIndex(d) + ":" + d.rel()));
    return out.toString();
  }

  @ParameterizedTest(name = "kernel form {0}, second layer's root opaque {1}")
  @CsvSource({"true, false", "false, false", "false, true"})
  void aLookupByNameAgreesWithTheMerge(boolean kernel, boolean rootOpaque) throws Exception {
    kernelForm = kernel;
    List<Path> layers = layers();
    if (rootOpaque) { // the file form only: the merge reads only that at the root
      Files.createFile(layers.get(1).resolve(".wh..wh..opq"));
    }
    LowerTree merged = tree(layers);
    LowerTree byName = tree(layers);
    TreeSet<String> all = paths(layers);
    int seen = 0;
    // deepest first, so that the lookups by name resolve their parents themselves
    for (String p : all.descendingSet()) {
      int slash = p.lastIndexOf('/');
      String dir = slash < 0 ? "" : p.substring(0, slash);
      String name = p.substring(slash + 1);
      LowerTree.Dir d = merged.dir(dir);
      LowerTree.Entry want = d == null ? null : d.entries().get(name);
      assertThat(describe(byName, byName.entry(dir, name))).as(p)
          .isEqualTo(describe(merged, want));
      LowerTree.Dir self = merged.dir(p);
      assertThat(describe(byName, byName.layers(p))).as("layers of " + p)
          .isEqualTo(describe(merged, self == null ? null : self.layers()));
      seen += want == null ? 0 : 1;
    }
    assertThat(describe(byName, byName.layers("")))
        .isEqualTo(describe(merged, merged.dir("").layers()));
    assertThat(byName.cachedDirectories()).as("nothing merged for the lookups").isZero();
    assertThat(seen).as("names visible").isGreaterThan(10);
  }
}
