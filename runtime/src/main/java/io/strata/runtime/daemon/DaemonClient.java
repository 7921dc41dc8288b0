package io.strata.runtime.daemon;

import io.strata.layers.base.Invocation;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The Java side of a thin client: hands a command to a daemon and relays its output, input and
 * exit status. The command line uses it when a daemon answers (the C client
 * {@code strata-client} is the fast one people run; this one serves the JVM's own callers and
 * the tests).
 */
public final class DaemonClient {
  private DaemonClient() {}

  /** Connects to the daemon at {@code socket}; null when none answers there. */
  public static SocketChannel connect(Path socket) {
    if (socket == null) {
      return null;
    }
    try {
      SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
      try {
        ch.connect(UnixDomainSocketAddress.of(socket));
        return ch;
      } catch (IOException e) {
        ch.close();
        return null;
      }
    } catch (IOException e) {
      return null;
    }
  }

  /**
   * What {@link #run} returns when the daemon is stopping and took no command: the caller runs
   * it in its own process (no exit status: a command's are 0-255).
   */
  public static final int RUN_YOURSELF = -2;

  /**
   * Runs {@code argv} in the daemon behind {@code ch} as the current invocation (its working
   * directory, environment and streams) and returns the command's exit status, or {@link
   * #RUN_YOURSELF}.
   */
  public static int run(SocketChannel ch, List<String> argv) throws IOException {
    Invocation inv = Invocation.current();
    List<String> env = new ArrayList<>();
    for (Map.Entry<String, String> e : inv.env().entrySet()) {
      env.add(e.getKey() + "=" + e.getValue());
    }
    int flags = (inv.stdinIsTerminal() ? 1 : 0) | (inv.stderrIsTerminal() ? 6 : 0);
    Wire.Hello hello = new Wire.Hello(inv.pid(), flags, inv.cwd().toString(), argv, env);
    try (ch) {
      Wire.Out out = new Wire.Out(Wire.output(ch));
      InputStream in = Wire.input(ch);
      out.frame(Wire.HELLO, hello.encode());
      PrintStream stdout = System.out;
      PrintStream stderr = System.err;
      while (true) {
        Wire.Frame f = Wire.read(in);
        if (f == null) {
          stderr.println("strata: the daemon went away before the command ended");
          return 1;
        }
        switch (f.type()) {
          case Wire.STDOUT -> {
            stdout.write(f.payload());
            stdout.flush();
          }
          case Wire.STDERR -> {
            stderr.write(f.payload());
            stderr.flush();
          }
          case Wire.WANT_STDIN -> pumpStdin(inv.in(), out);
          case Wire.EXIT -> {
            return f.u32(0);
          }
          case Wire.RUN_YOURSELF -> {
            return RUN_YOURSELF;
          }
          default -> {
            // a newer daemon's frame: nothing this client does with it
          }
        }
      }
    }
  }

  private static void pumpStdin(InputStream stdin, Wire.Out out) {
    Thread t = new Thread(() -> {
      byte[] buf = new byte[8192];
      try {
        int n;
        while ((n = stdin.read(buf)) > 0) {
          out.frame(Wire.STDIN, buf, 0, n);
        }
        out.frame(Wire.STDIN_END, new byte[0]);
      } catch (IOException e) {
        // the daemon went away; the main loop says so
      }
    }, "strata-stdin");
    t.setDaemon(true);
    t.start();
  }
}
