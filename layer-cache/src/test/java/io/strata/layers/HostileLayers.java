package io.strata.layers;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;

/**
 * Named fixtures of broken and hostile layer tars. Each name says what it breaks; each comes
 * with a fragment the error message must contain, so the error is known to name the cause.
 */
final class HostileLayers {
  /** A fixture: its name, the bytes of the layer blob, and what the error must mention. */
  record Fixture(String name, byte[] blob, String entry, String why) {
    @Override
    public String toString() {
      return name;
    }
  }

  private HostileLayers() {}

  static List<Fixture> all() {
    return List.of(
        new Fixture("absolute-name", TarBuilder.layer().file("/etc/passwd", "x").bytes(),
            "/etc/passwd", "absolute name"),
        new Fixture("dotdot-escape", TarBuilder.layer().dir("a").file("a/../../x", "x").bytes(),
            "a/../../x", "'..'"),
        new Fixture("dotdot-inside", TarBuilder.layer().file("a/../b", "x").bytes(),
            "a/../b", "'..'"),
        new Fixture("write-through-symlink",
            TarBuilder.layer().symlink("evil", "/etc").file("evil/passwd", "x").bytes(),
            "evil/passwd", "parent 'evil' is a symlink"),
        new Fixture("write-through-symlink-dir-entry",
            TarBuilder.layer().symlink("evil", "../..").dir("evil/sub").bytes(),
            "evil/sub/", "parent 'evil' is a symlink"),
        new Fixture("hardlink-to-missing",
            TarBuilder.layer().hardlink("link", "nothing-here").bytes(),
            "link", "not earlier in this layer"),
        new Fixture("hardlink-outside",
            TarBuilder.layer().hardlink("link", "../../etc/shadow").bytes(),
            "link", "leaves the layer"),
        new Fixture("hardlink-absolute",
            TarBuilder.layer().hardlink("link", "/etc/shadow").bytes(),
            "link", "leaves the layer"),
        new Fixture("hardlink-to-directory",
            TarBuilder.layer().dir("d").hardlink("link", "d").bytes(),
            "link", "hard link to directory"),
        new Fixture("hardlink-before-target",
            TarBuilder.layer().hardlink("link", "later").file("later", "x").bytes(),
            "link", "not earlier in this layer"),
        new Fixture("duplicate-file",
            TarBuilder.layer().file("f", "one").file("f", "two").bytes(),
            "f", "duplicate entry"),
        new Fixture("file-then-directory",
            TarBuilder.layer().file("f", "one").dir("f").bytes(),
            "f/", "duplicate entry"),
        new Fixture("file-as-parent",
            TarBuilder.layer().file("f", "one").file("f/g", "two").bytes(),
            "f/g", "parent 'f' is a file"),
        new Fixture("symlink-empty-target",
            TarBuilder.layer().symlink("s", "").bytes(), "s", "empty target"),
        new Fixture("name-component-too-long",
            TarBuilder.layer().file("d/" + "n".repeat(300), "x").bytes(), "d/nnnn",
            "longer than 255 bytes"),
        new Fixture("truncated-stream", truncate(TarBuilder.layer()
            .file("big", new byte[100_000], 0644, e -> {}).bytes(), 20_000), "big", "truncated"),
        new Fixture("truncated-gzip", truncate(TarBuilder.gzip(TarBuilder.layer()
            .file("big", pattern(200_000), 0644, e -> {}).bytes()), 5_000), "big", "corrupt"),
        new Fixture("corrupt-gzip", corruptMiddle(TarBuilder.gzip(TarBuilder.layer()
            .file("data", pattern(200_000), 0644, e -> {}).bytes())), "", "corrupt"),
        new Fixture("bad-header-checksum", corruptByte(TarBuilder.layer()
            .file("a", "x").file("b", "y").bytes(), 512 * 2 + 10), "", "corrupt"),
        new Fixture("oversized-pax-header", oversizedPax(), "", "corrupt"),
        new Fixture("negative-pax-size", paxSize("-5"), "", "corrupt"),
        new Fixture("absurd-size", absurdSize(), "huge", "larger than the store's whole filesystem"),
        new Fixture("not-a-tar", "this is not a tar file at all".getBytes(StandardCharsets.UTF_8),
            "", "not a tar, gzip or zstd stream"),
        new Fixture("empty-file", new byte[0], "", "empty file"));
  }

  static byte[] pattern(int n) {
    byte[] b = new byte[n];
    for (int i = 0; i < n; i++) {
      b[i] = (byte) (i * 31 + (i >> 7));
    }
    return b;
  }

  private static byte[] truncate(byte[] b, int n) {
    return Arrays.copyOf(b, n);
  }

  private static byte[] corruptMiddle(byte[] b) {
    byte[] c = b.clone();
    for (int i = c.length / 3; i < c.length / 3 + 64; i++) {
      c[i] ^= 0x5a;
    }
    return c;
  }

  private static byte[] corruptByte(byte[] b, int at) {
    byte[] c = b.clone();
    c[at] ^= 0x7f;
    return c;
  }

  /** A PAX extended header whose one record claims to be far longer than the archive. */
  private static byte[] oversizedPax() {
    return concat(paxBlock("999999999999 comment=xxxxxxxxxx\n"), header("f", '0', 0), end());
  }

  private static byte[] paxSize(String size) {
    return concat(paxBlock(paxRecord("size", size)), header("f", '0', 0), end());
  }

  /** A file whose PAX size claims an exabyte: refused before anything is written. */
  private static byte[] absurdSize() {
    return concat(paxBlock(paxRecord("size", "1152921504606846976")), header("huge", '0', 0),
        new byte[1024]);
  }

  static String paxRecord(String key, String value) {
    String body = " " + key + "=" + value + "\n";
    int len = body.length();
    int total = len + String.valueOf(len).length();
    if (String.valueOf(total).length() != String.valueOf(len).length()) {
      total++;
    }
    return total + body;
  }

  static byte[] paxBlock(String records) {
    byte[] data = records.getBytes(StandardCharsets.UTF_8);
    return concat(header("PaxHeaders/f", 'x', data.length), pad(data));
  }

  /** A ustar header block with a correct checksum. */
  static byte[] header(String name, char type, long size) {
    byte[] h = new byte[512];
    put(h, 0, name);
    put(h, 100, String.format("%07o", 0644));
    put(h, 108, String.format("%07o", 0));
    put(h, 116, String.format("%07o", 0));
    put(h, 124, String.format("%011o", size));
    put(h, 136, String.format("%011o", 1600000000L));
    h[156] = (byte) type;
    put(h, 257, "ustar");
    put(h, 263, "00");
    Arrays.fill(h, 148, 156, (byte) ' ');
    int sum = 0;
    for (byte b : h) {
      sum += b & 0xff;
    }
    put(h, 148, String.format("%06o", sum));
    h[154] = 0;
    return h;
  }

  static byte[] end() {
    return new byte[1024];
  }

  private static byte[] pad(byte[] data) {
    return Arrays.copyOf(data, (data.length + 511) / 512 * 512);
  }

  private static void put(byte[] h, int at, String s) {
    byte[] b = s.getBytes(StandardCharsets.US_ASCII);
    System.arraycopy(b, 0, h, at, b.length);
  }

  static byte[] concat(byte[]... parts) {
    int n = 0;
    for (byte[] p : parts) {
      n += p.length;
    }
    byte[] out = new byte[n];
    int at = 0;
    for (byte[] p : parts) {
      System.arraycopy(p, 0, out, at, p.length);
      at += p.length;
    }
    return out;
  }
}
