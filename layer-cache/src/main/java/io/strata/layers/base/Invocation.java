package io.strata.layers.base;

import java.io.FileDescriptor;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.IntConsumer;

/**
 * One command as a person ran it: its working directory, environment, standard streams, which
 * of them are terminals, and the signals sent to it. A command run in its own JVM has the
 * process's own ({@link #process()}); one that the strata daemon runs for a client has the
 * client's, set for the command's thread (and the threads it starts) with {@link #run}. Code
 * that would ask the process (System.getenv, the working directory, System.console) asks
 * {@link #current()} instead, so a command behaves the same in either place.
 *
 * <p>System.out and System.err are routed to the current invocation's streams by
 * {@link #routeStandardStreams}, which the daemon calls once: code that prints to them needs no
 * change.
 */
public final class Invocation {
  private static final InheritableThreadLocal<Invocation> CURRENT = new InheritableThreadLocal<>();
  private static final Invocation PROCESS = new Invocation(
      Path.of(System.getProperty("user.dir")), System.getenv(),
      new FileInputStream(FileDescriptor.in),
      new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8),
      new PrintStream(new FileOutputStream(FileDescriptor.err), true, StandardCharsets.UTF_8),
      System.console() != null, System.console() != null, ProcessHandle.current().pid());

  private final Path cwd;
  private final Map<String, String> env;
  private final InputStream in;
  private final PrintStream out;
  private final PrintStream err;
  private final boolean stdinTerminal;
  private final boolean stderrTerminal;
  private final long pid;
  private final List<IntConsumer> signalHandlers = new CopyOnWriteArrayList<>();
  private volatile Log.Level level;
  private volatile boolean cancelled;
  private volatile ClientMounter clientMounter;

  /**
   * @param pid the process the person ran (the client, for a daemon's command): its standard
   *     descriptors are what a container started for it inherits
   */
  public Invocation(Path cwd, Map<String, String> env, InputStream in, PrintStream out,
      PrintStream err, boolean stdinTerminal, boolean stderrTerminal, long pid) {
    this.cwd = cwd;
    this.env = Map.copyOf(env);
    this.in = in;
    this.out = out;
    this.err = err;
    this.stdinTerminal = stdinTerminal;
    this.stderrTerminal = stderrTerminal;
    this.pid = pid;
  }

  /** The invocation of this thread's command, or the process's own. */
  public static Invocation current() {
    Invocation i = CURRENT.get();
    return i != null ? i : PROCESS;
  }

  /** The process's own: its working directory, environment and standard streams. */
  public static Invocation process() {
    return PROCESS;
  }

  /** Whether this thread runs a command for someone other than this process. */
  public static boolean isForClient() {
    return CURRENT.get() != null;
  }

  /** Runs {@code work} as {@code inv} on this thread (and the threads it starts). */
  public static <T> T run(Invocation inv, java.util.concurrent.Callable<T> work)
      throws Exception {
    Invocation before = CURRENT.get();
    CURRENT.set(inv);
    try {
      return work.call();
    } finally {
      if (before == null) {
        CURRENT.remove();
      } else {
        CURRENT.set(before);
      }
    }
  }

  public Path cwd() {
    return cwd;
  }

  /** A path as the person typed it: relative ones are from their working directory. */
  public Path resolve(String path) {
    return cwd.resolve(path).normalize();
  }

  /** A variable of the person's environment, or null. */
  public String getenv(String name) {
    return env.get(name);
  }

  public Map<String, String> env() {
    return env;
  }

  public InputStream in() {
    return in;
  }

  public PrintStream out() {
    return out;
  }

  public PrintStream err() {
    return err;
  }

  public boolean stdinIsTerminal() {
    return stdinTerminal;
  }

  /** Whether progress may be drawn: stderr is a terminal. */
  public boolean stderrIsTerminal() {
    return stderrTerminal;
  }

  public long pid() {
    return pid;
  }

  /** This command's log level, or null for the process's. */
  public Log.Level level() {
    return level;
  }

  public void level(Log.Level l) {
    this.level = l;
  }

  // ---------------------------------------------------------------- signals

  /**
   * Hands the signals sent to the command to {@code handler} (SIGINT, SIGTERM, SIGHUP by
   * number) until the result is closed. For the process's own invocation the caller installs
   * the JVM's handlers itself; for a daemon's command the client forwards its signals.
   */
  public AutoCloseable onSignal(IntConsumer handler) {
    signalHandlers.add(handler);
    return () -> signalHandlers.remove(handler);
  }

  /**
   * A signal came for this command: its handlers get it; with none, SIGINT, SIGTERM and SIGHUP
   * cancel it ({@link #checkCancelled}).
   */
  public void signal(int signo) {
    if (signalHandlers.isEmpty()) {
      cancelled = true;
      return;
    }
    for (IntConsumer h : signalHandlers) {
      h.accept(signo);
    }
  }

  /**
   * Mounts and unmounts FUSE where the client is, for a daemon that cannot do it there
   * itself: a user's daemon lives in a user and mount namespace of its own, and a user's mount
   * on the host is made by fusermount3 in the client's namespaces, then served by the daemon.
   */
  public interface ClientMounter {
    /** Mounts /dev/fuse on {@code mountpoint} with fusermount3's {@code options}: its descriptor. */
    int mount(Path mountpoint, String options) throws java.io.IOException;

    /**
     * Unmounts the FUSE mount at {@code mountpoint} where the client is (fusermount3 -u, -z
     * when {@code lazy}): false when no FUSE mount is there.
     */
    boolean unmount(Path mountpoint, boolean lazy) throws java.io.IOException;
  }

  /** Who mounts for this command in the client's namespaces, or null: the command mounts itself. */
  public ClientMounter clientMounter() {
    return clientMounter;
  }

  public void clientMounter(ClientMounter m) {
    this.clientMounter = m;
  }

  /** Whether the person asked the command to stop (a signal, or the client went away). */
  public boolean cancelled() {
    return cancelled;
  }

  public void cancel() {
    cancelled = true;
  }

  /** Throws {@link Cancelled} when the command was asked to stop: long loops call it. */
  public static void checkCancelled() {
    if (current().cancelled) {
      throw new Cancelled();
    }
  }

  /** The command was asked to stop; it ends with status 130, as after Ctrl-C. */
  public static final class Cancelled extends RuntimeException {
    public Cancelled() {
      super("interrupted", null, false, false);
    }
  }

  // ---------------------------------------------------------------- routing

  private static volatile boolean routed;

  /**
   * Makes System.out and System.err write to the current invocation's streams (the process's
   * own for threads that run no command): for a JVM that runs commands for clients.
   */
  public static synchronized void routeStandardStreams() {
    if (routed) {
      return;
    }
    routed = true;
    System.setOut(new PrintStream(new Routed(false), true, StandardCharsets.UTF_8));
    System.setErr(new PrintStream(new Routed(true), true, StandardCharsets.UTF_8));
  }

  /** An output stream that writes where the current invocation's stdout or stderr goes. */
  private static final class Routed extends OutputStream {
    private final boolean err;

    Routed(boolean err) {
      this.err = err;
    }

    private PrintStream target() {
      Invocation i = current();
      return err ? i.err : i.out;
    }

    @Override
    public void write(int b) {
      target().write(b);
    }

    @Override
    public void write(byte[] b, int off, int len) {
      target().write(b, off, len);
    }

    @Override
    public void flush() {
      target().flush();
    }
  }
}
