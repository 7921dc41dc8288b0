package io.strata.runtime.container;

import io.strata.layers.base.Invocation;
import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;

/**
 * The standard streams of a container's helper: this process's own when strata runs in its own
 * process; the client's when the daemon runs the command for a client. Then the helper takes
 * the client's very open files itself (strata-init --stdio-of PID: pidfd_getfd(2)), so a
 * terminal stays a terminal and a file keeps its one offset; what it starts with, in case the
 * kernel refuses that, are the same files opened again through {@code /proc/PID/fd/N} (same
 * user: the daemon serves no other), and a descriptor that cannot be opened so (a socket) is
 * relayed through the command's own streams.
 */
final class ClientStdio {
  private ClientStdio() {}

  private static File fd(int n) {
    return new File("/proc/" + Invocation.current().pid() + "/fd/" + n);
  }

  /** Whether the client's descriptor {@code n} can be opened through /proc. */
  private static boolean opens(int n) {
    File f = fd(n);
    try (var c = n == 0 ? new FileInputStream(f) : new FileOutputStream(f, true)) {
      return true;
    } catch (IOException | SecurityException e) {
      return false;
    }
  }

  static void apply(ProcessBuilder pb) {
    if (!Invocation.isForClient()) {
      pb.inheritIO();
      return;
    }
    pb.redirectInput(opens(0) ? ProcessBuilder.Redirect.from(fd(0))
        : ProcessBuilder.Redirect.PIPE);
    pb.redirectOutput(opens(1) ? ProcessBuilder.Redirect.appendTo(fd(1))
        : ProcessBuilder.Redirect.PIPE);
    pb.redirectError(opens(2) ? ProcessBuilder.Redirect.appendTo(fd(2))
        : ProcessBuilder.Redirect.PIPE);
  }

  /** Relays what {@link #apply} could not hand over, between the helper and the command's streams. */
  static void pump(ProcessBuilder pb, Process p) {
    if (!Invocation.isForClient()) {
      return;
    }
    Invocation inv = Invocation.current();
    if (pb.redirectOutput() == ProcessBuilder.Redirect.PIPE) {
      copy(p.getInputStream(), inv.out(), "stdout");
    }
    if (pb.redirectError() == ProcessBuilder.Redirect.PIPE) {
      copy(p.getErrorStream(), inv.err(), "stderr");
    }
    if (pb.redirectInput() == ProcessBuilder.Redirect.PIPE) {
      copy(inv.in(), p.getOutputStream(), "stdin"); // asks the client for its input
    }
  }

  private static void copy(InputStream from, OutputStream to, String what) {
    Thread t = new Thread(() -> {
      byte[] buf = new byte[8192];
      try (from) {
        int n;
        while ((n = from.read(buf)) > 0) {
          to.write(buf, 0, n);
          to.flush();
        }
        if (what.equals("stdin")) {
          to.close();
        }
      } catch (IOException e) {
        // one side ended
      }
    }, "container-" + what);
    t.setDaemon(true);
    t.start();
  }
}
