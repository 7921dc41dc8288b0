package io.strata.layers;

import io.strata.layers.fs.Posix;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Who may reach what in a store, as a table: image content holds setuid-root programs and
 * device nodes, and a container's upper holds whatever its root made, so no other local user
 * may reach any of it (a setuid file run straight from a layer directory runs as its owner on
 * a filesystem that honours setuid). containers/storage and containerd keep their layer
 * directories private for the same reason.
 *
 * <p>The root itself may be searched but not listed, so that a user-namespaced container's
 * root (an unprivileged host id) can reach {@code containers/NAME/rootfs}, where that one
 * directory lets its group in (see runtime's {@code Containers}); everything under the root
 * that holds content is private to the store's owner. {@link #secure} applies the table when
 * a store is opened, so a store made by an older strata (0755 everywhere) is closed too.
 */
public final class StoreLayout {
  private StoreLayout() {}

  /** The root: search only, for user-namespaced containers (see above). */
  public static final int ROOT_MODE = 0711;

  /** Every directory directly under the root, with its mode and why. */
  public static final Map<String, Integer> DIRS;

  static {
    Map<String, Integer> m = new LinkedHashMap<>();
    m.put("layers", 0700);        // extracted layers: setuid files, device nodes
    m.put("images", 0700);        // configs (an Env may hold a secret), manifests
    m.put("tmp", 0700);           // staging: half-extracted layers, downloads, commits
    m.put("pins", 0700);          // which process uses which layers
    m.put("mounts", 0700);        // the uppers of `strata mount` without --upper
    m.put("mount-records", 0700); // each mount's upper and image
    m.put("containers", 0711);    // each container's own directory is private (Containers)
    DIRS = java.util.Collections.unmodifiableMap(m);
  }

  /**
   * Creates the root and the table's directories with their modes, and sets the modes of
   * those that exist already. Fails, naming the directory, when one cannot be made private
   * (owned by another user): a store others can read is not opened.
   */
  static void secure(Path root) throws IOException {
    ensure(root, ROOT_MODE);
    for (Map.Entry<String, Integer> e : DIRS.entrySet()) {
      ensure(root.resolve(e.getKey()), e.getValue());
    }
  }

  /** {@code dir}, made 0700 if it is missing or wider: for an upper or a work directory. */
  public static Path privateDir(Path dir) throws IOException {
    ensure(dir, 0700);
    return dir;
  }

  /**
   * Makes {@code dir} (and missing parents, with the default mode) a directory of exactly
   * {@code mode}, narrower or wider than it was: the table is the truth.
   */
  public static void ensure(Path dir, int mode) throws IOException {
    if (!Files.isDirectory(dir)) {
      Files.createDirectories(dir);
    }
    int now = (Integer) Files.getAttribute(dir, "unix:mode") & 07777;
    if (now != mode) {
      try {
        Posix.chmod(dir, mode);
      } catch (IOException e) {
        throw new IOException("cannot make " + dir + " mode " + Integer.toOctalString(mode)
            + " (it is " + Integer.toOctalString(now) + ", owned by uid "
            + Files.getAttribute(dir, "unix:uid", LinkOption.NOFOLLOW_LINKS) + "): "
            + e.getMessage() + "; other users could reach image content through it", e);
      }
    }
  }
}
