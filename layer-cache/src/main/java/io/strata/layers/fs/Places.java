package io.strata.layers.fs;

import io.strata.layers.base.Invocation;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Where strata keeps things for the one who runs it, as podman does: the host's root uses the
 * system's directories ({@code /var/lib/strata}, {@code /run/strata}); everyone else, and root
 * inside a user namespace (rootless podman runs its mount program there), uses their own
 * ({@code $XDG_DATA_HOME/strata}, else {@code ~/.local/share/strata}; {@code
 * $XDG_RUNTIME_DIR/strata}). Capabilities (may this process chown, mknod?) are {@link
 * Posix#isRoot}'s question; this one is whose directories these are.
 */
public final class Places {
  /** The system store root, the host's root's default. */
  public static final Path SYSTEM_STORE = Path.of("/var/lib/strata");

  /** The system runtime directory (sockets, logs, locks), the host's root's. */
  public static final Path SYSTEM_RUN = Path.of("/run/strata");

  private static final boolean INITIAL_USER_NAMESPACE = readInitialUserNamespace();

  private Places() {}

  /** Whether this process is root of the host: uid 0 in the initial user namespace. */
  public static boolean isHostRoot() {
    return Posix.isRoot() && INITIAL_USER_NAMESPACE;
  }

  /** Whether this process runs in the host's user namespace (not in a container's or podman's). */
  public static boolean inInitialUserNamespace() {
    return INITIAL_USER_NAMESPACE;
  }

  /** The default store root of whoever runs this command. */
  public static Path defaultStore() {
    if (isHostRoot()) {
      return SYSTEM_STORE;
    }
    Invocation inv = Invocation.current();
    String data = inv.getenv("XDG_DATA_HOME");
    if (data != null && data.startsWith("/")) {
      return Path.of(data, "strata");
    }
    return home().resolve(".local/share/strata");
  }

  /** The runtime directory (logs, locks, sockets) of whoever runs this command. */
  public static Path runtimeDir() {
    if (isHostRoot()) {
      return SYSTEM_RUN;
    }
    String xdg = Invocation.current().getenv("XDG_RUNTIME_DIR");
    if (xdg != null && xdg.startsWith("/")) {
      return Path.of(xdg, "strata");
    }
    return Path.of(System.getProperty("java.io.tmpdir"), "strata-" + Posix.geteuid());
  }

  private static Path home() {
    String home = Invocation.current().getenv("HOME");
    return Path.of(home != null && home.startsWith("/") ? home : System.getProperty("user.home"));
  }

  /**
   * The initial user namespace maps every id to itself: {@code 0 0 4294967295}. Any other map
   * is a namespace of a container or of rootless podman.
   */
  private static boolean readInitialUserNamespace() {
    try {
      String[] f = Files.readString(Path.of("/proc/self/uid_map")).trim().split("\\s+");
      return f.length == 3 && f[0].equals("0") && f[1].equals("0") && f[2].equals("4294967295");
    } catch (IOException | RuntimeException e) {
      return true;
    }
  }
}
