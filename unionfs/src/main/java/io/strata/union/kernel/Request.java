package io.strata.union.kernel;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * One request read from /dev/fuse: its header and a cursor over its body. Every read is
 * bounded by the frame's length, so a frame that lies about itself ends in a
 * {@link BadFrame}, never in reading another request's bytes.
 */
final class Request {
  /** A frame that cannot be what it says: answered with EINVAL, or dropped without a header. */
  static final class BadFrame extends Exception {
    BadFrame(String why) {
      super(why, null, false, false);
    }
  }

  final ByteBuffer buf;
  int length;
  int opcode;
  long unique;
  long nodeid;
  int uid;
  int gid;
  int pid;
  private int at;

  Request(ByteBuffer buf) {
    this.buf = buf.order(ByteOrder.LITTLE_ENDIAN);
  }

  /**
   * Takes the header of a frame of {@code n} bytes that the device returned. A header that
   * claims another length than the device gave is a bad frame.
   */
  void parse(int n) throws BadFrame {
    if (n < Fuse.IN_HEADER) {
      throw new BadFrame("frame of " + n + " bytes is shorter than a header");
    }
    length = buf.getInt(0);
    opcode = buf.getInt(4);
    unique = buf.getLong(8);
    nodeid = buf.getLong(16);
    uid = buf.getInt(24);
    gid = buf.getInt(28);
    pid = buf.getInt(32);
    at = Fuse.IN_HEADER;
    if (length != n) {
      throw new BadFrame("header says " + Integer.toUnsignedString(length) + " bytes, frame has "
          + n);
    }
  }

  private void need(int bytes) throws BadFrame {
    if (bytes < 0 || at + bytes > length) {
      throw new BadFrame(Fuse.name(opcode) + ": body ends at " + length + ", wanted "
          + bytes + " more bytes from " + at);
    }
  }

  int u32() throws BadFrame {
    need(4);
    int v = buf.getInt(at);
    at += 4;
    return v;
  }

  long u64() throws BadFrame {
    need(8);
    long v = buf.getLong(at);
    at += 8;
    return v;
  }

  void skip(int bytes) throws BadFrame {
    need(bytes);
    at += bytes;
  }

  /** Where the cursor is, as an offset into the frame (for data that is read in place). */
  int position() {
    return at;
  }

  /** The bytes left in the frame. */
  int remaining() {
    return length - at;
  }

  /**
   * A NUL-terminated name as a raw string (one char per byte). A name without its NUL, an
   * empty one, or one with a slash is a bad frame: the kernel never sends such.
   */
  String name() throws BadFrame {
    return string(false);
  }

  /** A NUL-terminated string that may hold slashes: a symlink's target. */
  String target() throws BadFrame {
    return string(true);
  }

  private String string(boolean slashes) throws BadFrame {
    int end = at;
    while (end < length && buf.get(end) != 0) {
      end++;
    }
    if (end >= length) {
      throw new BadFrame(Fuse.name(opcode) + ": name without its NUL");
    }
    char[] c = new char[end - at];
    for (int i = 0; i < c.length; i++) {
      byte b = buf.get(at + i);
      if (b == '/' && !slashes) {
        throw new BadFrame(Fuse.name(opcode) + ": name with a slash");
      }
      c[i] = (char) (b & 0xff);
    }
    at = end + 1;
    return new String(c);
  }

  /** The next {@code n} bytes, copied. */
  byte[] bytes(int n) throws BadFrame {
    need(n);
    byte[] b = new byte[n];
    buf.get(at, b);
    at += n;
    return b;
  }
}
