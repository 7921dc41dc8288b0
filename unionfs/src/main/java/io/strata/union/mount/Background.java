package io.strata.union.mount;

import io.strata.layers.fs.Mounts;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * Runs a mount in the background. Run as its own process, strata starts the same command line
 * again in the foreground as a new session (setsid), with its output in a log file, and
 * returns once the mount answers, or fails with the end of that log. In the strata daemon
 * ({@link #serveInThisProcess}), the foreground command runs in a thread of the daemon instead:
 * one JVM serves every mount.
 */
public final class Background {
  /** System property naming the class whose main() runs the command line. */
  public static final String MAIN_PROPERTY = "strata.main";

  private Background() {}

  /** The command that runs the strata command line with {@code args} in a new JVM. */
  public static List<String> command(List<String> args) {
    String main = System.getProperty(MAIN_PROPERTY);
    if (main == null) {
      throw new IllegalStateException("cannot relaunch: " + MAIN_PROPERTY + " is not set");
    }
    List<String> cmd = new ArrayList<>();
    cmd.add("setsid");
    cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    cmd.add("-XX:+UseSerialGC");
    if (Runtime.version().feature() >= 23) {
      // jnr's native calls and jffi's Unsafe, allowed without a warning in the mount's log
      cmd.add("--enable-native-access=ALL-UNNAMED");
      cmd.add("--sun-misc-unsafe-memory-access=allow");
    }
    cmd.addAll(archiveOptions(System.getProperty("java.class.path"), Runtime.version().feature(),
        Path.of(System.getProperty("java.home"), "bin", "java")));
    cmd.add("-D" + MAIN_PROPERTY + "=" + main);
    // where this JVM keeps temporary files (jnr's stub), the client may have chosen
    cmd.add("-Djava.io.tmpdir=" + System.getProperty("java.io.tmpdir"));
    cmd.add("-cp");
    cmd.add(System.getProperty("java.class.path"));
    cmd.add(main);
    cmd.addAll(args);
    return cmd;
  }

  /**
   * The options that start a relaunched JVM from the class archive the build made beside the
   * jar (runtime/pom.xml), as strata-client starts a command: the AOT cache when {@code javaBin}
   * is the JDK that made it (named in STRATA.aot.java), else the class-data archive, which a
   * JVM of another version ignores. None when the class path is not one jar. Without them a
   * no-daemon `strata mount` waited 1.4 s for its server's first answer.
   */
  static List<String> archiveOptions(String classPath, int feature, Path javaBin) {
    if (classPath == null || !classPath.endsWith(".jar")
        || classPath.contains(java.io.File.pathSeparator)) {
      return List.of();
    }
    String base = classPath.substring(0, classPath.length() - ".jar".length());
    Path aot = Path.of(base + ".aot");
    try {
      if (feature >= 25 && Files.isReadable(aot)
          && Files.readString(Path.of(base + ".aot.java")).trim().equals(javaBin.toString())) {
        return List.of("-XX:AOTCache=" + aot, "-Xlog:aot*=off,cds*=off");
      }
    } catch (IOException e) {
      // no file naming the JDK: the cache is not for this one
    }
    Path jsa = Path.of(base + ".jsa");
    return Files.isReadable(jsa)
        ? List.of("-Xshare:auto", "-XX:SharedArchiveFile=" + jsa, "-Xlog:cds*=off")
        : List.of();
  }

  /** Runs a strata command line in this process and returns its exit status. */
  @FunctionalInterface
  public interface CommandLine {
    int run(List<String> argv);
  }

  private static volatile CommandLine inThisProcess;
  private static final ThreadLocal<Boolean> DETACHED = new ThreadLocal<>();

  /**
   * Whether this thread runs a background mount's command in the daemon: the command returns
   * once its mount answers instead of waiting for the unmount (the mount's own threads serve).
   */
  public static boolean detached() {
    return Boolean.TRUE.equals(DETACHED.get());
  }

  /** From now on background mounts are served by threads of this process (the daemon). */
  public static void serveInThisProcess(CommandLine commands) {
    inThisProcess = commands;
  }

  /**
   * Starts {@code args} (a foreground mount command) in the background and waits until
   * {@code mountpoint} is a FUSE mount.
   */
  public static void startAndWait(List<String> args, Path mountpoint, Path logFile,
      Duration timeout) throws IOException {
    CommandLine here = inThisProcess;
    if (here != null) {
      startThread(() -> here.run(args), mountpoint, timeout, true);
      return;
    }
    Path mp = mountpoint.toAbsolutePath().normalize();
    if (Mounts.isMountpoint(mp)) {
      throw new IOException(mp + " is already a mountpoint (`strata umount " + mp + "` first)");
    }
    Files.createDirectories(logFile.getParent());
    logFile = ownLog(logFile);
    ProcessBuilder pb = new ProcessBuilder(command(args))
        .redirectErrorStream(true)
        .redirectOutput(ProcessBuilder.Redirect.appendTo(logFile.toFile()))
        .redirectInput(ProcessBuilder.Redirect.from(Path.of("/dev/null").toFile()));
    long logStart = Files.exists(logFile) ? Files.size(logFile) : 0;
    // Two strata may start daemons for one mountpoint at once, logging to one file: the token
    // tells this daemon's ready line from the other's.
    String token = java.util.UUID.randomUUID().toString();
    pb.environment().put(READY_TOKEN, token);
    pb.environment().put(LOG_FILE, logFile.toString());
    Process p = pb.start();
    long deadline = System.nanoTime() + timeout.toNanos();
    while (true) {
      // Ready when this daemon says so: another strata may have mounted here meanwhile.
      if (p.isAlive() && saysReady(logFile, logStart, readyLine(mp, token))) {
        return;
      }
      if (!p.isAlive()) {
        String said = tail(logFile, logStart);
        if (logStart == 0 && shownWhole(logFile)) {
          Files.deleteIfExists(logFile); // all it said is in the error: no file to keep
        }
        throw new IOException("the mount daemon exited with status " + p.exitValue() + ":\n"
            + said);
      }
      if (System.nanoTime() > deadline) {
        p.destroy();
        throw new IOException("the mount at " + mp + " did not answer within " + timeout
            + "; log:\n" + tail(logFile, logStart));
      }
      try {
        Thread.sleep(10);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        p.destroy();
        throw new IOException("interrupted");
      }
    }
  }

  /** Whether background mounts are served by threads of this process (the daemon). */
  public static boolean inThisProcess() {
    return inThisProcess != null;
  }

  /**
   * In the daemon: runs {@code foreground} (what a mount command does in the foreground,
   * already parsed: no second pass through the command line) as a background mount, and
   * returns when it answers. See {@link #startThread}.
   */
  public static void startHere(java.util.concurrent.Callable<Integer> foreground, Path mountpoint,
      Duration timeout) throws IOException {
    startThread(foreground, mountpoint, timeout, true);
  }

  /**
   * As {@link #startHere(java.util.concurrent.Callable, Path, Duration)}; without {@code
   * check}, the mountpoint is not looked at first (a mount taken over from the daemon before,
   * which nothing answers until it is served).
   */
  public static void startHere(java.util.concurrent.Callable<Integer> foreground, Path mountpoint,
      Duration timeout, boolean check) throws IOException {
    startThread(foreground, mountpoint, timeout, check);
  }

  /**
   * Serves {@code foreground} (a foreground mount command) in a thread of this process, as a
   * command of its own (the daemon's working directory and log, not the client's, which may be
   * gone long before the mount), and returns when the mount answers; fails with what the
   * command said.
   */
  private static void startThread(java.util.concurrent.Callable<Integer> foreground,
      Path mountpoint, Duration timeout, boolean check) throws IOException {
    MAKING.incrementAndGet();
    try {
      startThreadCounted(foreground, mountpoint, timeout, check);
    } finally {
      synchronized (MAKING) {
        MAKING.decrementAndGet();
        MAKING.notifyAll();
      }
    }
  }

  /** Background mounts being made in this process: started, not yet answering or failed. */
  private static final java.util.concurrent.atomic.AtomicInteger MAKING =
      new java.util.concurrent.atomic.AtomicInteger();

  /**
   * Waits at most {@code timeout} until no background mount of this process is being made
   * (the daemon, stopping: those made meanwhile are handed over with the others).
   *
   * @return whether none is
   */
  public static boolean awaitNoneBeingMade(Duration timeout) throws InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    synchronized (MAKING) {
      while (MAKING.get() > 0) {
        long left = deadline - System.nanoTime();
        if (left <= 0) {
          return false;
        }
        MAKING.wait(Math.max(1, left / 1_000_000));
      }
    }
    return true;
  }

  private static void startThreadCounted(java.util.concurrent.Callable<Integer> foreground,
      Path mountpoint, Duration timeout, boolean check) throws IOException {
    Path mp = mountpoint.toAbsolutePath().normalize();
    if (check && Mounts.isMountpoint(mp)) {
      throw new IOException(mp + " is already a mountpoint (`strata umount " + mp + "` first)");
    }
    java.io.ByteArrayOutputStream said = new java.io.ByteArrayOutputStream();
    // what the command says is kept for the error until its mount answers, then only logged
    java.util.concurrent.atomic.AtomicBoolean keep = new java.util.concurrent.atomic.AtomicBoolean(true);
    java.io.PrintStream toLog = io.strata.layers.base.Invocation.process().err();
    // whole chunks: byte by byte, every line of a mount's log was a write(2) per byte, and
    // lines of mounts logging at once came out interleaved
    java.io.PrintStream both = new java.io.PrintStream(new java.io.OutputStream() {
      @Override
      public void write(int b) {
        write(new byte[] {(byte) b}, 0, 1);
      }

      @Override
      public void write(byte[] b, int off, int len) {
        synchronized (said) {
          if (keep.get() && said.size() < 1 << 16) {
            said.write(b, off, Math.min(len, (1 << 16) - said.size()));
          }
        }
        toLog.write(b, off, len);
      }
    }, true, StandardCharsets.UTF_8);
    io.strata.layers.base.Invocation client = io.strata.layers.base.Invocation.current();
    io.strata.layers.base.Invocation own = new io.strata.layers.base.Invocation(Path.of("/"),
        client.env(), java.io.InputStream.nullInputStream(), toLog, both, false, false,
        ProcessHandle.current().pid());
    own.clientMounter(client.clientMounter()); // asked while the client waits, below
    int[] status = {-1};
    java.util.concurrent.atomic.AtomicBoolean ended = new java.util.concurrent.atomic.AtomicBoolean();
    MOUNT_THREADS.execute("mount " + mp, () -> {
      DETACHED.set(true);
      try {
        status[0] = io.strata.layers.base.Invocation.run(own, foreground);
      } catch (Exception e) {
        both.println("strata: " + e.getMessage());
        status[0] = 1;
      } finally {
        DETACHED.remove();
        ended.set(true);
        FuseMount.signalChange(); // the waiter below looks again
      }
    });
    long deadline = System.nanoTime() + timeout.toNanos();
    while (true) {
      long seen = FuseMount.changes();
      // this command's mount: another may have won the mountpoint meanwhile
      boolean alive = !ended.get(); // before looking: a command that ends has mounted or failed
      boolean ours = FuseMount.live().stream()
          .anyMatch(m -> m.owner() == own && m.mountpoint().equals(realOrSame(mp)));
      if (ours) { // FuseMount.mount lists it once it answers
        synchronized (said) {
          keep.set(false);
          said.reset();
        }
        return;
      }
      if (!alive && !ours) {
        String out;
        synchronized (said) {
          out = said.toString(StandardCharsets.UTF_8).trim();
        }
        throw new IOException("the mount of " + mp + " ended with status " + status[0]
            + (out.isEmpty() ? "" : ":\n" + out));
      }
      if (System.nanoTime() > deadline) {
        throw new IOException("the mount at " + mp + " did not answer within " + timeout);
      }
      try {
        FuseMount.awaitChange(seen, 100);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IOException("interrupted");
      }
    }
  }

  /**
   * The threads that make background mounts (a mount's command ends once its mount answers;
   * the mount's workers serve it from then on): a thread started per mount was 0.4-0.6 ms of
   * every mount in the daemon (timed by marks), and podman mounts a root per container.
   */
  private static final io.strata.layers.base.KeptThreads MOUNT_THREADS =
      new io.strata.layers.base.KeptThreads("mount (idle)", 0, false);

  private static Path realOrSame(Path p) {
    try {
      return p.toRealPath();
    } catch (IOException e) {
      return p;
    }
  }

  private static boolean saysReady(Path log, long from, String line) throws IOException {
    try (var ch = java.nio.channels.FileChannel.open(log)) {
      long size = ch.size();
      if (size <= from) {
        return false;
      }
      java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate((int) Math.min(size - from, 1 << 20));
      ch.read(b, from);
      return new String(b.array(), 0, b.position(), StandardCharsets.UTF_8)
          .contains(line + "\n");
    }
  }

  /**
   * The last lines this daemon wrote: the log from {@code from} on (earlier mounts of the
   * same mountpoint wrote what comes before, and their lines would mislead).
   */
  /** Whether {@link #tail} of {@code log} from its start is all of it. */
  private static boolean shownWhole(Path log) {
    try {
      return Files.size(log) <= 8192
          && new String(Files.readAllBytes(log), StandardCharsets.UTF_8).lines().count() <= 15;
    } catch (IOException e) {
      return false;
    }
  }

  private static String tail(Path log, long from) {
    try (var ch = java.nio.channels.FileChannel.open(log)) {
      long start = Math.max(from, ch.size() - 8192);
      java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate((int) (ch.size() - start));
      ch.read(b, start);
      List<String> lines = new String(b.array(), 0, b.position(), StandardCharsets.UTF_8)
          .lines().toList();
      return String.join("\n", lines.subList(Math.max(0, lines.size() - 15), lines.size()));
    } catch (IOException e) {
      return "(no log at " + log + ")";
    }
  }

  private static final java.util.concurrent.atomic.AtomicInteger STARTS =
      new java.util.concurrent.atomic.AtomicInteger();

  /**
   * The log of one background start: {@code base}'s name with this process's id and a count
   * (overlay-HASH-PID-N.log), so that a mount removing its log at its end never removes the
   * one a later mount of the same mountpoint writes to.
   */
  private static Path ownLog(Path base) {
    String name = base.getFileName().toString();
    String stem = name.endsWith(".log") ? name.substring(0, name.length() - 4) : name;
    return base.resolveSibling(stem + "-" + ProcessHandle.current().pid() + "-"
        + STARTS.incrementAndGet() + ".log");
  }

  /** The environment variable that names a background mount's log file to it. */
  static final String LOG_FILE = "STRATA_MOUNT_LOG";

  /**
   * Called by a background mount's process once its mount has ended cleanly: removes its log
   * if the log says nothing but that the mount was made, answered and went away. A node that
   * starts thousands of containers would otherwise keep a file per container in /run (memory)
   * for as long as it runs; a log that says more (a warning, a failure) stays.
   */
  public static void dropRoutineLog() {
    String name = System.getenv(LOG_FILE);
    if (name == null || inThisProcess != null) {
      return;
    }
    Path log = Path.of(name);
    try {
      if (Files.size(log) > 1 << 20) {
        return;
      }
      for (String line : Files.readAllLines(log, StandardCharsets.UTF_8)) {
        if (!ROUTINE.matcher(line).matches()) {
          return;
        }
      }
      Files.delete(log);
    } catch (IOException | java.io.UncheckedIOException e) {
      // gone already, or not text: left as it is
    }
  }

  /** The lines every background mount writes: mounted, ready, unmounted (also on SIGTERM). */
  private static final java.util.regex.Pattern ROUTINE = java.util.regex.Pattern.compile(
      "\\S+ strata: (mounted |ready on |unmounted |signal: unmounting ).*");

  /** Where background mounts log. */
  public static Path logDir() {
    return runDir().resolve("logs");
  }

  /** strata's runtime files (logs, locks): /run/strata as the host's root, else the user's. */
  static Path runDir() {
    return io.strata.layers.fs.Places.runtimeDir();
  }

  /** What a foreground mount prints, with its mountpoint, once it answers. */
  public static final String READY = "strata: ready on ";

  /** The environment variable that carries the token a started daemon prints when ready. */
  static final String READY_TOKEN = "STRATA_READY_TOKEN";

  /** The line a foreground mount prints once it answers (with its starter's token, if any). */
  public static String readyLine(Path mountpoint, String token) {
    return READY + mountpoint.toAbsolutePath().normalize()
        + (token == null ? "" : " [" + token + "]");
  }

  /** The token of this process's starter, or null when started by hand. */
  public static String readyToken() {
    return System.getenv(READY_TOKEN);
  }

  /**
   * Whether this process is the server a background start relaunched ({@link #startAndWait}):
   * it serves its mount itself, never through a daemon. A daemon that started meanwhile (its
   * socket activated, an administrator) would otherwise get the command as a foreground mount
   * tied to this process, its ready line without the starter's token: the starter waited its
   * whole timeout, then failed.
   */
  public static boolean relaunched() {
    return readyToken() != null;
  }
}
