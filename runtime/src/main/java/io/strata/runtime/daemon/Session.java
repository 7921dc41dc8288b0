package io.strata.runtime.daemon;

import io.strata.layers.base.Invocation;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.function.Consumer;

/**
 * One client's command, run in this JVM as the client ran it: its arguments, environment and
 * working directory ({@link Invocation}), its output sent back as frames, its input asked for
 * when a command reads it, its signals passed on, its exit status returned. A client that goes
 * away (its terminal closed, killed) is a hangup: the command gets SIGHUP, or is cancelled.
 */
final class Session implements Runnable {
  private static final int SIGHUP = 1;

  private final SocketChannel ch;
  private final DaemonServer.CommandLine commands;
  private final Consumer<String> log;
  private final Wire.Out out;
  private final InputStream in;
  private final java.util.concurrent.Executor threads;

  Session(SocketChannel ch, DaemonServer.CommandLine commands, Consumer<String> log,
      java.util.concurrent.Executor threads) {
    this.threads = threads;
    this.ch = ch;
    this.commands = commands;
    this.log = log;
    this.out = new Wire.Out(Wire.output(ch));
    this.in = Wire.input(ch);
  }

  @Override
  public void run() {
    try (ch) {
      Wire.Frame first = Wire.read(in);
      if (first == null || first.type() != Wire.HELLO) {
        return;
      }
      Wire.Hello h;
      try {
        h = Wire.Hello.decode(first.payload());
      } catch (IOException e) {
        fail(e.getMessage());
        return;
      }
      Map<String, String> env = new HashMap<>();
      for (String kv : h.env()) {
        int eq = kv.indexOf('=');
        if (eq > 0) {
          env.put(kv.substring(0, eq), kv.substring(eq + 1));
        }
      }
      Path cwd = Path.of(h.cwd().isEmpty() ? "/" : h.cwd());
      if (!cwd.isAbsolute()) {
        fail("the working directory " + h.cwd() + " is not absolute");
        return;
      }
      Stdin stdin = new Stdin();
      PrintStream o = new PrintStream(new Frames(Wire.STDOUT), true, StandardCharsets.UTF_8);
      PrintStream e = new PrintStream(new Frames(Wire.STDERR), true, StandardCharsets.UTF_8);
      Invocation inv = new Invocation(cwd, env, stdin, o, e, (h.flags() & 1) != 0,
          (h.flags() & 4) != 0, h.pid());
      if ((h.flags() & Wire.MOUNTS_FOR_DAEMON) != 0
          && !io.strata.layers.fs.Places.inInitialUserNamespace()) {
        // a user's daemon, in a user namespace of its own, serving a mount on the host: the
        // client makes it with fusermount3 and hands the descriptor over
        inv.clientMounter(new Invocation.ClientMounter() {
          @Override
          public int mount(Path mountpoint, String options) throws IOException {
            return mountAtClient(mountpoint, options);
          }

          @Override
          public boolean unmount(Path mountpoint, boolean lazy) throws IOException {
            return unmountAtClient(mountpoint, lazy);
          }
        });
      }
      threads.execute(() -> readClient(inv, stdin));
      int code;
      try {
        code = Invocation.run(inv, () -> commands.run(h.argv()));
      } catch (Exception | Error ex) {
        e.println("strata: " + ex);
        code = 1;
      }
      o.flush();
      e.flush();
      out.frame(Wire.EXIT, Wire.u32(code));
    } catch (IOException gone) {
      // the client left before its status: nothing to tell it
    }
  }

  /**
   * What the client answered to the last {@link Wire#MOUNT} or {@link Wire#UNMOUNT}: its
   * socket's path or what became of the mount, or a failure.
   */
  private final LinkedBlockingQueue<Object> mounted = new LinkedBlockingQueue<>();

  /**
   * Has the client mount /dev/fuse on {@code mountpoint} with fusermount3 and takes the
   * descriptor it hands over: the mount is then made where the user is, with the user's rights.
   */
  private int mountAtClient(Path mountpoint, String options) throws IOException {
    byte[] mp = io.strata.layers.fs.RawFs.bytes(io.strata.layers.fs.RawFs.raw(mountpoint));
    byte[] opts = options.getBytes(StandardCharsets.UTF_8);
    byte[] p = new byte[mp.length + 1 + opts.length];
    System.arraycopy(mp, 0, p, 0, mp.length);
    System.arraycopy(opts, 0, p, mp.length + 1, opts.length);
    String socket = askClient(Wire.MOUNT, p, "mount " + mountpoint);
    return io.strata.union.mount.FuseMount.adopt(Path.of(socket));
  }

  /** Has the client unmount the FUSE mount at {@code mountpoint}; false when none is there. */
  private boolean unmountAtClient(Path mountpoint, boolean lazy) throws IOException {
    byte[] mp = io.strata.layers.fs.RawFs.bytes(io.strata.layers.fs.RawFs.raw(mountpoint));
    byte[] p = new byte[1 + mp.length];
    p[0] = (byte) (lazy ? 1 : 0);
    System.arraycopy(mp, 0, p, 1, mp.length);
    return askClient(Wire.UNMOUNT, p, "unmount " + mountpoint).equals("unmounted");
  }

  /** Sends the client a request of its own ({@code type}) and waits for its answer. */
  private String askClient(byte type, byte[] payload, String what) throws IOException {
    mounted.clear();
    out.frame(type, payload);
    Object answer;
    try {
      answer = mounted.poll(60, java.util.concurrent.TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted while the client was asked to " + what);
    }
    if (answer == null) {
      throw new IOException("the client did not " + what + " within 60 s");
    }
    if (answer instanceof IOException failed) {
      throw failed;
    }
    return (String) answer;
  }

  private void fail(String why) throws IOException {
    byte[] m = ("strata: " + why + "\n").getBytes(StandardCharsets.UTF_8);
    out.frame(Wire.STDERR, m);
    out.frame(Wire.EXIT, Wire.u32(2));
  }

  /** Frames from the client after the hello: input, its end, signals; EOF is a hangup. */
  private void readClient(Invocation inv, Stdin stdin) {
    try {
      Wire.Frame f;
      while ((f = Wire.read(in)) != null) {
        switch (f.type()) {
          case Wire.STDIN -> stdin.feed(f.payload());
          case Wire.STDIN_END -> stdin.feed(null);
          case Wire.SIGNAL -> inv.signal(f.u32(0));
          case Wire.MOUNTED -> mounted.add(new String(f.payload(), StandardCharsets.UTF_8));
          case Wire.MOUNT_FAILED -> mounted.add(new IOException(new String(f.payload(),
              StandardCharsets.UTF_8).strip()));
          default -> log.accept("a client sent a frame of type " + f.type() + "; ignored");
        }
      }
    } catch (IOException e) {
      // the connection broke: as a hangup
    }
    stdin.feed(null);
    mounted.add(new IOException("the client went away before it answered"));
    inv.signal(SIGHUP);
    inv.cancel();
  }

  /** Output sent as frames of one type, in chunks the wire takes. */
  private final class Frames extends OutputStream {
    private final byte type;
    private final ByteArrayOutputStream buf = new ByteArrayOutputStream();

    Frames(byte type) {
      this.type = type;
    }

    @Override
    public synchronized void write(int b) throws IOException {
      buf.write(b);
      if (buf.size() >= 8192) {
        flush();
      }
    }

    @Override
    public synchronized void write(byte[] b, int off, int len) throws IOException {
      buf.write(b, off, len);
      if (buf.size() >= 8192) {
        flush();
      }
    }

    @Override
    public synchronized void flush() throws IOException {
      byte[] b = buf.toByteArray();
      buf.reset();
      for (int off = 0; off < b.length; off += Wire.MAX_FRAME) {
        out.frame(type, b, off, Math.min(Wire.MAX_FRAME, b.length - off));
      }
    }
  }

  /** The client's stdin, asked for on the first read (a command that reads none costs none). */
  private final class Stdin extends InputStream {
    private final LinkedBlockingQueue<byte[]> chunks = new LinkedBlockingQueue<>();
    private byte[] current = new byte[0];
    private int pos;
    private boolean asked;
    private boolean ended;

    /** More input; null: the end of it. */
    void feed(byte[] b) {
      chunks.add(b == null ? END : b);
    }

    private static final byte[] END = new byte[0];

    @Override
    public synchronized int read() throws IOException {
      byte[] one = new byte[1];
      int n = read(one, 0, 1);
      return n < 0 ? -1 : one[0] & 0xff;
    }

    @Override
    public synchronized int read(byte[] b, int off, int len) throws IOException {
      if (len == 0) {
        return 0;
      }
      while (pos >= current.length) {
        if (ended) {
          return -1;
        }
        if (!asked) {
          asked = true;
          out.frame(Wire.WANT_STDIN, new byte[0]);
        }
        try {
          byte[] next = chunks.take();
          if (next == END) {
            ended = true;
            continue;
          }
          current = next;
          pos = 0;
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new IOException("interrupted");
        }
      }
      int n = Math.min(len, current.length - pos);
      System.arraycopy(current, pos, b, off, n);
      pos += n;
      return n;
    }
  }
}
