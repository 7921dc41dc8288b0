package io.strata.cli;

import io.strata.union.mount.Background;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * The tests' strata daemon. The runtime module's tests run twice: once with every command in
 * the test's own process (or a JVM of its own), and once (the surefire execution "daemon")
 * with every command handed to a strata daemon, as people's commands are when one runs. That
 * execution registers this extension (JUnit's extension autodetection); before the first test
 * class it starts {@code strata daemon} in a JVM of its own on a private socket and points
 * {@code -Dstrata.socket} at it, so {@link Main#run} hands commands to it; processes the tests
 * start ({@link #command}) are the C client with {@code STRATA_SOCKET}. After the last test
 * the daemon gets SIGTERM and must end cleanly.
 *
 * <p>In the default execution {@code strata.socket} is {@code none}: a daemon that happens to
 * run on the machine never serves the tests.
 */
public final class TestDaemon implements BeforeAllCallback {
  private static Path socket;
  private static Process daemon;
  private static Path log;

  /** Whether this run hands commands to a daemon. */
  public static boolean on() {
    return Boolean.getBoolean("strata.test.daemon");
  }

  @Override
  public void beforeAll(ExtensionContext context) throws Exception {
    if (!on()) {
      return;
    }
    synchronized (TestDaemon.class) {
      if (daemon == null) {
        start();
        // closed after the last test class of the run
        context.getRoot().getStore(ExtensionContext.Namespace.GLOBAL)
            .put(TestDaemon.class.getName(), (ExtensionContext.Store.CloseableResource)
                TestDaemon::stop);
      }
    }
  }

  private static void start() throws Exception {
    Path dir = Files.createTempDirectory("strata-test-daemon");
    socket = dir.resolve("strata.sock");
    log = Path.of("target", "test-daemon.log").toAbsolutePath();
    System.setProperty(Background.MAIN_PROPERTY, Main.class.getName());
    // --hold-mounts 0: at the end of the run, SIGTERM unmounts what a test left (it would
    // otherwise wait for a next daemon that never comes: DaemonTest shows the hand-over)
    List<String> cmd = new ArrayList<>(Background.command(List.of("daemon", "--socket",
        socket.toString(), "--hold-mounts", "0")));
    cmd.remove("setsid");
    daemon = new ProcessBuilder(cmd).redirectErrorStream(true)
        .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    while (!io.strata.runtime.daemon.DaemonServer.answers(socket)) {
      if (!daemon.isAlive() || System.nanoTime() > deadline) {
        throw new IllegalStateException("the test daemon did not start:\n" + tail());
      }
      Thread.sleep(20);
    }
    System.setProperty("strata.socket", socket.toString());
  }

  private static void stop() throws Exception {
    System.setProperty("strata.socket", "none");
    daemon.destroy(); // SIGTERM: stops serving, unmounts what it still serves
    if (!daemon.waitFor(60, TimeUnit.SECONDS)) {
      daemon.destroyForcibly().waitFor();
      throw new IllegalStateException("the test daemon did not stop on SIGTERM:\n" + tail());
    }
    Files.deleteIfExists(socket);
    Files.deleteIfExists(socket.getParent());
    // a daemon that dies of an error ends with a status of its own; SIGTERM's is 143
    if (daemon.exitValue() != 0 && daemon.exitValue() != 143) {
      throw new IllegalStateException("the test daemon ended with status " + daemon.exitValue()
          + ":\n" + tail());
    }
  }

  private static String tail() throws IOException {
    String all = Files.exists(log) ? Files.readString(log, StandardCharsets.UTF_8) : "";
    return all.length() > 8000 ? all.substring(all.length() - 8000) : all;
  }

  /** The daemon's socket in this run, or null. */
  public static Path socket() {
    return on() ? socket : null;
  }

  /**
   * The command that runs strata with {@code args} as a process of its own: the C client
   * (handing it to the daemon) in the daemon run, else a JVM. {@link #environment} completes
   * it.
   */
  public static List<String> command(List<String> args) {
    List<String> cmd = new ArrayList<>();
    if (on()) {
      cmd.add(client().toString());
    } else {
      cmd.addAll(Background.command(List.of()));
      cmd.remove("setsid");
    }
    cmd.addAll(args);
    return cmd;
  }

  /** What a process started with {@link #command} needs in its environment. */
  public static void environment(Map<String, String> env) {
    if (on()) {
      env.put("STRATA_SOCKET", socket.toString());
    } else {
      env.put("STRATA_SOCKET", "none");
    }
  }

  /**
   * An executable {@code strata-overlay} in {@code dir} for podman, buildah and containerd:
   * the C client under that name (with the daemon's socket) in the daemon run, else a script
   * that runs it in a JVM.
   */
  public static Path overlayProgram(Path dir) throws IOException {
    Path script = dir.resolve("strata-overlay");
    String body = on()
        ? "STRATA_SOCKET=" + socket + " exec " + client().getParent().resolve("strata-overlay")
            + " \"$@\"\n"
        : "exec " + String.join(" ", command(List.of())) + " overlay \"$@\"\n";
    Files.writeString(script, "#!/bin/sh\n" + body);
    script.toFile().setExecutable(true);
    return script;
  }

  /** What a command printed, and its status. */
  public record Output(int code, String out, String err) {}

  /**
   * Runs the command line as {@link Main#run} does (in the daemon in the daemon run, else in
   * this process) with its stdout and stderr captured.
   */
  public static synchronized Output run(String... args) {
    java.io.PrintStream oldOut = System.out;
    java.io.PrintStream oldErr = System.err;
    java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
    java.io.ByteArrayOutputStream err = new java.io.ByteArrayOutputStream();
    try {
      System.setOut(new java.io.PrintStream(out, true, StandardCharsets.UTF_8));
      System.setErr(new java.io.PrintStream(err, true, StandardCharsets.UTF_8));
      int code = Main.run(args);
      return new Output(code, out.toString(StandardCharsets.UTF_8),
          err.toString(StandardCharsets.UTF_8));
    } finally {
      System.setOut(oldOut);
      System.setErr(oldErr);
    }
  }

  /** The C client the build made. */
  public static Path client() {
    Path c = Path.of("target", "native", "strata-client").toAbsolutePath();
    if (!Files.isExecutable(c)) {
      throw new IllegalStateException(c + " is missing: the compile phase builds it");
    }
    return c;
  }
}
