package io.strata.union.cli;

import io.strata.union.mount.FuseMount;
import io.strata.union.view.UnionView;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;

/**
 * Serves a mount in this process until it is unmounted or the process gets SIGTERM/SIGINT (in
 * the daemon: until the client that asked for it in the foreground gets one, or goes away).
 */
final class Foreground {
  private Foreground() {}

  static void log(String line) {
    System.err.println(Instant.now() + " strata: " + line);
  }

  /**
   * Mounts, reports readiness on stderr, and blocks until the mount is gone (a background
   * mount in the daemon: returns once it answers, and a thread waits).
   */
  static void serve(UnionView view, Path mountpoint, FuseMount.Settings settings, Runnable onExit)
      throws IOException, InterruptedException {
    FuseMount m = FuseMount.mount(view, mountpoint, settings, Foreground::log,
        Duration.ofSeconds(30));
    Thread hook = new Thread(() -> {
      if (m.isHandedOver()) {
        return; // the next daemon serves it, with its pins and records
      }
      boolean clean = false;
      try {
        log("signal: unmounting " + m.mountpoint());
        if (m.closeOrDetach()) {
          log("detached " + m.mountpoint() + " (in use): its users lose it as this process ends");
        } else {
          clean = true;
        }
      } catch (IOException e) {
        log("unmount on exit failed: " + e.getMessage());
      } finally {
        onExit.run();
      }
      if (clean) {
        io.strata.union.mount.Background.dropRoutineLog();
      }
    }, "strata-unmount");
    Runtime.getRuntime().addShutdownHook(hook);
    // In the daemon the client's signals come as frames; a client that goes away hangs up.
    AutoCloseable signals = io.strata.layers.base.Invocation.current().onSignal(n -> {
      if (n == 1 || n == 2 || n == 15) {
        log("signal " + n + " from the client: unmounting " + m.mountpoint());
        try {
          if (m.closeOrDetach()) {
            log("detached " + m.mountpoint() + ": in use, it goes once its users let go");
          }
        } catch (IOException e) {
          log("unmount failed: " + e.getMessage());
        }
      }
    });
    log("mounted " + mountpoint + " (lowers " + view.lowers().size() + ", upper "
        + (view.upper() == null ? "none: read-only" : view.upper()) + ")");
    System.err.println(Instant.now() + " " + io.strata.union.mount.Background.readyLine(mountpoint,
        io.strata.union.mount.Background.readyToken()));
    if (io.strata.union.mount.Background.detached()) {
      // In the daemon a background mount's command ends here, so that what it parsed (its
      // command line's model, a megabyte) is not kept for the life of the mount; the cleanup
      // runs once the mount has gone.
      m.whenUnmounted(() -> finish(view, m, hook, signals, onExit));
      return;
    }
    finish(view, m, hook, signals, onExit);
  }

  /** Waits until the mount is gone, then says so and cleans up. */
  private static void finish(UnionView view, FuseMount m, Thread hook, AutoCloseable signals,
      Runnable onExit) {
    Path mountpoint = m.mountpoint();
    try {
      m.awaitUnmount();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return; // the process ends: the shutdown hook unmounts
    } finally {
      try {
        signals.close();
      } catch (Exception impossible) {
        // removing a handler from a list throws nothing
      }
    }
    log("unmounted " + mountpoint + "; " + view.cacheReport()
        + (m.stats().isEmpty() ? "" : "; requests " + m.stats()));
    try {
      Runtime.getRuntime().removeShutdownHook(hook);
    } catch (IllegalStateException shuttingDown) {
      return; // the hook is running and does the rest
    }
    boolean clean = false;
    try {
      m.close();
      clean = true;
    } catch (IOException e) {
      log("unmount of " + mountpoint + " failed: " + e.getMessage());
    } finally {
      onExit.run();
    }
    if (clean) {
      io.strata.union.mount.Background.dropRoutineLog(); // after onExit: what it says stays
    }
  }
}
