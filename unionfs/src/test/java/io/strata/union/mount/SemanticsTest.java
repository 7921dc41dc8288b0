package io.strata.union.mount;

import io.strata.layers.fs.Mounts;
import io.strata.union.view.Attr;
import io.strata.union.view.IdMap;
import io.strata.union.view.Io;
import io.strata.union.view.Markers;
import io.strata.union.view.UnionView;
import io.strata.union.view.WhiteoutForm;
import static org.assertj.core.api.Assertions.assertThat;

import io.strata.layers.fs.Posix;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The POSIX edges and overlay details that the differential tests do not reach. */
class SemanticsTest {
  @TempDir Path tmp;

  List<Path> lowers() throws Exception {
    return List.of(
        LayerSpec.layer().file("etc/conf", "top conf").whiteout("etc/gone")
            .writeTo(tmp.resolve("l0"), LayerSpec.Form.OCI),
        LayerSpec.layer().dir("etc").file("etc/conf", "old").file("etc/gone", "x")
            .file("big", "B".repeat(100_000)).file("h1", "hard").hardlink("h2", "h1")
            .writeTo(tmp.resolve("l1"), LayerSpec.Form.OCI));
  }

  Mounted mount() throws Exception {
    return Mounted.strata(lowers(), tmp.resolve("upper"), tmp.resolve("work"), tmp.resolve("mnt"));
  }

  static long ino(Path p) throws Exception {
    return (Long) Files.getAttribute(p, "unix:ino", LinkOption.NOFOLLOW_LINKS);
  }

  static int nlink(Path p) throws Exception {
    return (Integer) Files.getAttribute(p, "unix:nlink", LinkOption.NOFOLLOW_LINKS);
  }

  @Test
  void inodeNumbersAreStableAcrossCopyUpAndHardLinksShareOne() throws Exception {
    try (Mounted m = mount()) {
      Path conf = m.mountpoint.resolve("etc/conf");
      long before = ino(conf);
      Files.writeString(conf, "changed");
      assertThat(ino(conf)).isEqualTo(before);
      assertThat(ino(m.mountpoint.resolve("h1"))).isEqualTo(ino(m.mountpoint.resolve("h2")));
      assertThat(nlink(m.mountpoint.resolve("h1"))).isEqualTo(2);
      long dirIno = ino(m.mountpoint.resolve("etc"));
      Files.writeString(m.mountpoint.resolve("etc/new"), "n"); // copies etc/ up
      assertThat(ino(m.mountpoint.resolve("etc"))).isEqualTo(dirIno);
    }
  }

  /**
   * statfs(2) of the union is its upper filesystem's, as kernel overlayfs answers: block and
   * inode totals, sizes and the longest name alike (strata reported no inodes at all, so
   * `df -i` showed 0); free counts may move between the two calls.
   */
  @Test
  void statfsGivesTheUppersBlocksAndInodesAsKernelOverlayfsDoes() throws Exception {
    List<Path> lowers = lowers();
    try (Mounted k = Mounted.kernel(lowers, tmp.resolve("ku"), tmp.resolve("kw"),
            tmp.resolve("km"));
        Mounted s = Mounted.strata(lowers, tmp.resolve("upper"), tmp.resolve("work"),
            tmp.resolve("mnt"))) {
      String format = "%b %c %s %S %l"; // blocks, inodes, block size, fragment size, namelen
      String kernel = Mounted.run("stat", "-f", "-c", format, k.mountpoint.toString()).trim();
      String strata = Mounted.run("stat", "-f", "-c", format, s.mountpoint.toString()).trim();
      assertThat(strata).isEqualTo(kernel);
      assertThat(Long.parseLong(kernel.split(" ")[1])).isPositive();
      long kFree = Long.parseLong(Mounted.run("stat", "-f", "-c", "%d",
          k.mountpoint.toString()).trim());
      long sFree = Long.parseLong(Mounted.run("stat", "-f", "-c", "%d",
          s.mountpoint.toString()).trim());
      assertThat(sFree).isCloseTo(kFree, org.assertj.core.data.Offset.offset(10_000L));
    }
  }

  @Test
  void chmodOfALowerFileCopiesNoData() throws Exception {
    try (Mounted m = mount()) {
      Posix.chmod(m.mountpoint.resolve("big"), 0600);
      Path up = tmp.resolve("upper/big");
      assertThat(Files.size(up)).isEqualTo(100_000);
      long blocks = Long.parseLong(Mounted.run("stat", "-c", "%b", up.toString()).trim());
      assertThat(blocks).as("allocated blocks of the metadata-only copy").isZero();
      assertThat(m.mountpoint.resolve("big")).hasContent("B".repeat(100_000));
      assertThat(Files.getAttribute(m.mountpoint.resolve("big"), "unix:mode")).isEqualTo(0100600);
      // A write then copies the data, keeping the new mode.
      Files.writeString(m.mountpoint.resolve("big"), "small");
      assertThat(Files.readString(up)).isEqualTo("small");
      assertThat(Files.getAttribute(up, "unix:mode")).isEqualTo(0100600);
    }
  }

  @Test
  void namesOver255BytesGetEnametoolongAndLongPathsWork() throws Exception {
    try (Mounted m = mount()) {
      String tooLong = "n".repeat(256);
      assertThat(FsOp.write(tooLong, "x").outcome(m.mountpoint)).contains("File name too long");
      assertThat(FsOp.write("etc/" + tooLong, "x").outcome(m.mountpoint))
          .contains("File name too long");
      // A path near PATH_MAX at the mountpoint stays legal inside, whatever the layer prefix.
      Path deep = m.mountpoint;
      StringBuilder rel = new StringBuilder();
      while (m.mountpoint.toString().length() + rel.length() + 200 < 4000) {
        rel.append("d".repeat(200)).append('/');
      }
      deep = Files.createDirectories(m.mountpoint.resolve(rel.toString()));
      Files.writeString(deep.resolve("leaf"), "deep");
      assertThat(deep.resolve("leaf")).hasContent("deep");
    }
  }

  /**
   * Issue 8, item 7: every operation on a 255-byte name failed with ENAMETOOLONG, because the
   * probe for its whiteout file (".wh." + name, 259 bytes) failed. Kernel overlayfs is the
   * oracle; strata runs in both whiteout forms (the .wh. form falls back to a device for such
   * names, as root).
   */
  @org.junit.jupiter.params.ParameterizedTest
  @org.junit.jupiter.params.provider.EnumSource(WhiteoutForm.class)
  void namesOf255BytesWorkForEveryOperationAsOnKernelOverlayfs(WhiteoutForm form) throws Exception {
    String n = "n".repeat(254);
    String script = "cd \"$1\";"
        + " echo x > a" + n + " && mkdir b" + n + " && mkfifo c" + n + " && mknod d" + n + " c 1 3"
        + " && ln -s t e" + n + " && ln a" + n + " f" + n + " && mv f" + n + " g" + n
        + " && echo more >> l" + n + " && rm m" + n + " && cat l" + n + " && ls | sort | cut -c1-3"
        + " && ! touch z" + n + "z 2> /dev/null && echo done";
    java.util.function.Function<String, List<Path>> layers = tag -> {
      try {
        return List.of(LayerSpec.layer().file("l" + n, "lower\n").file("m" + n, "gone")
            .writeTo(tmp.resolve(tag + "-lower"), LayerSpec.Form.KERNEL));
      } catch (java.io.IOException e) {
        throw new java.io.UncheckedIOException(e);
      }
    };
    String kernel;
    try (Mounted k = Mounted.kernel(layers.apply("k"), tmp.resolve("ku"), tmp.resolve("kw"),
        tmp.resolve("kmnt"))) {
      kernel = Mounted.run("sh", "-c", script, "sh", k.mountpoint.toString());
    }
    UnionView.Options d = UnionView.Options.defaults();
    UnionView.Options o = new UnionView.Options(form, d.metacopy(), d.xattrs(), d.fsync(),
        d.uids(), d.gids(), false, d.cacheEntries(), true, false);
    try (Mounted m = Mounted.strata(layers.apply("s"), tmp.resolve("su"), tmp.resolve("sw"),
        tmp.resolve("smnt"), o)) {
      assertThat(Mounted.run("sh", "-c", script, "sh", m.mountpoint.toString()))
          .isEqualTo(kernel).contains("lower\nmore").endsWith("done\n");
    }
  }

  /**
   * Issue 8, items 7 and 9: a 4,095-byte path of 127-byte names under layers whose own location
   * is long, and a 2,000-level directory chain, worked on kernel overlayfs but gave
   * ENAMETOOLONG and EIO through strata, whose calls used absolute paths. The same script runs
   * on both; its output (the chain's entry count, what was read and written at the bottom,
   * what was made at PATH_MAX) must be the same.
   */
  @Test
  void pathsAtPathMaxAndTwoThousandLevelsWorkAsOnKernelOverlayfs() throws Exception {
    Path base = tmp;
    for (int i = 0; i < 8; i++) {
      // ~1.5 KB of location: kernel overlayfs takes its options in one page, both dirs in it
      base = base.resolve("long-location-" + "x".repeat(180));
    }
    String n = "n".repeat(127);
    String script = "cd \"$1\" && find . | wc -l && cat chain$(printf '/d%.0s' $(seq 2000))/leaf"
        + " && cd chain$(printf '/d%.0s' $(seq 2000)) && echo bottom > new && cat new && cd \"$1\""
        + " && for i in $(seq 31); do mkdir " + n + " && cd -P " + n + " || exit 1; done"
        + " && echo pathmax > " + n + " && cat " + n + " && rm " + n + " && echo removed";
    String lowerScript = "mkdir -p \"$1\" && cd \"$1\" && mkdir chain && cd chain"
        + " && for i in $(seq 2000); do mkdir d && cd -P d || exit 1; done && echo leaf > leaf";
    String[] outputs = new String[2];
    try {
      for (int k = 0; k < 2; k++) {
        // The upper lives at the long location; the chain's lower can live anywhere.
        Path root = Files.createDirectories(base.resolve(k == 0 ? "kernel" : "strata"));
        Path lower = tmp.resolve("chain-lower-" + k);
        Mounted.run("sh", "-c", lowerScript, "sh", lower.toString());
        try (Mounted m = k == 0
            ? Mounted.kernel(List.of(lower), root.resolve("u"), root.resolve("w"), tmp.resolve("km"))
            : Mounted.strata(List.of(lower), root.resolve("u"), root.resolve("w"),
                tmp.resolve("sm"))) {
          outputs[k] = Mounted.run("sh", "-c", script, "sh", m.mountpoint.toString());
        }
      }
    } finally {
      // java.nio cannot delete what lies past PATH_MAX; rm -rf can.
      Mounted.run("rm", "-rf", tmp.resolve("long-location-" + "x".repeat(180)).toString(),
          tmp.resolve("chain-lower-0").toString(), tmp.resolve("chain-lower-1").toString());
    }
    assertThat(outputs[1]).isEqualTo(outputs[0]);
    assertThat(outputs[1].split("\n")).containsExactly("2003", "leaf", "bottom", "pathmax",
        "removed");
  }

  /**
   * Issue 8, item 6: 'bad\xff' and 'bad\xfe' became one upper file 'bad\uFFFD'. The view
   * keeps names as bytes, and the jnr-fuse transport hands them over undecoded
   * (jnr-fuse's RawCallbacks).
   */
  @Test
  void namesThatAreNotUtf8StayDistinct() throws Exception {
    Path lower = Files.createDirectories(tmp.resolve("raw-lower"));
    Mounted.run("sh", "-c", "cd \"$1\" && printf one > \"$(printf 'low\\377')\""
        + " && printf two > \"$(printf 'low\\376')\"", "sh", lower.toString());
    UnionView v = UnionView.open(List.of(lower), Files.createDirectories(tmp.resolve("ru")),
        tmp.resolve("rw"), UnionView.Options.defaults());
    String ff = io.strata.layers.fs.RawFs.raw(new byte[] {'b', 'a', 'd', (byte) 0xff});
    String fe = io.strata.layers.fs.RawFs.raw(new byte[] {'b', 'a', 'd', (byte) 0xfe});
    v.release(v.create("/" + ff, 0644, Io.O_WRONLY, 0, 0));
    v.release(v.create("/" + fe, 0600, Io.O_WRONLY, 0, 0));
    assertThat(v.readdir("/")).extracting(UnionView.DirEntry::name).containsExactlyInAnyOrder(
        ff, fe, io.strata.layers.fs.RawFs.raw(new byte[] {'l', 'o', 'w', (byte) 0xff}),
        io.strata.layers.fs.RawFs.raw(new byte[] {'l', 'o', 'w', (byte) 0xfe}));
    assertThat(v.getattr("/" + ff).mode() & 07777).isEqualTo(0644);
    assertThat(v.getattr("/" + fe).mode() & 07777).isEqualTo(0600);
    v.close();
    // Through the mount, the reproduction and more, with kernel overlayfs as oracle.
    String script = "cd \"$1\" && cat \"$(printf 'low\\377')\" && printf one > \"$(printf 'bad\\377')\""
        + " && printf two > \"$(printf 'bad\\376')\" && cat \"$(printf 'bad\\377')\""
        + " \"$(printf 'bad\\376')\" && mkdir \"$(printf 'd\\351')\" && ln -s \"$(printf 'bad\\377')\""
        + " \"$(printf 'd\\351/l')\" && readlink \"$(printf 'd\\351/l')\" | od -An -tx1"
        + " && mv \"$(printf 'low\\376')\" \"$(printf 'd\\351/m\\376')\" && rm \"$(printf 'low\\377')\""
        + " && ls -R | od -An -tx1";
    String[] out = new String[2];
    for (int k = 0; k < 2; k++) {
      Path u = tmp.resolve("raw-u" + k);
      Path w = tmp.resolve("raw-w" + k);
      Path mp = tmp.resolve("raw-mnt" + k);
      try (Mounted m = k == 0 ? Mounted.kernel(List.of(lower), u, w, mp)
          : Mounted.strata(List.of(lower), u, w, mp)) {
        out[k] = Mounted.run("sh", "-c", script, "sh", m.mountpoint.toString());
      }
    }
    assertThat(out[1]).isEqualTo(out[0]).startsWith("oneonetwo")
        .contains("62 61 64 ff"); // the link's target, byte for byte
  }

  @Test
  void oDirectReadsAndWritesWorkAsOnKernelOverlayfs() throws Exception {
    try (Mounted m = mount()) {
      String big = m.mountpoint.resolve("big").toString();
      String copy = m.mountpoint.resolve("copy").toString();
      Mounted.run("dd", "if=" + big, "of=" + copy, "iflag=direct", "oflag=direct", "bs=4096",
          "count=8", "status=none");
      assertThat(Files.readString(Path.of(copy))).isEqualTo("B".repeat(32768));
    }
  }

  @Test
  void whiteoutNamesCannotBeCreatedAndAreNeverShown() throws Exception {
    try (Mounted m = mount()) {
      assertThat(FsOp.write(".wh.x", "x").outcome(m.mountpoint)).contains("Invalid argument");
      assertThat(FsOp.mkdir(".wh..wh..opq").outcome(m.mountpoint)).contains("Invalid argument");
      Files.delete(m.mountpoint.resolve("etc/conf"));
      try (var s = Files.list(m.mountpoint.resolve("etc"))) {
        assertThat(s.map(p -> p.getFileName().toString())).isEmpty();
      }
    }
  }

  @Test
  void anOpenFileThatWasUnlinkedStaysReadableAndReportsNlinkZeroByHandle() throws Exception {
    try (Mounted m = mount()) {
      Path f = m.mountpoint.resolve("etc/conf");
      try (RandomAccessFile raf = new RandomAccessFile(f.toFile(), "r")) {
        Files.delete(f);
        byte[] b = new byte[8];
        raf.readFully(b); // served by the file handle once the name is gone (nullpath_ok)
        assertThat(new String(b, StandardCharsets.UTF_8)).isEqualTo("top conf");
      }
      // fstat(2) of such a file reaches libfuse2 as a path lookup, which fails (a known gap of
      // the path-based binding); the view itself answers by handle with st_nlink 0.
      UnionView v = m.view();
      Files.writeString(m.mountpoint.resolve("etc/other"), "12345");
      long fh = v.open("/etc/other", Io.O_RDONLY);
      try {
        v.unlink("/etc/other");
        Attr a = v.fgetattr(null, fh);
        assertThat(a.nlink()).isZero();
        assertThat(a.size()).isEqualTo(5);
      } finally {
        v.release(fh);
      }
    }
  }

  @Test
  void uidMappingShowsHostOwnersAsContainerOwnersAndMapsNewFilesBack() throws Exception {
    Path lower = LayerSpec.layer().file("owned", "x").writeTo(tmp.resolve("m0"), LayerSpec.Form.OCI);
    Posix.lchown(lower.resolve("owned"), 1000, 1000);
    UnionView.Options d = UnionView.Options.defaults();
    UnionView.Options o = new UnionView.Options(d.whiteoutForm(), d.metacopy(), d.xattrs(), false,
        IdMap.parse("0:1000:1", "uidmapping"), IdMap.parse("0:1000:1", "gidmapping"), false,
        d.cacheEntries(), true, false);
    try (Mounted m = Mounted.strata(List.of(lower), tmp.resolve("mu"), tmp.resolve("mw"),
        tmp.resolve("mm"), o)) {
      assertThat(Files.getAttribute(m.mountpoint.resolve("owned"), "unix:uid")).isEqualTo(0);
      Files.writeString(m.mountpoint.resolve("new"), "as root in the container");
      assertThat(Files.getAttribute(tmp.resolve("mu/new"), "unix:uid")).isEqualTo(1000);
      assertThat(Files.getAttribute(m.mountpoint.resolve("new"), "unix:uid")).isEqualTo(0);
    }
  }

  @Test
  void fifosAndDeviceNodesCanBeMadeThroughTheMount() throws Exception {
    try (Mounted m = mount()) {
      Mounted.run("mkfifo", m.mountpoint.resolve("fifo").toString());
      Mounted.run("mknod", m.mountpoint.resolve("null").toString(), "c", "1", "3");
      assertThat(Mounted.run("stat", "-c", "%F %t:%T", m.mountpoint.resolve("null").toString()).trim())
          .isEqualTo("character special file 1:3");
      assertThat(Mounted.run("stat", "-c", "%F", m.mountpoint.resolve("fifo").toString()).trim())
          .isEqualTo("fifo");
    }
  }

  @Test
  void aLayerInsideTheMountpointIsRefused() throws Exception {
    Path mp = java.nio.file.Files.createDirectories(tmp.resolve("outer"));
    Path inner = LayerSpec.layer().file("f", "x").writeTo(mp.resolve("layer"), LayerSpec.Form.OCI);
    UnionView v = UnionView.open(List.of(inner), null, null, UnionView.Options.defaults());
    org.assertj.core.api.Assertions.assertThatThrownBy(() -> FuseMount.mount(v, mp,
        FuseMount.Settings.defaults("t"), s -> {}, java.time.Duration.ofSeconds(5)))
        .hasMessageContaining("is inside the mountpoint");
    assertThat(Mounts.isMountpoint(mp)).isFalse();
  }

  @Test
  void overlayPrivateXattrsAreHidden() throws Exception {
    try (Mounted m = mount()) {
      Files.writeString(m.mountpoint.resolve("etc/conf"), "copied up, origin recorded");
      Posix.chmod(m.mountpoint.resolve("big"), 0600); // metacopy xattr on the upper
      for (String p : List.of("etc/conf", "big", "etc")) {
        assertThat(Posix.llistxattr(m.mountpoint.resolve(p))).noneMatch(Markers::isPrivateXattr);
      }
      assertThat(Posix.llistxattr(tmp.resolve("upper/etc/conf")))
          .anyMatch(n -> n.endsWith("strata.origin"));
    }
  }

  @Test
  void kernelOverlayReadsAnUpperThatStrataWrote() throws Exception {
    Map<String, String> strataView;
    try (Mounted m = mount()) {
      Files.delete(m.mountpoint.resolve("etc/conf"));
      Files.createDirectory(m.mountpoint.resolve("etc/conf"));
      Files.writeString(m.mountpoint.resolve("etc/conf/inside"), "dir replaced a file");
      Files.delete(m.mountpoint.resolve("h1"));
      Files.writeString(m.mountpoint.resolve("new"), "new");
      strataView = TreeSnapshot.of(m.mountpoint);
    }
    // Kernel overlay needs the kernel's whiteout form in the lowers it reads.
    List<Path> kernelLowers = List.of(
        LayerSpec.layer().file("etc/conf", "top conf").whiteout("etc/gone")
            .writeTo(tmp.resolve("k0"), LayerSpec.Form.KERNEL),
        LayerSpec.layer().dir("etc").file("etc/conf", "old").file("etc/gone", "x")
            .file("big", "B".repeat(100_000)).file("h1", "hard").hardlink("h2", "h1")
            .writeTo(tmp.resolve("k1"), LayerSpec.Form.KERNEL));
    try (Mounted k = Mounted.kernel(kernelLowers, tmp.resolve("upper"), tmp.resolve("kwork"),
        tmp.resolve("kmnt"))) {
      Map<String, String> kernelView = TreeSnapshot.of(k.mountpoint);
      assertThat(kernelView).isEqualTo(strataView);
    }
  }
}
