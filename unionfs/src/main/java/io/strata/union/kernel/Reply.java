package io.strata.union.kernel;

import io.strata.union.view.Attr;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A reply being written into a worker's output buffer: the header is filled in by
 * {@link #finish}, the body by the put methods, in the layouts of fuse.h.
 */
final class Reply {
  final ByteBuffer buf;
  private int at;

  Reply(ByteBuffer buf) {
    this.buf = buf.order(ByteOrder.LITTLE_ENDIAN);
  }

  /** Starts a reply body (after the header's 16 bytes). */
  Reply start() {
    at = Fuse.OUT_HEADER;
    return this;
  }

  int size() {
    return at;
  }

  /** Room left in the buffer. */
  int room() {
    return buf.capacity() - at;
  }

  /** Writes the header for a reply of what was put: error 0, or -errno with no body. */
  int finish(long unique, int errno) {
    if (errno != 0) {
      at = Fuse.OUT_HEADER;
    }
    buf.putInt(0, at);
    buf.putInt(4, -errno);
    buf.putLong(8, unique);
    return at;
  }

  /** A notification: unique 0 and the notify code where the error goes. */
  int finishNotify(int code) {
    buf.putInt(0, at);
    buf.putInt(4, code);
    buf.putLong(8, 0);
    return at;
  }

  Reply u32(int v) {
    buf.putInt(at, v);
    at += 4;
    return this;
  }

  Reply u64(long v) {
    buf.putLong(at, v);
    at += 8;
    return this;
  }

  Reply u16(int v) {
    buf.putShort(at, (short) v);
    at += 2;
    return this;
  }

  Reply zeros(int n) {
    for (int i = 0; i < n; i++) {
      buf.put(at + i, (byte) 0);
    }
    at += n;
    return this;
  }

  Reply bytes(byte[] b) {
    buf.put(at, b);
    at += b.length;
    return this;
  }

  /** A raw string's bytes (one byte per char), optionally NUL-terminated. */
  Reply raw(String s, boolean nul) {
    for (int i = 0; i < s.length(); i++) {
      buf.put(at + i, (byte) s.charAt(i));
    }
    at += s.length();
    if (nul) {
      buf.put(at++, (byte) 0);
    }
    return this;
  }

  /** Advances over {@code n} bytes written in place (by a pread into the buffer). */
  Reply advance(int n) {
    at += n;
    return this;
  }

  /** struct fuse_attr. */
  Reply attr(Attr a) {
    u64(a.ino()).u64(a.size()).u64(a.blocks());
    u64(Math.floorDiv(a.atimeNanos(), 1_000_000_000L));
    u64(Math.floorDiv(a.mtimeNanos(), 1_000_000_000L));
    u64(Math.floorDiv(a.ctimeNanos(), 1_000_000_000L));
    u32((int) Math.floorMod(a.atimeNanos(), 1_000_000_000L));
    u32((int) Math.floorMod(a.mtimeNanos(), 1_000_000_000L));
    u32((int) Math.floorMod(a.ctimeNanos(), 1_000_000_000L));
    u32(a.mode()).u32((int) Math.min(a.nlink(), 0xffffffffL)).u32(a.uid()).u32(a.gid());
    u32(encodeDev(a.rdev())).u32(4096).u32(0);
    return this;
  }

  /** struct fuse_entry_out; nodeid 0 is a negative entry, cached for {@code entryNanos}. */
  Reply entry(long nodeid, Attr a, long entryNanos, long attrNanos) {
    u64(nodeid).u64(0);
    u64(entryNanos / 1_000_000_000L).u64(attrNanos / 1_000_000_000L);
    u32((int) (entryNanos % 1_000_000_000L)).u32((int) (attrNanos % 1_000_000_000L));
    if (a == null) {
      return zeros(Fuse.ATTR);
    }
    return attr(a);
  }

  /** struct fuse_attr_out. */
  Reply attrOut(Attr a, long attrNanos) {
    u64(attrNanos / 1_000_000_000L).u32((int) (attrNanos % 1_000_000_000L)).u32(0);
    return attr(a);
  }

  /**
   * struct fuse_statx_out: the basic attributes and, where the real file's filesystem keeps
   * one, its birth time (the kernel fills in the device itself).
   */
  Reply statxOut(Attr a, long attrNanos) {
    u64(attrNanos / 1_000_000_000L).u32((int) (attrNanos % 1_000_000_000L)).u32(0).u64(0).u64(0);
    u32(STATX_BASIC_STATS | (a.hasBtime() ? STATX_BTIME : 0)).u32(4096).u64(0);
    u32((int) Math.min(a.nlink(), 0xffffffffL)).u32(a.uid()).u32(a.gid());
    u16(a.mode()).u16(0);
    u64(a.ino()).u64(a.size()).u64(a.blocks()).u64(0);
    sxTime(a.atimeNanos());
    sxTime(a.hasBtime() ? a.btimeNanos() : 0);
    sxTime(a.ctimeNanos());
    sxTime(a.mtimeNanos());
    u32(io.strata.layers.fs.Posix.major(a.rdev())).u32(io.strata.layers.fs.Posix.minor(a.rdev()))
        .u32(0).u32(0);
    return zeros(14 * 8);
  }

  static final int STATX_BASIC_STATS = 0x7ff;
  static final int STATX_BTIME = 0x800;

  /** struct fuse_sx_time: seconds, nanoseconds, a reserved word. */
  private void sxTime(long nanos) {
    u64(Math.floorDiv(nanos, 1_000_000_000L)).u32((int) Math.floorMod(nanos, 1_000_000_000L))
        .u32(0);
  }

  /** struct fuse_dirent of a name: 24 bytes, the name, padding to 8. */
  Reply dirent(long ino, long nextOffset, int type, String name) {
    u64(ino).u64(nextOffset).u32(name.length()).u32(type >>> 12);
    raw(name, false);
    return zeros(pad(name.length()));
  }

  static int direntSize(String name) {
    return Fuse.DIRENT + name.length() + pad(name.length());
  }

  private static int pad(int len) {
    return (8 - ((Fuse.DIRENT + len) & 7)) & 7;
  }

  /** The kernel's 32-bit new_encode_dev form of a dev_t, as fuse_attr carries it. */
  static int encodeDev(long dev) {
    long major = ((dev >>> 8) & 0xfff) | ((dev >>> 32) & ~0xfffL);
    long minor = (dev & 0xff) | ((dev >>> 12) & ~0xffL);
    return (int) ((minor & 0xff) | (major << 8) | ((minor & ~0xffL) << 12));
  }
}
