package io.strata.layers.archive;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A streaming reader of layer tars: ustar, GNU (long names, base-256 numbers, old sparse) and
 * PAX (extended and global headers, SCHILY and LIBARCHIVE xattrs, GNU sparse 0.0, 0.1 and 1.0).
 *
 * <p>strata reads layers with this rather than commons-compress's TarArchiveInputStream, which
 * (in 1.28) reads on past a header with a bad checksum, decodes PAX values as UTF-8 so binary
 * xattrs such as {@code security.capability} are mangled, and fails on GNU sparse files larger
 * than 2 GiB in PAX form or 8 GiB in GNU form. commons-compress still does the decompression
 * and the random access to image archives.
 *
 * <p>Every size the archive states is checked against a limit before anything is allocated.
 */
final class TarReader {
  static final int BLOCK = 512;
  /** Extended headers and GNU long names larger than this are refused as hostile. */
  static final int MAX_META = 16 * 1024 * 1024;
  static final int MAX_SPARSE_REGIONS = 1 << 20;

  /** One data region of a sparse file: {@code length} bytes of content at {@code offset}. */
  record Region(long offset, long length) {}

  /** One archive member, with every header that applied to it merged in. */
  static final class Entry {
    String name;
    String linkName = "";
    char type;
    int mode;
    long uid;
    long gid;
    /** Bytes of content stored in the archive (for sparse files, only the data regions). */
    long size;
    /** The size of the file once extracted. */
    long realSize;
    long mtimeNanos;
    int devMajor;
    int devMinor;
    final Map<String, byte[]> xattrs = new LinkedHashMap<>();
    /** The data regions of a sparse file, in order; null for a file that is not sparse. */
    List<Region> sparse;

    boolean isDirectory() {
      return type == '5';
    }

    boolean isRegular() {
      return type == '0' || type == '\0' || type == '7' || type == 'S';
    }

    @Override
    public String toString() {
      return name;
    }
  }

  private final InputStream in;
  private final byte[] block = new byte[BLOCK];
  private final Map<String, byte[]> globals = new HashMap<>();
  private long remaining; // content bytes of the current entry not yet read
  private long padding;   // bytes after the content up to the next block boundary
  private boolean ended;

  TarReader(InputStream in) {
    this.in = in;
  }

  /** The next entry, or null at the end of the archive. Unread content is skipped. */
  Entry next() throws IOException {
    if (ended) {
      return null;
    }
    skipRest();
    String longName = null;
    String longLink = null;
    Map<String, byte[]> pax = new LinkedHashMap<>(globals);
    while (true) {
      if (!readBlock(true)) {
        ended = true; // EOF with no end-of-archive blocks: tolerated, as GNU tar does
        return null;
      }
      if (isZero(block)) {
        // The end-of-archive marker is two zero blocks; a lone one at EOF is tolerated.
        ended = true;
        return null;
      }
      checkChecksum();
      char type = (char) block[156];
      long size = number(124, 12, "size");
      switch (type) {
        case 'x':
          pax.putAll(parsePax(readMeta(size, "PAX header")));
          continue;
        case 'g':
          Map<String, byte[]> g = parsePax(readMeta(size, "global PAX header"));
          globals.putAll(g);
          pax.putAll(g);
          continue;
        case 'L':
          longName = cString(readMeta(size, "GNU long name"));
          continue;
        case 'K':
          longLink = cString(readMeta(size, "GNU long link name"));
          continue;
        default:
          return entry(type, size, longName, longLink, pax);
      }
    }
  }

  /** Reads content of the current entry (for a sparse file, its data regions back to back). */
  int read(byte[] buf, int off, int len) throws IOException {
    if (remaining <= 0) {
      return -1;
    }
    int n = in.read(buf, off, (int) Math.min(len, remaining));
    if (n < 0) {
      throw new EOFException("archive truncated: " + remaining + " bytes of content missing");
    }
    remaining -= n;
    return n;
  }

  private Entry entry(char type, long size, String longName, String longLink,
      Map<String, byte[]> pax) throws IOException {
    Entry e = new Entry();
    e.type = type;
    boolean gnu = block[257] == 'u' && block[262] == ' ';
    String name = string(0, 100);
    if (!gnu && block[257] == 'u' && block[345] != 0) {
      name = string(345, 155) + "/" + name; // ustar prefix
    }
    e.name = longName != null ? longName : name;
    e.linkName = longLink != null ? longLink : string(157, 100);
    e.mode = (int) number(100, 8, "mode");
    e.uid = number(108, 8, "uid");
    e.gid = number(116, 8, "gid");
    e.mtimeNanos = Math.multiplyExact(number(136, 12, "mtime"), 1_000_000_000L);
    if (type == '3' || type == '4') {
      e.devMajor = (int) number(329, 8, "devmajor");
      e.devMinor = (int) number(337, 8, "devminor");
    }
    e.size = size;
    e.realSize = size;
    if (type == 'S') {
      e.sparse = oldGnuSparse();
      e.realSize = number(483, 12, "realsize");
    }
    applyPax(e, pax);
    if (e.size < 0 || e.realSize < 0) {
      throw new IOException("negative size");
    }
    if (e.type == '1' || e.type == '2' || e.type == '3' || e.type == '4' || e.type == '5'
        || e.type == '6') {
      // Only regular files carry content; a size on anything else is skipped, not trusted.
      if (e.type != '5') {
        e.realSize = 0;
      }
    }
    remaining = e.size;
    padding = (BLOCK - (e.size % BLOCK)) % BLOCK;
    if (e.sparse == null && pax.containsKey("GNU.sparse.major")) {
      e.sparse = sparseMapInData(e);
    }
    if (e.sparse != null) {
      checkRegions(e);
    }
    return e;
  }

  private void applyPax(Entry e, Map<String, byte[]> pax) throws IOException {
    for (Map.Entry<String, byte[]> h : pax.entrySet()) {
      String k = h.getKey();
      String v = new String(h.getValue(), StandardCharsets.ISO_8859_1);
      switch (k) {
        case "path":
          e.name = v;
          break;
        case "linkpath":
          e.linkName = v;
          break;
        case "size":
          e.size = decimal(v, k);
          e.realSize = e.size;
          break;
        case "uid":
          e.uid = decimal(v, k);
          break;
        case "gid":
          e.gid = decimal(v, k);
          break;
        case "mtime":
          e.mtimeNanos = paxTime(v);
          break;
        case "GNU.sparse.name":
          e.name = v;
          break;
        case "GNU.sparse.realsize":
        case "GNU.sparse.size":
          e.realSize = decimal(v, k);
          break;
        case "GNU.sparse.map":
          e.sparse = pairs(v.split(","), k);
          break;
        default:
          if (k.startsWith("SCHILY.xattr.")) {
            e.xattrs.put(k.substring("SCHILY.xattr.".length()), h.getValue());
          } else if (k.startsWith("LIBARCHIVE.xattr.")) {
            String attr = java.net.URLDecoder.decode(k.substring("LIBARCHIVE.xattr.".length()),
                StandardCharsets.ISO_8859_1);
            try {
              e.xattrs.put(attr, Base64.getDecoder().decode(v.trim()));
            } catch (IllegalArgumentException bad) {
              throw new IOException("xattr " + attr + " is not base64");
            }
          }
      }
    }
    // GNU sparse 0.0 repeats GNU.sparse.offset / GNU.sparse.numbytes; kept in order by the map.
    if (e.sparse == null && pax.containsKey("GNU.sparse.offset")) {
      throw new IOException("GNU sparse format 0.0 (repeated offset keys) is not supported");
    }
  }

  /** Reads the decimal sparse map that GNU sparse 1.0 puts at the start of the content. */
  private List<Region> sparseMapInData(Entry e) throws IOException {
    StringBuilder text = new StringBuilder();
    long consumed = 0;
    long count = -1;
    List<String> numbers = new ArrayList<>();
    while (count < 0 || numbers.size() < 1 + 2 * count) {
      int c = readContentByte();
      consumed++;
      if (c == '\n') {
        numbers.add(text.toString());
        text.setLength(0);
        if (numbers.size() == 1) {
          count = decimal(numbers.get(0), "sparse map count");
          if (count > MAX_SPARSE_REGIONS) {
            throw new IOException("sparse map of " + count + " regions is too large");
          }
        }
      } else if (c >= '0' && c <= '9' && text.length() < 20) {
        text.append((char) c);
      } else {
        throw new IOException("malformed GNU sparse 1.0 map");
      }
    }
    // The map is padded to a block boundary; the data regions follow.
    long pad = (BLOCK - consumed % BLOCK) % BLOCK;
    for (long i = 0; i < pad; i++) {
      readContentByte();
    }
    return pairs(numbers.subList(1, numbers.size()).toArray(new String[0]), "sparse map");
  }

  private int readContentByte() throws IOException {
    byte[] one = new byte[1];
    if (read(one, 0, 1) != 1) {
      throw new EOFException("archive truncated inside a sparse map");
    }
    return one[0] & 0xff;
  }

  private List<Region> oldGnuSparse() throws IOException {
    List<Region> regions = new ArrayList<>();
    addOldRegions(regions, 386, 4);
    boolean extended = block[482] != 0;
    while (extended) {
      if (!readBlock(false)) {
        throw new EOFException("archive truncated in a sparse header");
      }
      addOldRegions(regions, 0, 21);
      extended = block[504] != 0;
      if (regions.size() > MAX_SPARSE_REGIONS) {
        throw new IOException("too many sparse regions");
      }
    }
    return regions;
  }

  private void addOldRegions(List<Region> regions, int at, int count) throws IOException {
    for (int i = 0; i < count; i++) {
      int off = at + i * 24;
      if (block[off] == 0 && block[off + 12] == 0) {
        continue;
      }
      regions.add(new Region(number(off, 12, "sparse offset"), number(off + 12, 12, "sparse length")));
    }
  }

  private void checkRegions(Entry e) throws IOException {
    long pos = 0;
    long data = 0;
    for (Region r : e.sparse) {
      if (r.offset() < pos || r.length() < 0 || r.offset() + r.length() > e.realSize) {
        throw new IOException("sparse map out of order or beyond the file size");
      }
      pos = r.offset() + r.length();
      data += r.length();
    }
    if (data != remaining) {
      throw new IOException("sparse map covers " + data + " bytes but " + remaining
          + " are stored");
    }
  }

  private List<Region> pairs(String[] parts, String what) throws IOException {
    if (parts.length % 2 != 0 || parts.length / 2 > MAX_SPARSE_REGIONS) {
      throw new IOException("malformed " + what);
    }
    List<Region> out = new ArrayList<>();
    for (int i = 0; i < parts.length; i += 2) {
      out.add(new Region(decimal(parts[i], what), decimal(parts[i + 1], what)));
    }
    return out;
  }

  private byte[] readMeta(long size, String what) throws IOException {
    if (size < 0 || size > MAX_META) {
      throw new IOException(what + " of " + size + " bytes exceeds the limit of " + MAX_META);
    }
    byte[] data = in.readNBytes((int) size);
    if (data.length != size) {
      throw new EOFException("archive truncated inside a " + what);
    }
    long pad = (BLOCK - size % BLOCK) % BLOCK;
    if (skip(pad) != pad) {
      throw new EOFException("archive truncated after a " + what);
    }
    return data;
  }

  /** Parses "LEN key=value\n" records; values stay bytes, since xattrs may be binary. */
  private static Map<String, byte[]> parsePax(byte[] data) throws IOException {
    Map<String, byte[]> out = new LinkedHashMap<>();
    int pos = 0;
    while (pos < data.length) {
      if (data[pos] == 0) {
        break; // some writers pad with NULs
      }
      int space = pos;
      while (space < data.length && data[space] != ' ') {
        space++;
      }
      if (space == data.length || space == pos || space - pos > 10) {
        throw new IOException("malformed PAX record length");
      }
      long len = decimal(new String(data, pos, space - pos, StandardCharsets.US_ASCII), "PAX record length");
      if (len <= space - pos + 1 || pos + len > data.length || data[(int) (pos + len - 1)] != '\n') {
        throw new IOException("PAX record length " + len + " does not fit the header");
      }
      int end = (int) (pos + len - 1);
      int eq = space + 1;
      while (eq < end && data[eq] != '=') {
        eq++;
      }
      if (eq == end) {
        throw new IOException("PAX record without '='");
      }
      String key = new String(data, space + 1, eq - space - 1, StandardCharsets.ISO_8859_1);
      byte[] value = java.util.Arrays.copyOfRange(data, eq + 1, end);
      if (value.length == 0) {
        out.remove(key); // an empty value deletes the key, per POSIX
      } else {
        out.put(key, value);
      }
      pos = end + 1;
    }
    return out;
  }

  private void skipRest() throws IOException {
    long n = remaining + padding;
    remaining = 0;
    padding = 0;
    if (skip(n) != n) {
      throw new EOFException("archive truncated inside an entry's content");
    }
  }

  /** Skips by reading, so that every byte passes through the digest below. */
  private long skip(long n) throws IOException {
    byte[] scratch = new byte[(int) Math.min(n, 64 * 1024)];
    long done = 0;
    while (done < n) {
      int r = in.read(scratch, 0, (int) Math.min(scratch.length, n - done));
      if (r < 0) {
        break;
      }
      done += r;
    }
    return done;
  }

  private boolean readBlock(boolean eofOk) throws IOException {
    int n = in.readNBytes(block, 0, BLOCK);
    if (n == 0 && eofOk) {
      return false;
    }
    if (n != BLOCK) {
      throw new EOFException("archive truncated inside a header (" + n + " of 512 bytes)");
    }
    return true;
  }

  private void checkChecksum() throws IOException {
    long stored = number(148, 8, "checksum");
    long unsigned = 0;
    long signed = 0;
    for (int i = 0; i < BLOCK; i++) {
      byte b = (i >= 148 && i < 156) ? (byte) ' ' : block[i];
      unsigned += b & 0xff;
      signed += b;
    }
    if (stored != unsigned && stored != signed) {
      throw new IOException("corrupt tar header (checksum mismatch)");
    }
  }

  /** A numeric field: octal, space or NUL terminated, or GNU base-256 when the top bit is set. */
  private long number(int at, int len, String what) throws IOException {
    if ((block[at] & 0x80) != 0) {
      if ((block[at] & 0xff) == 0xff) {
        throw new IOException("negative " + what);
      }
      long v = block[at] & 0x7f;
      for (int i = 1; i < len; i++) {
        if ((v >>> 55) != 0) {
          throw new IOException(what + " does not fit in 63 bits");
        }
        v = (v << 8) | (block[at + i] & 0xff);
      }
      return v;
    }
    long v = 0;
    int i = at;
    int end = at + len;
    while (i < end && block[i] == ' ') {
      i++;
    }
    for (; i < end; i++) {
      byte b = block[i];
      if (b == 0 || b == ' ') {
        break;
      }
      if (b < '0' || b > '7') {
        throw new IOException("corrupt tar header: bad " + what + " field");
      }
      v = (v << 3) | (b - '0');
    }
    return v;
  }

  private String string(int at, int len) {
    int end = at;
    while (end < at + len && block[end] != 0) {
      end++;
    }
    return new String(block, at, end - at, StandardCharsets.ISO_8859_1);
  }

  private static String cString(byte[] b) {
    int end = 0;
    while (end < b.length && b[end] != 0) {
      end++;
    }
    return new String(b, 0, end, StandardCharsets.ISO_8859_1);
  }

  private static long decimal(String s, String what) throws IOException {
    try {
      long v = Long.parseLong(s.trim());
      if (v < 0) {
        throw new IOException("negative " + what + ": " + s);
      }
      return v;
    } catch (NumberFormatException e) {
      throw new IOException("bad " + what + ": '" + s + "'");
    }
  }

  private static long paxTime(String v) throws IOException {
    try {
      java.math.BigDecimal secs = new java.math.BigDecimal(v.trim());
      return secs.movePointRight(9).setScale(0, java.math.RoundingMode.FLOOR).longValueExact();
    } catch (NumberFormatException | ArithmeticException e) {
      throw new IOException("bad PAX mtime '" + v + "'");
    }
  }

  private static boolean isZero(byte[] b) {
    for (byte x : b) {
      if (x != 0) {
        return false;
      }
    }
    return true;
  }
}
