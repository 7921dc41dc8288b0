package io.strata.runtime.daemon;

import io.strata.layers.base.Invocation;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.nio.file.attribute.UserPrincipal;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

/**
 * The strata daemon's listener: one unix socket, one thread per client, each running the
 * client's command line in this JVM as that client ({@link Session}). Only a peer with this
 * process's own user id is served (SO_PEERCRED, not only the socket's mode): root's daemon
 * serves root, a user's daemon that user. The socket's directory is private (0700) and the
 * socket 0600 as well.
 */
public final class DaemonServer implements AutoCloseable {
  /** Runs the strata command line for a client and returns its exit status. */
  @FunctionalInterface
  public interface CommandLine {
    int run(List<String> argv);
  }

  private static volatile DaemonServer running;

  private final Path socket;
  private final ServerSocketChannel server;
  private final CommandLine commands;
  private final Consumer<String> log;
  private final UserPrincipal self;
  private final Instant started = Instant.now();
  private final AtomicLong served = new AtomicLong();
  private final AtomicLong refused = new AtomicLong();
  private final Map<Session, Boolean> sessions = new ConcurrentHashMap<>();
  /**
   * The threads of clients' commands and of their input, kept a while once idle: a thread
   * started per client was half a millisecond of every command.
   */
  private final java.util.concurrent.ExecutorService threads =
      new java.util.concurrent.ThreadPoolExecutor(0, Integer.MAX_VALUE, 30,
          java.util.concurrent.TimeUnit.SECONDS, new java.util.concurrent.SynchronousQueue<>(),
          r -> new Thread(r, "strata-client"));
  private volatile boolean closed;
  /** Set as the daemon stops: clients are told to run their commands themselves. */
  private volatile boolean stopping;
  private Object fileKey;

  private DaemonServer(Path socket, ServerSocketChannel server, CommandLine commands,
      Consumer<String> log) throws IOException {
    this.socket = socket;
    this.server = server;
    this.commands = commands;
    this.log = log;
    this.self = socket.getFileSystem().getUserPrincipalLookupService()
        .lookupPrincipalByName(System.getProperty("user.name"));
  }

  /**
   * Listens on {@code socket} (a socket file left by a daemon that died is replaced; one that
   * answers is another daemon's, and this one does not start).
   */
  public static DaemonServer listen(Path socket, CommandLine commands, Consumer<String> log)
      throws IOException {
    Path dir = socket.toAbsolutePath().getParent();
    if (!Files.isDirectory(dir)) {
      Files.createDirectories(dir, PosixFilePermissions.asFileAttribute(
          PosixFilePermissions.fromString("rwx------")));
    }
    if (Files.exists(socket)) {
      if (answers(socket)) {
        throw new IllegalStateException("a daemon already serves " + socket
            + " (`strata daemon status` says which)");
      }
      Files.delete(socket);
    }
    // Bound under a name of its own, made 0600, then linked into place: the socket appears
    // at its path with its mode. Bound there directly, it answered before the chmod (a peer,
    // or a test that then set the mode itself, raced with it). link(2), not rename: a daemon
    // that took the path meanwhile keeps it, and this one fails as bind would have.
    Path fresh = dir.resolve("." + socket.getFileName() + "." + ProcessHandle.current().pid());
    Files.deleteIfExists(fresh);
    ServerSocketChannel ch = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
    try {
      ch.bind(UnixDomainSocketAddress.of(fresh));
      Files.setPosixFilePermissions(fresh, PosixFilePermissions.fromString("rw-------"));
      Files.createLink(socket, fresh);
    } catch (java.nio.file.FileAlreadyExistsException e) {
      ch.close();
      throw new IllegalStateException("a daemon already serves " + socket
          + " (`strata daemon status` says which)");
    } catch (IOException | RuntimeException e) {
      ch.close();
      throw e;
    } finally {
      Files.deleteIfExists(fresh);
    }
    DaemonServer s = new DaemonServer(socket, ch, commands, log);
    s.fileKey = Files.readAttributes(socket, java.nio.file.attribute.BasicFileAttributes.class)
        .fileKey();
    running = s;
    return s;
  }

  /**
   * Serves a socket another process made and listens on (systemd's socket activation with
   * the socket on stdin): its file is not this daemon's to remove when it stops.
   */
  public static DaemonServer inherited(ServerSocketChannel ch, CommandLine commands,
      Consumer<String> log) throws IOException {
    if (!(ch.getLocalAddress() instanceof UnixDomainSocketAddress a)) {
      throw new IllegalStateException("the inherited socket is not a unix socket: "
          + ch.getLocalAddress());
    }
    DaemonServer s = new DaemonServer(a.getPath(), ch, commands, log);
    s.fileKey = null; // systemd's
    running = s;
    return s;
  }

  /** The daemon of this process, or null when it runs none. */
  public static DaemonServer running() {
    return running;
  }

  /** Whether something accepts connections on {@code socket}. */
  public static boolean answers(Path socket) {
    try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
      ch.connect(UnixDomainSocketAddress.of(socket));
      return true;
    } catch (IOException e) {
      return false;
    }
  }

  public Path socket() {
    return socket;
  }

  public Instant started() {
    return started;
  }

  /** Commands served, commands under way, connections refused. */
  public long served() {
    return served.get();
  }

  public int active() {
    return sessions.size();
  }

  public long refused() {
    return refused.get();
  }

  /**
   * Gives memory back once the daemon is idle: at most once every {@code every}, if commands
   * were served since the last look and none runs now, a full collection, after which the heap
   * shrinks to what is live (the daemon runs with a small MaxHeapFreeRatio). A burst of
   * commands (fifty mounts) leaves garbage that would otherwise stay resident until the next
   * burst; the C heap's free memory (buffers of mounts that ended) is handed back too
   * (malloc_trim). {@code released} is asked at each look whether something else let go of
   * memory meanwhile (lower trees kept after their last mount, whose time is up). {@code work}
   * counts what the mounts serve: a look waits for a second in which it stood still, so that
   * the collection (30-50 ms of a cold walk's time when one lands in it, by jstat) and the
   * regrowth of the heap it shrank stay out of busy mounts.
   */
  public void trimWhenIdle(java.time.Duration every, java.util.function.BooleanSupplier released,
      java.util.function.LongSupplier work) {
    Thread t = new Thread(() -> {
      long seen = 0;
      long worked = work.getAsLong();
      long looked = System.nanoTime();
      boolean freed = false;
      while (!closed) {
        try {
          Thread.sleep(Math.min(1000, every.toMillis()));
        } catch (InterruptedException e) {
          return;
        }
        long working = work.getAsLong();
        boolean quiet = working == worked; // the mounts served nothing in the last second
        worked = working;
        if (!quiet || System.nanoTime() - looked < every.toNanos()) {
          continue;
        }
        looked = System.nanoTime();
        long now = served.get();
        freed |= released.getAsBoolean(); // given back at the next idle look
        if ((now != seen || freed) && sessions.isEmpty()) {
          seen = now;
          freed = false;
          System.gc();
          io.strata.layers.fs.Posix.mallocTrim();
        }
      }
    }, "strata-trim");
    t.setDaemon(true);
    t.start();
  }

  /** Accepts clients until {@link #close}. */
  public void serve() throws IOException {
    while (!closed) {
      SocketChannel ch;
      try {
        ch = server.accept();
      } catch (IOException e) {
        if (closed) {
          return;
        }
        throw e;
      }
      String refusal = refusal(ch);
      if (refusal != null) {
        refused.incrementAndGet();
        log.accept(refusal);
        try (ch) {
          // a few bytes: the socket's buffer takes them without blocking this loop
          Wire.Out o = new Wire.Out(Wire.output(ch));
          o.frame(Wire.STDERR, ("strata: " + refusal + "\n").getBytes(
              java.nio.charset.StandardCharsets.UTF_8));
          o.frame(Wire.EXIT, Wire.u32(REFUSED));
        } catch (IOException gone) {
          // the peer left
        }
        continue;
      }
      if (stopping) {
        SocketChannel late = ch;
        threads.execute(() -> {
          try (late) {
            Wire.read(Wire.input(late)); // its hello, read so that its writing it never fails
            new Wire.Out(Wire.output(late)).frame(Wire.RUN_YOURSELF, new byte[0]);
          } catch (IOException gone) {
            // the peer left
          }
        });
        continue;
      }
      Session s = new Session(ch, commands, log, threads);
      sessions.put(s, true);
      threads.execute(() -> {
        try {
          s.run();
        } finally {
          sessions.remove(s);
          served.incrementAndGet();
        }
      });
    }
  }

  /**
   * Why the peer may not use this daemon, or null when it runs as this process's user (the
   * kernel's word for it, SO_PEERCRED, not the socket's mode).
   */
  private String refusal(SocketChannel ch) {
    try {
      var peer = ch.getOption(jdk.net.ExtendedSocketOptions.SO_PEERCRED);
      if (peer.user().equals(self)) {
        return null;
      }
      return "refused a client running as " + peer.user().getName()
          + ": the daemon on " + socket + " serves " + self.getName() + " only; run your own"
          + " (strata daemon) or unset STRATA_SOCKET";
    } catch (IOException | UnsupportedOperationException e) {
      return "refused a client whose credentials cannot be read: " + e.getMessage();
    }
  }

  /**
   * From now on takes no command: each client is told to run its command in a JVM of its own
   * (the socket stays bound, so that no daemon starts here before this one has handed its
   * mounts over). Commands under way go on.
   */
  public void stopTaking() {
    stopping = true;
  }

  /** The exit status a refused client gets (EX_NOPERM of sysexits.h). */
  public static final int REFUSED = 77;

  @Override
  public void close() throws IOException {
    closed = true;
    server.close();
    threads.shutdown(); // commands under way go on
    try {
      // a daemon started since has its own socket there; an inherited one is systemd's
      if (fileKey != null && fileKey.equals(Files.readAttributes(socket,
          java.nio.file.attribute.BasicFileAttributes.class).fileKey())) {
        Files.deleteIfExists(socket);
      }
    } catch (java.nio.file.NoSuchFileException gone) {
      // removed already
    }
    if (running == this) {
      running = null;
    }
  }

  /** For a daemon's own lines: the process's stderr, never a client's. */
  public static void logLine(String line) {
    Invocation.process().err().println(Instant.now() + " strata daemon: "
        + io.strata.layers.base.Text.printable(line));
  }
}
