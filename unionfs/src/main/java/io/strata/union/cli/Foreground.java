package io.strata.union.cli;

import io.strata.union.mount.FuseMount;
import io.strata.union.view.UnionView;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;

/** Serves a mount in this process until it is unmounted or the process gets SIGTERM/SIGINT. */
final class Foreground {
  private Foreground() {}

  static void log(String line) {
    System.err.println(Instant.now() + " strata: " + line);
  }

  /** Mounts, reports readiness on stderr, and blocks until the mount is gone. */
  static void serve(UnionView view, Path mountpoint, FuseMount.Settings settings, Runnable onExit)
      throws IOException, InterruptedException {
    FuseMount m = FuseMount.mount(view, mountpoint, settings, Foreground::log,
        Duration.ofSeconds(30));
    Thread hook = new Thread(() -> {
      try {
        log("signal: unmounting " + m.mountpoint());
        m.close();
      } catch (IOException e) {
        log("unmount on exit failed: " + e.getMessage());
      } finally {
        onExit.run();
      }
    }, "strata-unmount");
    Runtime.getRuntime().addShutdownHook(hook);
    log("mounted " + mountpoint + " (lowers " + view.lowers().size() + ", upper "
        + (view.upper() == null ? "none: read-only" : view.upper()) + ")");
    System.err.println(Instant.now() + " " + io.strata.union.mount.Background.readyLine(mountpoint,
        io.strata.union.mount.Background.readyToken()));
    m.awaitUnmount();
    log("unmounted " + mountpoint + "; " + view.cacheReport()
        + (m.stats().isEmpty() ? "" : "; requests " + m.stats()));
    try {
      Runtime.getRuntime().removeShutdownHook(hook);
    } catch (IllegalStateException shuttingDown) {
      return; // the hook is running and does the rest
    }
    m.close();
    onExit.run();
  }
}
