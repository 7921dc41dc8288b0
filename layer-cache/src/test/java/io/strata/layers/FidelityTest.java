package io.strata.layers;

import io.strata.layers.base.Digest;
import io.strata.layers.base.Progress;
import io.strata.layers.fs.Posix;
import io.strata.layers.fs.RawFs;
import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import org.apache.commons.compress.archivers.tar.TarConstants;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Everything a layer holds survives the import: each kind of node and each attribute. */
class FidelityTest {
  static final long NINE_GIB = 9L << 30;
  static final long ONE_GIB = 1L << 30;
  static final String LONG_NAME = "deep/" + "d".repeat(120) + "/" + "f".repeat(200) + ".txt";

  @TempDir static Path tmp;
  static Path tree;
  static LayerRecord record;

  @BeforeAll
  static void importOnce() throws Exception {
    assertThat(Posix.isRoot()).as("these tests restore owners and devices, so run as root").isTrue();
    TarBuilder layer = TarBuilder.layer()
        .dir("bin", 0755)
        .file("bin/su", "su".getBytes(StandardCharsets.UTF_8), 04755, e -> {})
        .file("bin/wall", "w".getBytes(StandardCharsets.UTF_8), 02755, e -> e.setGroupId(5))
        .dir("tmp", 01777)
        .file("home/alice/notes", "x".getBytes(StandardCharsets.UTF_8), 0600, e -> {
          e.setUserId(1000);
          e.setGroupId(1000);
        })
        .symlink("bin/sh", "busybox")
        .symlink("etc/abs", "/etc/passwd")
        .file("data/original", "shared".getBytes(StandardCharsets.UTF_8), 0644, e -> {})
        .hardlink("data/link", "data/original")
        .fifo("run/fifo")
        .device("dev/null", true, 1, 3)
        .device("dev/sda", false, 8, 0)
        .file(LONG_NAME, "long".getBytes(StandardCharsets.UTF_8), 0644, e -> {})
        .file("naïve-ünïcode", "u".getBytes(StandardCharsets.UTF_8), 0644, e -> {})
        .file("xattrs", "x".getBytes(StandardCharsets.UTF_8), 0644, e -> {
          e.addPaxHeader("SCHILY.xattr.user.comment", "hello");
          e.addPaxHeader("SCHILY.xattr.trusted.strata-test", "secret");
        })
        .dir("ro", 0555)
        .file("ro/inside", "x".getBytes(StandardCharsets.UTF_8), 0444, e -> {});
    byte[] tar = HostileLayers.concat(
        stripEnd(layer.bytes()), oldGnuSparseEntry("sparse/big", NINE_GIB),
        paxSparseEntry("sparse/pax", ONE_GIB), HostileLayers.end());
    Path src = Files.write(tmp.resolve("layer.tar"), tar);
    LayerStore store = StoreFixture.open(tmp.resolve("store"));
    ImageRecord image = store.importImage(src, "fidelity:1", null, Progress.NONE);
    tree = store.layerTree(image.diffIds().get(0));
    record = store.layers().get(0);
  }

  /**
   * Issue 8, item 6: a layer holding only a name that is not UTF-8 was stored under U+FFFD, and
   * two such names were refused as duplicates. The names are made and tarred by the shell and
   * GNU tar, and the stored tree, tarred again, names the same bytes.
   */
  @Test
  void namesThatAreNotUtf8AreStoredByteForByte() throws Exception {
    Path src = Files.createDirectories(tmp.resolve("raw-src"));
    String script = "cd '" + src + "' && printf one > \"$(printf 'only\\377')\" && printf two >"
        + " \"$(printf 'only\\376')\" && mkdir \"$(printf 'dir\\351')\" && ln -s"
        + " \"$(printf 'only\\377')\" \"$(printf 'dir\\351')/link\" && tar -cf ../raw.tar .";
    assertThat(new ProcessBuilder("sh", "-c", script).inheritIO().start().waitFor()).isZero();
    LayerStore store = StoreFixture.open(tmp.resolve("raw-store"));
    ImageRecord image = store.importImage(tmp.resolve("raw.tar"), "raw:1", null, Progress.NONE);
    Path stored = store.layerTree(image.diffIds().get(0));
    java.util.function.Function<Path, String> names = dir -> {
      try {
        Process p = new ProcessBuilder("sh", "-c", "cd '" + dir + "' && find . | LC_ALL=C sort"
            + " | od -An -c | tr -s ' \\n' ' '").start();
        return new String(p.getInputStream().readAllBytes(), StandardCharsets.ISO_8859_1);
      } catch (java.io.IOException e) {
        throw new java.io.UncheckedIOException(e);
      }
    };
    assertThat(names.apply(stored)).isEqualTo(names.apply(src)).contains("377").contains("376");
    int fd = RawFs.open(RawFs.AT_FDCWD, RawFs.raw(stored), RawFs.O_PATH | RawFs.O_DIRECTORY, 0);
    try {
      String dirE9 = RawFs.raw(new byte[] {'d', 'i', 'r', (byte) 0xe9});
      assertThat(RawFs.readlink(fd, dirE9 + "/link"))
          .isEqualTo(RawFs.raw(new byte[] {'o', 'n', 'l', 'y', (byte) 0xff}));
    } finally {
      RawFs.close(fd);
    }
    // The DiffID covers the tar as given; hashing the same tar again gives it.
    assertThat(image.diffIds().get(0)).isEqualTo(Digest.of(Files.readAllBytes(tmp.resolve("raw.tar"))));
    // And gc removes such names too.
    store.removeImage("raw:1");
    assertThat(store.gc().removedLayers()).hasSize(1);
    assertThat(stored).doesNotExist();
  }

  @Test
  void modesIncludingSetuidSetgidAndSticky() throws Exception {
    assertThat(mode("bin/su")).isEqualTo(04755);
    assertThat(mode("bin/wall")).isEqualTo(02755);
    assertThat(mode("tmp")).isEqualTo(01777);
    assertThat(mode("ro")).isEqualTo(0555);
    assertThat(mode("ro/inside")).isEqualTo(0444);
  }

  @Test
  void ownersAndSubsecondMtimes() throws Exception {
    assertThat(attr("home/alice/notes", "uid")).isEqualTo(1000L);
    assertThat(attr("home/alice/notes", "gid")).isEqualTo(1000L);
    assertThat(attr("bin/wall", "gid")).isEqualTo(5L);
    FileTime expected = FileTime.from(TarBuilder.MTIME);
    assertThat(Files.getLastModifiedTime(tree.resolve("bin/su"))).isEqualTo(expected);
    assertThat(Files.getLastModifiedTime(tree.resolve("bin"))).isEqualTo(expected);
    assertThat(Files.getLastModifiedTime(tree.resolve("bin/sh"), LinkOption.NOFOLLOW_LINKS))
        .isEqualTo(expected);
  }

  @Test
  void symlinksKeepTheirTargetsVerbatim() throws Exception {
    assertThat(Files.readSymbolicLink(tree.resolve("bin/sh")).toString()).isEqualTo("busybox");
    assertThat(Files.readSymbolicLink(tree.resolve("etc/abs")).toString()).isEqualTo("/etc/passwd");
  }

  @Test
  void hardLinksShareOneInode() throws Exception {
    assertThat(attr("data/link", "ino")).isEqualTo(attr("data/original", "ino"));
    assertThat(attr("data/original", "nlink")).isEqualTo(2L);
  }

  @Test
  void fifosAndDeviceNodes() throws Exception {
    assertThat(type("run/fifo")).isEqualTo(Posix.S_IFIFO);
    assertThat(type("dev/null")).isEqualTo(Posix.S_IFCHR);
    assertThat(attr("dev/null", "rdev")).isEqualTo(Posix.makedev(1, 3));
    assertThat(type("dev/sda")).isEqualTo(Posix.S_IFBLK);
    assertThat(attr("dev/sda", "rdev")).isEqualTo(Posix.makedev(8, 0));
  }

  @Test
  void longAndUnicodeNames() throws Exception {
    assertThat(tree.resolve(LONG_NAME)).hasContent("long");
    assertThat(tree.resolve("naïve-ünïcode")).hasContent("u");
  }

  @Test
  void xattrsInEveryNamespace() throws Exception {
    assertThat(Posix.lgetxattr(tree.resolve("xattrs"), "user.comment"))
        .isEqualTo("hello".getBytes(StandardCharsets.UTF_8));
    assertThat(Posix.lgetxattr(tree.resolve("xattrs"), "trusted.strata-test"))
        .isEqualTo("secret".getBytes(StandardCharsets.UTF_8));
  }

  @Test
  void sparseFileLargerThanEightGibStaysSparse() throws Exception {
    checkSparse(tree.resolve("sparse/big"), NINE_GIB);
    assertThat(record.contentSize()).isGreaterThan(NINE_GIB);
  }

  @Test
  void paxFormatSparseFileStaysSparse() throws Exception {
    checkSparse(tree.resolve("sparse/pax"), ONE_GIB);
  }

  private static void checkSparse(Path file, long size) throws Exception {
    assertThat(Files.size(file)).isEqualTo(size);
    try (var ch = java.nio.channels.FileChannel.open(file)) {
      assertThat(read(ch, 0)).isEqualTo("HEAD");
      assertThat(read(ch, size - 4096)).isEqualTo("TAIL");
      assertThat(read(ch, size / 2)).isEqualTo("\0\0\0\0");
    }
    // Allocated space is a few blocks, not gigabytes.
    Process du = new ProcessBuilder("du", "-k", file.toString()).start();
    String out = new String(du.getInputStream().readAllBytes(), StandardCharsets.US_ASCII);
    assertThat(Long.parseLong(out.split("\\s+")[0])).isLessThan(1024);
  }

  private static String read(java.nio.channels.FileChannel ch, long at) throws Exception {
    java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(4);
    ch.read(b, at);
    return new String(b.array(), StandardCharsets.ISO_8859_1);
  }

  private static int mode(String p) throws Exception {
    return (int) attr(p, "mode") & 07777;
  }

  private static int type(String p) throws Exception {
    return (int) attr(p, "mode") & Posix.S_IFMT;
  }

  private static long attr(String p, String name) throws Exception {
    Object v = Files.getAttribute(tree.resolve(p), "unix:" + name, LinkOption.NOFOLLOW_LINKS);
    return ((Number) v).longValue();
  }

  /** A tar without its two end-of-archive blocks, so more entries can follow. */
  private static byte[] stripEnd(byte[] tar) {
    int end = tar.length;
    while (end >= 512 && isZero(tar, end - 512)) {
      end -= 512;
    }
    return java.util.Arrays.copyOf(tar, end);
  }

  private static boolean isZero(byte[] b, int from) {
    for (int i = from; i < from + 512; i++) {
      if (b[i] != 0) {
        return false;
      }
    }
    return true;
  }

  private static byte[][] sparseData() {
    byte[] head = new byte[4096];
    byte[] tail = new byte[4096];
    System.arraycopy("HEAD".getBytes(StandardCharsets.US_ASCII), 0, head, 0, 4);
    System.arraycopy("TAIL".getBytes(StandardCharsets.US_ASCII), 0, tail, 0, 4);
    return new byte[][] {head, tail};
  }

  /**
   * A GNU PAX 1.0 sparse entry (what GNU tar --sparse --format=posix writes): a 4 KiB data region
   * at 0 reading HEAD…, another at size-4096 reading TAIL…, and a hole between.
   */
  static byte[] paxSparseEntry(String name, long realSize) {
    String pax = HostileLayers.paxRecord("GNU.sparse.major", "1")
        + HostileLayers.paxRecord("GNU.sparse.minor", "0")
        + HostileLayers.paxRecord("GNU.sparse.name", name)
        + HostileLayers.paxRecord("GNU.sparse.realsize", String.valueOf(realSize));
    byte[] map = ("2\n0\n4096\n" + (realSize - 4096) + "\n4096\n").getBytes(StandardCharsets.US_ASCII);
    byte[] mapBlock = java.util.Arrays.copyOf(map, 512);
    byte[][] data = sparseData();
    long stored = mapBlock.length + 8192;
    return HostileLayers.concat(HostileLayers.paxBlock(pax),
        HostileLayers.header("GNUSparseFile.0/pax", (char) TarConstants.LF_NORMAL, stored),
        mapBlock, data[0], data[1]);
  }

  /**
   * An old-GNU sparse entry (type 'S', GNU tar --sparse --format=gnu) whose real size and second
   * region offset exceed the 8 GiB an octal field holds, so both are base-256.
   */
  static byte[] oldGnuSparseEntry(String name, long realSize) {
    byte[] h = HostileLayers.header(name, 'S', 8192);
    System.arraycopy("ustar  \0".getBytes(StandardCharsets.US_ASCII), 0, h, 257, 8);
    putNumber(h, 386, 0);
    putNumber(h, 398, 4096);
    putNumber(h, 410, realSize - 4096);
    putNumber(h, 422, 4096);
    putNumber(h, 483, realSize);
    java.util.Arrays.fill(h, 148, 156, (byte) ' ');
    int sum = 0;
    for (byte b : h) {
      sum += b & 0xff;
    }
    byte[] chk = String.format("%06o", sum).getBytes(StandardCharsets.US_ASCII);
    System.arraycopy(chk, 0, h, 148, 6);
    h[154] = 0;
    byte[][] data = sparseData();
    return HostileLayers.concat(h, data[0], data[1]);
  }

  /** A 12-byte numeric field: octal when it fits, else GNU base-256. */
  private static void putNumber(byte[] h, int at, long v) {
    if (v < 077777777777L) {
      byte[] oct = String.format("%011o", v).getBytes(StandardCharsets.US_ASCII);
      System.arraycopy(oct, 0, h, at, 11);
      h[at + 11] = 0;
      return;
    }
    h[at] = (byte) 0x80;
    for (int i = 11; i >= 1; i--) {
      h[at + i] = (byte) (v & 0xff);
      v >>>= 8;
    }
  }
}
