package io.strata.runtime.daemon;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * The daemon's wire: frames of one type byte, a big-endian u32 length and the payload, over a
 * unix stream socket. The C client (runtime/src/main/c/strata-client.c) speaks the same.
 *
 * <pre>
 * client to daemon   H hello: u32 version, u32 pid, u32 flags (1 stdin, 2 stdout, 4 stderr
 *                      are terminals; 8 the client is a user in the host's user namespace and
 *                      mounts and unmounts when asked), str cwd, u32 n + n str argv, u32 n + n str env (K=V)
 *                    I stdin bytes; E stdin ended; S u32 signal number
 *                    F the mount asked for is made: the path of the unix socket on which the
 *                      client hands its /dev/fuse descriptor to the daemon; for an unmount,
 *                      "unmounted" or "not mounted"; f it failed: why
 * daemon to client   O stdout bytes; R stderr bytes; W send stdin; X u32 exit status;
 *                    T (first and only) the daemon is stopping: run the command yourself
 *                    M mount /dev/fuse with fusermount3: mountpoint, NUL, fusermount3's options
 *                    U unmount the FUSE mount at a path with fusermount3: u8 lazy, mountpoint
 * str = u32 length + UTF-8 bytes
 * </pre>
 */
final class Wire {
  static final int VERSION = 1;
  static final byte HELLO = 'H';
  static final byte STDIN = 'I';
  static final byte STDIN_END = 'E';
  static final byte SIGNAL = 'S';
  static final byte STDOUT = 'O';
  static final byte STDERR = 'R';
  static final byte WANT_STDIN = 'W';
  static final byte EXIT = 'X';
  /** The daemon is stopping and takes no command: the client runs it in a JVM of its own. */
  static final byte RUN_YOURSELF = 'T';
  /**
   * The client is a user in the host's user namespace: it mounts and unmounts when asked
   * ({@link #MOUNT}, {@link #UNMOUNT}).
   */
  static final int MOUNTS_FOR_DAEMON = 8;
  /** Mount /dev/fuse with fusermount3 where the client is: mountpoint, NUL, options. */
  static final byte MOUNT = 'M';
  /** Unmount a FUSE mount where the client is: u8 lazy (0 or 1), then the mountpoint. */
  static final byte UNMOUNT = 'U';
  /**
   * The client did as asked: for a mount, the path of the socket that hands the descriptor
   * over; for an unmount, "unmounted" or "not mounted".
   */
  static final byte MOUNTED = 'F';
  /** The client could not mount or unmount: why. */
  static final byte MOUNT_FAILED = 'f';
  /** The largest frame either side sends or takes. */
  static final int MAX_FRAME = 1 << 20;

  private Wire() {}

  /** A frame as read. */
  record Frame(byte type, byte[] payload) {
    int u32(int at) {
      return ByteBuffer.wrap(payload).getInt(at);
    }
  }

  /** The hello a client sends first. */
  record Hello(long pid, int flags, String cwd, List<String> argv, List<String> env) {
    byte[] encode() {
      Writer w = new Writer();
      w.u32(VERSION).u32((int) pid).u32(flags).str(cwd).u32(argv.size());
      argv.forEach(w::str);
      w.u32(env.size());
      env.forEach(w::str);
      return w.bytes();
    }

    static Hello decode(byte[] p) throws IOException {
      ByteBuffer b = ByteBuffer.wrap(p);
      try {
        int version = b.getInt();
        if (version != VERSION) {
          throw new IOException("client speaks version " + version + ", the daemon " + VERSION
              + " (run the strata that matches the daemon)");
        }
        long pid = b.getInt() & 0xffffffffL;
        int flags = b.getInt();
        String cwd = str(b);
        List<String> argv = new ArrayList<>();
        for (int n = count(b); n > 0; n--) {
          argv.add(str(b));
        }
        List<String> env = new ArrayList<>();
        for (int n = count(b); n > 0; n--) {
          env.add(str(b));
        }
        return new Hello(pid, flags, cwd, argv, env);
      } catch (java.nio.BufferUnderflowException e) {
        throw new IOException("a malformed hello");
      }
    }

    private static int count(ByteBuffer b) throws IOException {
      int n = b.getInt();
      if (n < 0 || n > 1 << 16) {
        throw new IOException("a malformed hello");
      }
      return n;
    }

    private static String str(ByteBuffer b) throws IOException {
      int n = b.getInt();
      if (n < 0 || n > b.remaining()) {
        throw new IOException("a malformed hello");
      }
      byte[] s = new byte[n];
      b.get(s);
      return new String(s, StandardCharsets.UTF_8);
    }
  }

  /** Builds a payload. */
  static final class Writer {
    private final java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();

    Writer u32(int v) {
      out.write(v >>> 24);
      out.write(v >>> 16);
      out.write(v >>> 8);
      out.write(v);
      return this;
    }

    Writer str(String s) {
      byte[] b = s.getBytes(StandardCharsets.UTF_8);
      u32(b.length);
      out.write(b, 0, b.length);
      return this;
    }

    byte[] bytes() {
      return out.toByteArray();
    }
  }

  static byte[] u32(int v) {
    return new Writer().u32(v).bytes();
  }

  /** Writes whole frames; one writer at a time. */
  static final class Out {
    private final OutputStream out;

    Out(OutputStream out) {
      this.out = out;
    }

    synchronized void frame(byte type, byte[] p, int off, int len) throws IOException {
      byte[] head = {type, (byte) (len >>> 24), (byte) (len >>> 16), (byte) (len >>> 8),
          (byte) len};
      out.write(head);
      out.write(p, off, len);
      out.flush();
    }

    void frame(byte type, byte[] p) throws IOException {
      frame(type, p, 0, p.length);
    }
  }

  /** Reads one frame; null at the end of the stream. */
  static Frame read(InputStream in) throws IOException {
    int type = in.read();
    if (type < 0) {
      return null;
    }
    byte[] len = in.readNBytes(4);
    if (len.length < 4) {
      throw new EOFException("a frame cut short");
    }
    int n = ByteBuffer.wrap(len).getInt();
    if (n < 0 || n > MAX_FRAME) {
      throw new IOException("a frame of " + n + " bytes");
    }
    byte[] p = in.readNBytes(n);
    if (p.length < n) {
      throw new EOFException("a frame cut short");
    }
    return new Frame((byte) type, p);
  }

  /**
   * Streams over a blocking socket channel that read and write from different threads at once
   * (Channels.newInputStream and newOutputStream share one lock, so a blocked read would stop
   * every write).
   */
  static InputStream input(SocketChannel ch) {
    return new InputStream() {
      @Override
      public int read() throws IOException {
        byte[] b = new byte[1];
        int n = read(b, 0, 1);
        return n <= 0 ? -1 : b[0] & 0xff;
      }

      @Override
      public int read(byte[] b, int off, int len) throws IOException {
        if (len == 0) {
          return 0;
        }
        return ch.read(ByteBuffer.wrap(b, off, len));
      }
    };
  }

  static OutputStream output(SocketChannel ch) {
    return new OutputStream() {
      @Override
      public void write(int b) throws IOException {
        write(new byte[] {(byte) b}, 0, 1);
      }

      @Override
      public void write(byte[] b, int off, int len) throws IOException {
        ByteBuffer buf = ByteBuffer.wrap(b, off, len);
        while (buf.hasRemaining()) {
          ch.write(buf);
        }
      }
    };
  }
}
