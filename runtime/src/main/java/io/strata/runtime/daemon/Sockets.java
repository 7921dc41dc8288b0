package io.strata.runtime.daemon;

import io.strata.layers.base.Invocation;
import io.strata.layers.fs.Places;
import java.nio.file.Path;

/**
 * Where a daemon listens: root's at {@code /run/strata/strata.sock}, a user's at
 * {@code $XDG_RUNTIME_DIR/strata/strata.sock} (never root's: a user's commands go to their own
 * daemon or run in their own process). {@code $STRATA_SOCKET} or {@code -Dstrata.socket} names
 * another; {@code none} there, or {@code $STRATA_NO_DAEMON}, keeps every command in its own
 * process. With no runtime directory a user's socket is {@code /tmp/strata-UID/strata.sock}
 * (the daemon refuses a directory there that another user owns). A command run in a user
 * namespace (root inside rootless podman's) uses no daemon.
 */
public final class Sockets {
  private Sockets() {}

  /** The socket this process's commands look for, or null when they must not use a daemon. */
  public static Path forClient() {
    Invocation inv = Invocation.current();
    if (inv.getenv("STRATA_NO_DAEMON") != null) {
      return null;
    }
    // A daemon mounts in its own namespaces: one in a user namespace (rootless podman runs its
    // mount program there) would mount where the caller cannot see it.
    if (!Places.inInitialUserNamespace()) {
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
    return Places.runtimeDir().resolve("strata.sock");
  }
}
