package io.strata.union;

import io.strata.layers.Posix;
import java.io.IOException;
import java.nio.file.Path;

/**
 * The overlay markers, in both forms: a whiteout is a char device 0/0 or a {@code .wh.NAME}
 * file; an opaque directory has {@code trusted.overlay.opaque=y} (or {@code user.overlay.opaque}
 * for rootless overlays) or holds {@code .wh..wh..opq}. Both forms are read everywhere; the
 * upper layer is written in the form chosen at mount time.
 */
final class Markers {
  static final String WH_PREFIX = ".wh.";
  static final String OPAQUE_FILE = ".wh..wh..opq";
  static final String TRUSTED_OPAQUE = "trusted.overlay.opaque";
  static final String USER_OPAQUE = "user.overlay.opaque";

  private Markers() {}

  static boolean isWhiteoutName(String name) {
    return name.startsWith(WH_PREFIX);
  }

  static boolean isWhiteoutDevice(Attr a) {
    return a != null && a.type() == Posix.S_IFCHR && a.rdev() == 0;
  }

  /** Whether the real directory {@code dir} is marked opaque in either form. */
  static boolean isOpaque(Path dir) throws IOException {
    if (Stat.lstat(dir.resolve(OPAQUE_FILE)) != null) {
      return true;
    }
    return isY(Posix.lgetxattr(dir, TRUSTED_OPAQUE)) || isY(Posix.lgetxattr(dir, USER_OPAQUE));
  }

  private static boolean isY(byte[] v) {
    return v != null && v.length >= 1 && v[0] == 'y';
  }

  /** Creates a whiteout for {@code name} in the real directory {@code dir}. */
  static void writeWhiteout(Path dir, String name, WhiteoutForm form) throws IOException {
    if (form == WhiteoutForm.DEVICE) {
      Posix.mknod(dir.resolve(name), Posix.S_IFCHR | 0000, 0, 0);
    } else {
      java.nio.file.Files.createFile(dir.resolve(WH_PREFIX + name));
    }
  }

  /** Removes a whiteout for {@code name} if there is one; returns whether there was. */
  static boolean removeWhiteout(Path dir, String name) throws IOException {
    boolean had = false;
    Path dev = dir.resolve(name);
    if (isWhiteoutDevice(Stat.lstat(dev))) {
      Posix.unlink(dev);
      had = true;
    }
    Path file = dir.resolve(WH_PREFIX + name);
    if (Stat.lstat(file) != null) {
      Posix.unlink(file);
      had = true;
    }
    return had;
  }

  static void markOpaque(Path dir, WhiteoutForm form) throws IOException {
    if (form == WhiteoutForm.DEVICE) {
      Posix.lsetxattr(dir, TRUSTED_OPAQUE, new byte[] {'y'});
    } else {
      java.nio.file.Files.createFile(dir.resolve(OPAQUE_FILE));
    }
  }

  /** Whether an xattr name belongs to the overlay machinery and is hidden from users. */
  static boolean isPrivateXattr(String name) {
    return name.startsWith("trusted.overlay.") || name.startsWith("user.overlay.")
        || name.startsWith("trusted.strata.") || name.startsWith("user.strata.");
  }
}
