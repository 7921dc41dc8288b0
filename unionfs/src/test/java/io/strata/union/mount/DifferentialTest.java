package io.strata.union.mount;

import io.strata.union.view.UnionView;
import io.strata.union.view.WhiteoutForm;
import static org.assertj.core.api.Assertions.assertThat;

import io.strata.layers.fs.Posix;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Kernel overlayfs is the oracle: the same layers and the same operations, on a kernel overlay
 * mount and on a strata mount, must give the same outcomes and the same trees. Strata reads
 * its lowers in both whiteout forms; it writes its upper in both forms too.
 */
class DifferentialTest {
  @TempDir Path tmp;

  @BeforeAll
  static void requireRoot() {
    assertThat(Posix.isRoot()).as("mount tests run as root (CI does)").isTrue();
  }

  /** Three lowers that exercise whiteouts, opaque directories, links and every file kind. */
  static List<LayerSpec> stack() {
    LayerSpec bottom = LayerSpec.layer()
        .dir("d1").dir("d1/d2").file("d1/a", "bottom a").file("d1/d2/c", "deep c")
        .file("a", "root a", 0640).file("b", "root b").dir("gone").file("gone/a", "x")
        .dir("opq").file("opq/a", "hidden by opaque").file("opq/b", "also hidden")
        .symlink("link", "d1/a").file("hl", "hard").hardlink("hl2", "hl")
        .file("x", "x is a file below").file("suid", "s", 04755).xattr("b", "user.k", "v");
    LayerSpec middle = LayerSpec.layer()
        .file("d1/b", "middle b").whiteout("gone").opaque("opq").file("opq/c", "opq c")
        .whiteout("d1/d2/c").dir("x").file("x/a", "x dir over a file");
    LayerSpec top = LayerSpec.layer()
        .file("a", "top a").dir("d1").file("d1/new", "top new").whiteout("b");
    return List.of(top, middle, bottom); // top first, as lowerdir lists them
  }

  static Stream<Arguments> forms() {
    return Stream.of(
        Arguments.of(LayerSpec.Form.KERNEL, WhiteoutForm.DEVICE),
        Arguments.of(LayerSpec.Form.OCI, WhiteoutForm.DEVICE),
        Arguments.of(LayerSpec.Form.OCI, WhiteoutForm.FILE));
  }

  record Run(List<String> outcomes, Map<String, String> tree) {}

  private List<Path> write(List<LayerSpec> specs, String name, LayerSpec.Form form)
      throws Exception {
    List<Path> out = new ArrayList<>();
    for (int i = 0; i < specs.size(); i++) {
      out.add(specs.get(i).writeTo(tmp.resolve(name + "/l" + i), form));
    }
    return out;
  }

  private Run run(Mounted m, List<FsOp> ops) throws Exception {
    List<String> outcomes = new ArrayList<>();
    for (FsOp op : ops) {
      outcomes.add(op + " => " + op.outcome(m.mountpoint));
    }
    return new Run(outcomes, TreeSnapshot.of(m.mountpoint));
  }

  /** Runs {@code ops} on kernel overlay and on strata over the same stack and compares. */
  private Run compare(List<LayerSpec> specs, List<FsOp> ops, LayerSpec.Form lowerForm,
      WhiteoutForm upperForm) throws Exception {
    return compare(specs, ops, lowerForm, upperForm, true);
  }

  /** As {@link #compareOn}: what kernel overlayfs did. */
  private Run compare(List<LayerSpec> specs, List<FsOp> ops, LayerSpec.Form lowerForm,
      WhiteoutForm upperForm, boolean metacopy) throws Exception {
    return compareOn(write(specs, "k", LayerSpec.Form.KERNEL), write(specs, "s", lowerForm), ops,
        upperForm, metacopy);
  }

  /** Runs {@code ops} on both, compares, and returns what kernel overlayfs did. */
  private Run compareOn(List<Path> kLowers, List<Path> sLowers, List<FsOp> ops,
      WhiteoutForm upperForm, boolean metacopy) throws Exception {
    Run kernel;
    try (Mounted k = Mounted.kernel(kLowers, tmp.resolve("k/upper"), tmp.resolve("k/work"),
        tmp.resolve("k/mnt"))) {
      kernel = run(k, ops);
    }
    UnionView.Options o = UnionView.Options.defaults();
    o = new UnionView.Options(upperForm, metacopy, o.xattrs(), false, o.uids(), o.gids(),
        false, o.cacheEntries(), true, false);
    Run strata;
    try (Mounted s = Mounted.strata(sLowers, tmp.resolve("s/upper"), tmp.resolve("s/work"),
        tmp.resolve("s/mnt"), o)) {
      strata = run(s, ops);
    }
    assertThat(strata.outcomes()).as("outcomes").containsExactlyElementsOf(kernel.outcomes());
    assertThat(strata.tree()).as("tree after " + ops.size() + " ops").isEqualTo(kernel.tree());
    return kernel;
  }

  @ParameterizedTest(name = "lowers {0}, upper {1}")
  @MethodSource("forms")
  void theUnionOfTheLayersMatchesKernelOverlay(LayerSpec.Form lowers, WhiteoutForm upper)
      throws Exception {
    compare(stack(), List.of(), lowers, upper);
  }

  @ParameterizedTest(name = "lowers {0}, upper {1}")
  @MethodSource("forms")
  void handWrittenSequenceMatchesKernelOverlay(LayerSpec.Form lowers, WhiteoutForm upper)
      throws Exception {
    compare(stack(), handWritten(), lowers, upper);
  }

  /** The layers as the store holds them: each spec tarred, imported, used from the store. */
  @Test
  void storeLayersGiveTheSameUnionAsKernelOverlay() throws Exception {
    io.strata.layers.LayerStore store = io.strata.layers.LayerStore.open(tmp.resolve("store"),
        line -> { });
    List<Path> fromStore = new ArrayList<>();
    List<LayerSpec> specs = stack();
    for (int i = 0; i < specs.size(); i++) {
      Path src = specs.get(i).writeTo(tmp.resolve("tar-src" + i), LayerSpec.Form.OCI);
      Path tar = tmp.resolve("layer" + i + ".tar");
      Mounted.run("tar", "--xattrs", "--xattrs-include=*", "-C", src.toString(), "-cf",
          tar.toString(), ".");
      io.strata.layers.ImageRecord r = store.importImage(tar, "layer" + i + ":1", null,
          io.strata.layers.base.Progress.NONE);
      fromStore.add(store.layerTree(r.diffIds().get(0)));
    }
    compareOn(write(specs, "k", LayerSpec.Form.KERNEL), fromStore, handWritten(),
        WhiteoutForm.DEVICE, true);
  }

  static List<FsOp> handWritten() {
    return List.of(
        FsOp.write("d1/a", "changed"), FsOp.append("d1/b", "+more"), FsOp.delete("d1/new"),
        FsOp.delete("a"), FsOp.write("a", "recreated"), FsOp.mkdir("gone"),
        FsOp.write("gone/z", "new in a dir that was deleted below"),
        FsOp.delete("opq/c"), FsOp.delete("d1/d2/c"), FsOp.delete("d1/d2"),
        FsOp.mkdir("d1/d2"), FsOp.rename("hl", "d1/hl-moved"), FsOp.chmod("suid", 0700),
        FsOp.chmod("d1", 0700), FsOp.rename("d1", "d9"), FsOp.mkdir("fresh"),
        FsOp.write("fresh/f", "f"), FsOp.rename("fresh", "fresh2"), FsOp.rename("x", "y"),
        FsOp.symlink("s1", "/nowhere"), FsOp.link("hl2", "hl3"), FsOp.truncate("x/a", 3),
        FsOp.setxattr("link", "nope"), FsOp.setxattr("d1/a", "yes"), FsOp.delete("x/a"),
        FsOp.delete("x"), FsOp.delete("nonexistent"), FsOp.mkdir("a"),
        FsOp.rename("b", "c"), FsOp.write("d1/d2/c", "again"));
  }

  /**
   * Set-user-ID and set-group-ID come off a file as kernel overlayfs takes them off: written or
   * truncated by a user without CAP_FSETID (by write(2), by open(O_TRUNC), on a file still
   * below, again after the bits were set anew), given away by chown (also chown(f, -1, -1));
   * and stay on a file root writes. Strata does it itself since it takes
   * FUSE_HANDLE_KILLPRIV_V2; before that, an open(O_TRUNC) by a user left them on (the
   * "lsgid" case failed so).
   */
  @Test
  void privilegesComeOffAsKernelOverlayTakesThemOff() throws Exception {
    java.nio.file.Files.setPosixFilePermissions(tmp,
        java.nio.file.attribute.PosixFilePermissions.fromString("rwxr-xr-x"));
    List<LayerSpec> specs = List.of(LayerSpec.layer().file("lsuid", "l", 04777)
        .file("lsgid", "l", 02777).file("lsgid2", "l", 02777));
    int nobody = 65534;
    String mode = "; stat -c %a ";
    List<FsOp> ops = new ArrayList<>();
    for (String[] f : new String[][] {{"u1", "6777"}, {"u2", "6777"}, {"u3", "6755"},
        {"u4", "4777"}, {"u5", "6777"}, {"u6", "2777"}}) {
      ops.add(FsOp.write(f[0], "a"));
      ops.add(FsOp.chmod(f[0], Integer.parseInt(f[1], 8)));
    }
    ops.add(FsOp.shellAs(nobody, "printf x >> u1" + mode + "u1"));
    ops.add(FsOp.chmod("u1", 06777));
    ops.add(FsOp.shellAs(nobody, "printf x >> u1" + mode + "u1"));
    ops.add(FsOp.shellAs(nobody, "printf x >> lsuid" + mode + "lsuid"));
    ops.add(FsOp.shellAs(nobody, ": > lsgid" + mode + "lsgid"));
    ops.add(FsOp.shellAs(nobody, "truncate -s 1 u2" + mode + "u2"));
    ops.add(FsOp.shellAs(nobody, "truncate -s 0 lsgid2" + mode + "lsgid2"));
    ops.add(FsOp.chown("u3", 0, 0));
    ops.add(FsOp.shellAs(0, "printf x >> u4" + mode + "u4"));
    ops.add(FsOp.chown("u5", -1, -1));
    ops.add(FsOp.shellAs(nobody, "printf x >> u6; printf y >> u6" + mode + "u6"));
    ops.add(FsOp.chmod("u6", 04777));
    ops.add(FsOp.shellAs(nobody, "printf x >> u6" + mode + "u6"));
    compare(specs, ops, LayerSpec.Form.OCI, WhiteoutForm.DEVICE);
  }

  /**
   * A new file's mode in a directory with a default ACL comes from the ACL, not from the
   * caller's umask, as the upper filesystem makes it under kernel overlayfs; elsewhere from the
   * umask (FUSE_DONT_MASK: the kernel applied the umask before strata saw the mode, so the
   * first line below was -rw-r--r-- where kernel overlayfs shows -rw-rw-r--).
   */
  @Test
  void aDefaultAclNotTheUmaskShapesNewFiles() throws Exception {
    Path script = tmp.resolve("acl-modes.py");
    try (java.io.InputStream in = getClass().getResourceAsStream("/acl-modes.py")) {
      java.nio.file.Files.copy(in, script);
    }
    boolean jnr = Mounted.settings().transport() == FuseMount.Transport.JNR;
    List<FsOp> ops = List.of(FsOp.shellAs(0, "python3 " + script + (jnr ? " --no-tmpfile" : "")));
    Run kernel = compare(List.of(LayerSpec.layer().dir("lower")), ops, LayerSpec.Form.OCI,
        WhiteoutForm.DEVICE);
    // the script ran, and the ACL and the umask each had a say
    assertThat(kernel.outcomes().get(0)).startsWith(ops.get(0) + " => exit 0: ")
        .contains("-rw-rw-r-- minimal/file077 ").contains("-rw-r--r-- plain/file022 ")
        .contains("-rw-rw---- extended/file022 system.posix_acl_access=");
  }

  /**
   * In a set-group-ID directory a new file gets the directory's group and a new directory the
   * bit too, whoever makes it, as the file system gives them under kernel overlayfs (Debian's
   * /usr/local is 2775 root:staff). strata chowned each new node to its caller's group and set
   * its mode exactly, so both were lost.
   */
  @Test
  void aSetGroupIdDirectoryGivesItsGroupToWhatIsMadeInIt() throws Exception {
    java.nio.file.Files.setPosixFilePermissions(tmp,
        java.nio.file.attribute.PosixFilePermissions.fromString("rwxr-xr-x"));
    List<LayerSpec> specs = List.of(LayerSpec.layer().dir("below", 02777).dir("plain", 0777));
    String made = " && stat -c '%A %u:%g %n' ";
    List<FsOp> ops = new ArrayList<>();
    ops.add(FsOp.chown("below", 0, 100)); // copied up, set-group-ID kept
    ops.add(FsOp.chmod("below", 02777));
    ops.add(FsOp.shellAs(0, "mkdir above && chgrp 100 above && chmod 2777 above" + made
        + "above"));
    for (String d : new String[] {"below", "above", "plain"}) {
      ops.add(FsOp.shellAs(0, "cd " + d + " && touch f && mkdir d && mkfifo p && ln -s f l"
          + " && mkdir d/inner && touch d/inner/f" + made + "f d p l d/inner d/inner/f"));
      ops.add(FsOp.shellAs(65534, "cd " + d + " && touch g && mkdir e" + made + "g e"));
      if (Mounted.settings().transport() == FuseMount.Transport.JNR) {
        continue; // no O_TMPFILE through libfuse 2
      }
      ops.add(FsOp.shellAs(0, "cd " + d + " && python3 -c \"import os, stat; "
          + "fd = os.open('.', os.O_TMPFILE | os.O_WRONLY, 0o644); s = os.fstat(fd); "
          + "print(stat.filemode(s.st_mode), s.st_uid, s.st_gid)\""));
    }
    Run kernel = compare(specs, ops, LayerSpec.Form.OCI, WhiteoutForm.DEVICE);
    assertThat(kernel.outcomes())
        .anySatisfy(o -> assertThat(o).contains("drwxr-sr-x 0:100 d/inner"))
        .anySatisfy(o -> assertThat(o).contains("-rw-r--r-- 65534:100 g"));
  }

  /**
   * mknod of a character device 0/0, a whiteout's form, is refused (EPERM) as kernel
   * overlayfs refuses it; strata made it in the upper, where it hid its own name (ENOENT).
   */
  @Test
  void aWhiteoutCannotBeMadeThroughTheMount() throws Exception {
    List<FsOp> ops = List.of(FsOp.shellAs(0, "mknod d/wh c 0 0; mknod d/null c 1 3; ls d"));
    Run kernel = compare(List.of(LayerSpec.layer().dir("d")), ops, LayerSpec.Form.OCI,
        WhiteoutForm.DEVICE);
    assertThat(kernel.outcomes().get(0)).contains("Operation not permitted").endsWith("null");
  }

  static Stream<Arguments> userSeeds() {
    List<Arguments> out = new ArrayList<>();
    for (long seed = 1; seed <= 6; seed++) {
      out.add(Arguments.of(seed, seed % 3 == 0 ? 0 : 1000));
    }
    return out.stream();
  }

  /**
   * Random sequences (permission-fuzz.py) of creates, removals, renames, links, modes, owners
   * and times made as a user, and as root, among directories of every kind of permission and
   * files of the user, of root and of others, mostly still in the lower layer: every answer
   * and the tree after are kernel overlayfs's. Written after the set-group-ID and default-ACL
   * differences above, which such sequences run as a user would have shown.
   */
  @ParameterizedTest(name = "seed {0} as {1}")
  @MethodSource("userSeeds")
  void randomSequencesAsAUserMatchKernelOverlay(long seed, int uid) throws Exception {
    java.nio.file.Files.setPosixFilePermissions(tmp,
        java.nio.file.attribute.PosixFilePermissions.fromString("rwxr-xr-x"));
    Path script = tmp.resolve("permission-fuzz.py");
    if (!java.nio.file.Files.exists(script)) {
      try (java.io.InputStream in = getClass().getResourceAsStream("/permission-fuzz.py")) {
        java.nio.file.Files.copy(in, script);
      }
    }
    List<LayerSpec> specs = List.of(LayerSpec.layer()
        .file("ro/file", "ro\n", 0644).dir("ro/sub", 0755).dir("ro", 0755)
        .file("open/mine", "mine\n", 0644).owner("open/mine", uid, uid)
        .file("open/roots", "root\n", 0644).dir("open/sub/deep", 0755).dir("open/sub", 0777)
        .dir("open", 0777)
        .file("sticky/others", "o\n", 0666).owner("sticky/others", 1, 1)
        .file("sticky/mine", "m\n", 0644).owner("sticky/mine", uid, uid)
        .dir("sticky/dir", 0777).owner("sticky/dir", 1, 1).dir("sticky", 01777)
        .file("sgid/f", "g\n", 0664).dir("sgid/d", 02775).owner("sgid/d", 0, 100)
        .dir("sgid", 02777).owner("sgid", 0, 100)
        .file("rw/file", "rw\n", 0666).dir("rw", 0777)
        .file("hl/a", "hl\n", 0666).hardlink("hl/b", "hl/a").dir("hl", 0777));
    List<FsOp> ops = List.of(FsOp.shellAs(uid, "python3 " + script + " " + seed + " 120"));
    Run kernel = compare(specs, ops, LayerSpec.Form.OCI, WhiteoutForm.DEVICE);
    assertThat(kernel.outcomes().get(0)).as("the script ran").contains(" => exit 0: 0 ")
        .contains(" ok").contains("./sticky ");
  }

  static Stream<Arguments> seeds() {
    List<Arguments> out = new ArrayList<>();
    for (long seed = 1; seed <= 40; seed++) {
      out.add(Arguments.of(seed, seed % 2 == 0 ? LayerSpec.Form.OCI : LayerSpec.Form.KERNEL,
          seed % 3 == 0 ? WhiteoutForm.FILE : WhiteoutForm.DEVICE));
    }
    return out.stream();
  }

  @ParameterizedTest(name = "seed {0}, lowers {1}, upper {2}")
  @MethodSource("seeds")
  void randomSequenceMatchesKernelOverlay(long seed, LayerSpec.Form lowers, WhiteoutForm upper)
      throws Exception {
    compare(stack(), FsOp.random(seed, 80), lowers, upper);
  }

  @Test
  void singleLowerWithoutUpperIsReadOnly() throws Exception {
    List<Path> l = write(List.of(stack().get(2)), "ro", LayerSpec.Form.OCI);
    try (Mounted s = Mounted.strata(l, null, null, tmp.resolve("ro/mnt"))) {
      assertThat(FsOp.write("new", "x").outcome(s.mountpoint))
          .isEqualTo("FileSystemException: Read-only file system");
      assertThat(TreeSnapshot.of(s.mountpoint)).containsKey("d1/d2/c");
    }
  }
}
