package io.strata.runtime.daemon;

import io.strata.layers.base.Invocation;
import io.strata.layers.fs.Posix;
import java.nio.file.Path;

/**
 * Where a daemon listens: root's at {@code /run/strata/strata.sock}, a user's at
 * {@code $XDG_RUNTIME_DIR/strata/strata.sock} (never root's: a user's commands go to their own
 * daemon or run in their own process). {@code $STRATA_SOCKET} or {@code -Dstrata.socket} names
 * another; {@code none} there, or {@code $STRATA_NO_DAEMON}, keeps every command in its own
 * process. With no runtime directory a user's socket is {@code /tmp/strata-UID/strata.sock}
 * (the daemon refuses a directory there that another user owns).
 */
public final class Sockets {
  private Sockets() {}

  /** The socket this process's commands look for, or null when they must not use a daemon. */
  public static Path forClient() {
    Invocation inv = Invocation.current();
    if (inv.getenv("STRATA_NO_DAEMON") != null) {
      return null;
    }
    String named = System.getProperty("strata.socket", inv.getenv("STRATA_SOCKET"));
    if (named != null && !named.isBlank()) {
      return named.equals("none") ? null : Path.of(named);
    }
    return defaultPath();
  }

  /** The default socket of this user: root's, or one under the user's runtime directory. */
  public static Path defaultPath() {
    if (Posix.isRoot()) {
      return Path.of("/run/strata/strata.sock");
    }
    String xdg = Invocation.current().getenv("XDG_RUNTIME_DIR");
    if (xdg != null && !xdg.isBlank()) {
      return Path.of(xdg, "strata", "strata.sock");
    }
    return Path.of("/tmp", "strata-" + Posix.geteuid(), "strata.sock");
  }
}
