package io.strata.union;

import io.strata.layers.Posix;
import io.strata.layers.RawFs;
import java.io.IOException;

/**
 * The overlay markers, in both forms: a whiteout is a char device 0/0 or a {@code .wh.NAME}
 * file; an opaque directory has {@code trusted.overlay.opaque=y} (or {@code user.overlay.opaque}
 * for rootless overlays) or holds {@code .wh..wh..opq}. Both forms are read everywhere; the
 * upper layer is written in the form chosen at mount time. Names are raw (one char per byte).
 */
final class Markers {
  static final String WH_PREFIX = ".wh.";
  static final String OPAQUE_FILE = ".wh..wh..opq";
  static final String TRUSTED_OPAQUE = "trusted.overlay.opaque";
  static final String USER_OPAQUE = "user.overlay.opaque";

  private Markers() {}

  /**
   * The {@code .wh.NAME} file of a name, or null when the name is too long for one (over 251
   * bytes): no such file can exist, and asking the kernel would only say ENAMETOOLONG.
   */
  static String whiteoutFile(String name) {
    return name.length() + WH_PREFIX.length() <= 255 ? WH_PREFIX + name : null;
  }

  /** Whether the real directory {@code dir} has a {@code .wh.NAME} whiteout file for {@code name}. */
  static boolean hasWhiteoutFile(Loc dir, String name) throws IOException {
    String f = whiteoutFile(name);
    return f != null && Stat.lstat(dir.child(f)) != null;
  }

  static boolean isWhiteoutName(String name) {
    return name.startsWith(WH_PREFIX);
  }

  static boolean isWhiteoutDevice(Attr a) {
    return a != null && a.type() == Posix.S_IFCHR && a.rdev() == 0;
  }

  /** Whether the real directory {@code dir} is marked opaque in either form. */
  static boolean isOpaque(Loc dir) throws IOException {
    if (Stat.lstat(dir.child(OPAQUE_FILE)) != null) {
      return true;
    }
    return isY(RawFs.lgetxattr(dir.dirfd(), dir.rel(), TRUSTED_OPAQUE))
        || isY(RawFs.lgetxattr(dir.dirfd(), dir.rel(), USER_OPAQUE));
  }

  private static boolean isY(byte[] v) {
    return v != null && v.length >= 1 && v[0] == 'y';
  }

  /**
   * Creates a whiteout for {@code name} in the real directory {@code dir}. A name too long for
   * the {@code .wh.} form (over 251 bytes) gets the device form, which only root may make.
   */
  static void writeWhiteout(Loc dir, String name, WhiteoutForm form) throws IOException {
    String file = whiteoutFile(name);
    if (form == WhiteoutForm.DEVICE || (file == null && Posix.isRoot())) {
      RawFs.mknod(dir.dirfd(), dir.child(name).rel(), Posix.S_IFCHR | 0000, 0, 0);
    } else if (file == null) {
      // A whiteout for a name over 251 bytes needs the device form, which only root can make.
      throw new Posix.PosixException("whiteout", java.nio.file.Path.of(dir.child(name).toString()),
          Posix.ENAMETOOLONG);
    } else {
      RawFs.close(RawFs.open(dir.dirfd(), dir.child(file).rel(),
          RawFs.O_WRONLY | RawFs.O_CREAT | RawFs.O_EXCL, 0644));
    }
  }

  /** Removes a whiteout for {@code name} if there is one; returns whether there was. */
  static boolean removeWhiteout(Loc dir, String name) throws IOException {
    boolean had = false;
    Loc dev = dir.child(name);
    if (isWhiteoutDevice(Stat.lstat(dev))) {
      RawFs.unlink(dev.dirfd(), dev.rel());
      had = true;
    }
    String f = whiteoutFile(name);
    if (f != null && Stat.lstat(dir.child(f)) != null) {
      RawFs.unlink(dir.dirfd(), dir.child(f).rel());
      had = true;
    }
    return had;
  }

  static void markOpaque(Loc dir, WhiteoutForm form) throws IOException {
    if (form == WhiteoutForm.DEVICE) {
      RawFs.lsetxattr(dir.dirfd(), dir.rel(), TRUSTED_OPAQUE, new byte[] {'y'});
    } else {
      RawFs.close(RawFs.open(dir.dirfd(), dir.child(OPAQUE_FILE).rel(),
          RawFs.O_WRONLY | RawFs.O_CREAT | RawFs.O_EXCL, 0644));
    }
  }

  /** Whether an xattr name belongs to the overlay machinery and is hidden from users. */
  static boolean isPrivateXattr(String name) {
    return name.startsWith("trusted.overlay.") || name.startsWith("user.overlay.")
        || name.startsWith("trusted.strata.") || name.startsWith("user.strata.");
  }
}
