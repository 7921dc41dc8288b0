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
 * Runs a mount in the background the way a JVM can: it starts the same command line again in
 * the foreground as a new session (setsid), with its output in a log file, and returns once the
 * mount answers, or fails with the end of that log.
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
    cmd.add("-D" + MAIN_PROPERTY + "=" + main);
    cmd.add("-cp");
    cmd.add(System.getProperty("java.class.path"));
    cmd.add(main);
    cmd.addAll(args);
    return cmd;
  }

  /**
   * Starts {@code args} (a foreground mount command) in the background and waits until
   * {@code mountpoint} is a FUSE mount.
   */
  public static void startAndWait(List<String> args, Path mountpoint, Path logFile,
      Duration timeout) throws IOException {
    Path mp = mountpoint.toAbsolutePath().normalize();
    if (Mounts.isMountpoint(mp)) {
      throw new IOException(mp + " is already a mountpoint (`strata umount " + mp + "` first)");
    }
    Files.createDirectories(logFile.getParent());
    ProcessBuilder pb = new ProcessBuilder(command(args))
        .redirectErrorStream(true)
        .redirectOutput(ProcessBuilder.Redirect.appendTo(logFile.toFile()))
        .redirectInput(ProcessBuilder.Redirect.from(Path.of("/dev/null").toFile()));
    long logStart = Files.exists(logFile) ? Files.size(logFile) : 0;
    // Two strata may start daemons for one mountpoint at once, logging to one file: the token
    // tells this daemon's ready line from the other's.
    String token = java.util.UUID.randomUUID().toString();
    pb.environment().put(READY_TOKEN, token);
    Process p = pb.start();
    long deadline = System.nanoTime() + timeout.toNanos();
    while (true) {
      // Ready when this daemon says so: another strata may have mounted here meanwhile.
      if (p.isAlive() && saysReady(logFile, logStart, readyLine(mp, token))) {
        return;
      }
      if (!p.isAlive()) {
        throw new IOException("the mount daemon exited with status " + p.exitValue() + ":\n"
            + tail(logFile));
      }
      if (System.nanoTime() > deadline) {
        p.destroy();
        throw new IOException("the mount at " + mp + " did not answer within " + timeout
            + "; log:\n" + tail(logFile));
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

  private static String tail(Path log) {
    try {
      List<String> lines = Files.readAllLines(log, StandardCharsets.UTF_8);
      return String.join("\n", lines.subList(Math.max(0, lines.size() - 15), lines.size()));
    } catch (IOException e) {
      return "(no log at " + log + ")";
    }
  }

  /** Where background mounts log. */
  public static Path logDir() {
    return runDir().resolve("logs");
  }

  /** strata's runtime files (logs, locks): /run/strata as root, else the temporary directory. */
  static Path runDir() {
    return io.strata.layers.fs.Posix.isRoot() ? Path.of("/run/strata")
        : Path.of(System.getProperty("java.io.tmpdir"), "strata-" + System.getProperty("user.name"));
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
}
