package io.strata.layers.archive;

import io.strata.layers.fs.RawFs;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Map;

/**
 * Writes a layer tar: ustar headers, with a PAX extended header wherever ustar cannot say it
 * (names or link targets over 100 bytes, ids or sizes too large, sub-second times, xattrs).
 * Names, link targets and xattr values are raw (one char per byte) and written byte for byte.
 * Nothing varies between runs (no atime, no ctime, no user or group names, fixed PAX header
 * names), so the same entries give the same bytes, and so the same DiffID.
 */
public final class TarWriter {
  private static final int BLOCK = 512;

  /** The metadata of one entry; {@code name} and {@code link} are raw. */
  public record Header(String name, char type, int mode, long uid, long gid, long size,
      long mtimeNanos, String link, int devMajor, int devMinor, Map<String, byte[]> xattrs) {}

  public static final char FILE = '0';
  public static final char HARDLINK = '1';
  public static final char SYMLINK = '2';
  public static final char CHAR = '3';
  public static final char BLOCKDEV = '4';
  public static final char DIR = '5';
  public static final char FIFO = '6';

  private final OutputStream out;

  public TarWriter(OutputStream out) {
    this.out = out;
  }

  /** Writes a header and then {@code size} bytes of content from {@code content} (null when 0). */
  public void entry(Header h, InputStream content) throws IOException {
    io.strata.layers.base.Invocation.checkCancelled();
    ByteArrayOutputStream pax = new ByteArrayOutputStream();
    byte[] name = RawFs.bytes(h.name());
    byte[] link = h.link() == null ? new byte[0] : RawFs.bytes(h.link());
    if (name.length > 100) {
      record(pax, "path", name);
    }
    if (link.length > 100) {
      record(pax, "linkpath", link);
    }
    if (h.uid() > 07777777) {
      record(pax, "uid", ascii(Long.toString(h.uid())));
    }
    if (h.gid() > 07777777) {
      record(pax, "gid", ascii(Long.toString(h.gid())));
    }
    if (h.size() > 077777777777L) {
      record(pax, "size", ascii(Long.toString(h.size())));
    }
    long secs = Math.floorDiv(h.mtimeNanos(), 1_000_000_000L);
    long nanos = Math.floorMod(h.mtimeNanos(), 1_000_000_000L);
    if (nanos != 0 || secs < 0 || secs > 077777777777L) {
      String frac = nanos == 0 ? "" : "." + String.format("%09d", nanos).replaceFirst("0+$", "");
      record(pax, "mtime", ascii(secs + frac));
    }
    if (h.xattrs() != null) {
      for (Map.Entry<String, byte[]> x : new java.util.TreeMap<>(h.xattrs()).entrySet()) {
        record(pax, "SCHILY.xattr." + x.getKey(), x.getValue());
      }
    }
    if (pax.size() > 0) {
      byte[] p = pax.toByteArray();
      String paxName = "PaxHeaders/" + (name.length > 80
          ? RawFs.raw(java.util.Arrays.copyOf(name, 80)) : h.name());
      writeHeader(RawFs.bytes(paxName), 'x', 0644, 0, 0, p.length, 0, new byte[0], 0, 0);
      write(p);
      pad(p.length);
    }
    writeHeader(name, h.type(), h.mode(), h.uid(), h.gid(), h.size(), Math.max(0, secs), link,
        h.devMajor(), h.devMinor());
    if (h.size() > 0) {
      long n = 0;
      byte[] buf = new byte[1 << 16];
      int r;
      while (n < h.size()
          && (r = content.read(buf, 0, (int) Math.min(buf.length, h.size() - n))) > 0) {
        write(buf, r);
        n += r;
      }
      if (n != h.size()) {
        throw new IOException("'" + RawFs.display(h.name()) + "' gave " + n + " bytes, not "
            + h.size() + " (was it changed while being read?)");
      }
      pad(h.size());
    }
  }

  private static byte[] ascii(String s) {
    return s.getBytes(StandardCharsets.US_ASCII);
  }

  /** A PAX record: "LEN KEY=VALUE\n", LEN counting itself. */
  private static void record(ByteArrayOutputStream pax, String key, byte[] value) {
    byte[] k = key.getBytes(StandardCharsets.UTF_8);
    int rest = 1 + k.length + 1 + value.length + 1; // ' ' key '=' value '\n'
    int len = rest + Integer.toString(rest).length();
    if (Integer.toString(len).length() != Integer.toString(rest).length()) {
      len++;
    }
    pax.writeBytes(ascii(Integer.toString(len)));
    pax.write(' ');
    pax.writeBytes(k);
    pax.write('=');
    pax.writeBytes(value);
    pax.write('\n');
  }

  private void writeHeader(byte[] name, char type, int mode, long uid, long gid, long size,
      long mtime, byte[] link, int major, int minor) throws IOException {
    byte[] b = new byte[BLOCK];
    System.arraycopy(name, 0, b, 0, Math.min(100, name.length));
    octal(b, 100, 8, mode & 07777);
    octal(b, 108, 8, Math.min(uid, 07777777));
    octal(b, 116, 8, Math.min(gid, 07777777));
    octal(b, 124, 12, Math.min(size, 077777777777L));
    octal(b, 136, 12, Math.min(mtime, 077777777777L));
    java.util.Arrays.fill(b, 148, 156, (byte) ' ');
    b[156] = (byte) type;
    System.arraycopy(link, 0, b, 157, Math.min(100, link.length));
    System.arraycopy(ascii("ustar\0"), 0, b, 257, 6);
    b[263] = '0';
    b[264] = '0';
    if (type == CHAR || type == BLOCKDEV) {
      octal(b, 329, 8, major);
      octal(b, 337, 8, minor);
    }
    long sum = 0;
    for (byte x : b) {
      sum += x & 0xff;
    }
    byte[] cs = ascii(String.format("%06o", sum));
    System.arraycopy(cs, 0, b, 148, 6);
    b[154] = 0;
    b[155] = ' ';
    write(b);
  }

  private static void octal(byte[] b, int at, int len, long v) {
    byte[] s = ascii(String.format("%0" + (len - 1) + "o", v));
    System.arraycopy(s, 0, b, at, len - 1);
    b[at + len - 1] = 0;
  }

  private void write(byte[] b) throws IOException {
    write(b, b.length);
  }

  private void write(byte[] b, int n) throws IOException {
    out.write(b, 0, n);
  }

  private void pad(long size) throws IOException {
    int rem = (int) (size % BLOCK);
    if (rem != 0) {
      write(new byte[BLOCK - rem]);
    }
  }

  /** Writes the two zero blocks that end an archive; the stream is left open. */
  public void finish() throws IOException {
    write(new byte[2 * BLOCK]);
    out.flush();
  }
}
