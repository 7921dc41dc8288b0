package io.strata.bench.side;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** Runs shell commands for the benchmark: quietly, timed, failing loudly. */
final class Sh {
  private Sh() {}

  /** Runs a command and returns its output; a non-zero exit is an error with the output. */
  static String run(List<String> cmd) throws IOException {
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    try {
      if (!p.waitFor(30, TimeUnit.MINUTES) || p.exitValue() != 0) {
        throw new IOException(String.join(" ", cmd) + " failed: " + out.trim());
      }
    } catch (InterruptedException e) {
      p.destroyForcibly();
      Thread.currentThread().interrupt();
      throw new IOException("interrupted: " + String.join(" ", cmd));
    }
    return out;
  }

  static String sh(String script) throws IOException {
    return run(List.of("sh", "-ec", script));
  }

  /** Wall-clock seconds of a shell script whose output is discarded. */
  static double time(String script) throws IOException {
    long start = System.nanoTime();
    sh(script + " > /dev/null");
    return (System.nanoTime() - start) / 1e9;
  }

  static void dropCaches() throws IOException {
    sh("sync; echo 3 > /proc/sys/vm/drop_caches");
  }
}
