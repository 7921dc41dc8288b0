package io.strata.union.mount;

import io.strata.union.view.UnionView;
import io.strata.union.view.UpperChanges;
import io.strata.union.view.WhiteoutForm;
import static org.assertj.core.api.Assertions.assertThat;

import io.strata.layers.ImageRecord;
import io.strata.layers.LayerStore;
import io.strata.layers.base.Progress;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 16, item 6: directories a lower layer contributes to are renamed as kernel overlayfs
 * with redirect_dir=on renames them (they were EXDEV). The cases of unionmount-testsuite's
 * four directory-rename tests, written anew in {@code dir-rename-cases.py}, give the same
 * outcomes and the same tree as on kernel overlayfs, also after both are mounted again; kernel
 * overlayfs reads strata's upper as strata does; and a commit of the upper is the OCI layer
 * of those renames (applied over the lower, it shows the same tree).
 */
class DirectoryRenameTest {
  @TempDir Path tmp;

  private Path lower() throws Exception {
    Path l = Files.createDirectories(tmp.resolve("lower"));
    Mounted.run("sh", "-ec", "cd $1; for i in $(seq 0 19); do mkdir -p c$i/p/pop/c c$i/e c$i/e2;"
        + " echo A > c$i/p/a; echo B > c$i/p/pop/b; echo F > c$i/f; done", "sh", l.toString());
    return l;
  }

  private String cases(Path mp) throws Exception {
    Path script = tmp.resolve("dir-rename-cases.py");
    try (InputStream in = getClass().getResourceAsStream("/dir-rename-cases.py")) {
      Files.write(script, in.readAllBytes());
    }
    return Mounted.run("python3", script.toString(), mp.toString());
  }

  @Test
  void renamingLowerDirectoriesMatchesKernelOverlayfsWithRedirectDir() throws Exception {
    Path lower = lower();
    String kernel;
    Map<String, String> kernelTree;
    try (Mounted k = Mounted.kernel(List.of(lower), tmp.resolve("ku"), tmp.resolve("kw"),
        tmp.resolve("km"))) {
      kernel = cases(k.mountpoint);
    }
    try (Mounted k = Mounted.kernel(List.of(lower), tmp.resolve("ku"), tmp.resolve("kw"),
        tmp.resolve("km"))) {
      kernelTree = TreeSnapshot.of(k.mountpoint); // mounted again: what the upper keeps
    }
    // the script saw renames work and their contents, so a broken script cannot pass
    assertThat(kernel).contains("('rename', ('p', 'e/x'), 'ok')")
        .contains("('cat', 'e/x/a', 'A\\n')").contains("('ls', 'p2/pop', ['b', 'd'])")
        .doesNotContain("EXDEV");
    Map<String, String> strataTree;
    try (Mounted s = Mounted.strata(List.of(lower), tmp.resolve("su"), tmp.resolve("sw"),
        tmp.resolve("sm"))) {
      assertThat(cases(s.mountpoint)).isEqualTo(kernel);
      assertThat(TreeSnapshot.of(s.mountpoint)).isEqualTo(kernelTree);
    }
    try (Mounted s = Mounted.strata(List.of(lower), tmp.resolve("su"), tmp.resolve("sw"),
        tmp.resolve("sm"))) {
      strataTree = TreeSnapshot.of(s.mountpoint);
      assertThat(strataTree).as("mounted again").isEqualTo(kernelTree);
    }
    if (UnionView.Options.defaults().whiteoutForm() == WhiteoutForm.DEVICE) {
      // an upper in the kernel's form: kernel overlayfs follows strata's redirects too
      try (Mounted k = Mounted.kernel(List.of(lower), tmp.resolve("su"), tmp.resolve("kw2"),
          tmp.resolve("km2"))) {
        assertThat(TreeSnapshot.of(k.mountpoint)).isEqualTo(kernelTree);
      }
    }
    // the commit: the upper as an OCI layer, applied over the lower, shows the same tree
    Path tar = tmp.resolve("changes.tar");
    try (UpperChanges u = new UpperChanges(tmp.resolve("su"), List.of(lower));
        OutputStream out = Files.newOutputStream(tar)) {
      u.writeTar(out);
    }
    Path lowerTar = tmp.resolve("lower.tar");
    Mounted.run("tar", "-C", lower.toString(), "-cf", lowerTar.toString(), ".");
    LayerStore store = LayerStore.open(tmp.resolve("store"), line -> { });
    ImageRecord base = store.importImage(lowerTar, "base:1", null, Progress.NONE);
    ImageRecord changes = store.importImage(tar, "changes:1", null, Progress.NONE);
    List<Path> layers = List.of(store.layerTree(changes.diffIds().get(0)),
        store.layerTree(base.diffIds().get(0)));
    // (read by strata: stored layers keep the OCI whiteouts, which the kernel does not read)
    try (Mounted c = Mounted.strata(layers, null, null, tmp.resolve("committed"))) {
      assertThat(withoutDirectoryLinks(TreeSnapshot.of(c.mountpoint)))
          .as("the committed layer over the lower")
          .isEqualTo(withoutDirectoryLinks(strataTree));
    }
  }

  /**
   * A tree without directories' link counts: a renamed directory is merged in the view (count
   * 1, as kernel overlayfs reports) and whole in the committed layer (its real count).
   */
  private static Map<String, String> withoutDirectoryLinks(Map<String, String> tree) {
    Map<String, String> out = new java.util.TreeMap<>();
    tree.forEach((k, v) -> out.put(k, v.startsWith("04") ? v.replaceAll(" nlink=\\d+", "") : v));
    return out;
  }

  @Test
  void withRedirectDirOffALowerDirectoryIsNotRenamed() throws Exception {
    Path lower = lower();
    UnionView.Options d = UnionView.Options.defaults();
    UnionView.Options off = new UnionView.Options(d.whiteoutForm(), d.metacopy(), d.xattrs(),
        d.fsync(), d.uids(), d.gids(), false, d.cacheEntries(), false, false);
    try (Mounted s = Mounted.strata(List.of(lower), tmp.resolve("su"), tmp.resolve("sw"),
        tmp.resolve("sm"), off)) {
      assertThat(FsOp.rename("c0/p", "c0/n").outcome(s.mountpoint)).contains("errno 18");
      assertThat(FsOp.rename("c0/e", "c0/n").outcome(s.mountpoint)).contains("errno 18");
      assertThat(FsOp.mkdir("c0/new").outcome(s.mountpoint)).isEqualTo("ok");
      assertThat(FsOp.rename("c0/new", "c0/n").outcome(s.mountpoint)).isEqualTo("ok");
    }
    assertThat(OverlayOptions.parse(List.of("lowerdir=/a,redirect_dir=off"), w -> { }).view()
        .redirectDir()).isFalse();
    assertThat(OverlayOptions.parse(List.of("lowerdir=/a"), w -> { }).view().redirectDir())
        .isTrue();
  }
}
