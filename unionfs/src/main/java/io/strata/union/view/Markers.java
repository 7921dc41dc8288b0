package io.strata.union.view;

import io.strata.layers.fs.Places;
import io.strata.layers.fs.Posix;
import io.strata.layers.fs.RawFs;
import java.io.IOException;

/**
 * The overlay markers, in both forms: a whiteout is a char device 0/0 or a {@code .wh.NAME}
 * file; an opaque directory has {@code trusted.overlay.opaque=y} (or {@code user.overlay.opaque}
 * for rootless overlays) or holds {@code .wh..wh..opq}. Both forms are read everywhere; the
 * upper layer is written in the form chosen at mount time. Names are raw (one char per byte).
 *
 * <p>A directory renamed while a lower layer contributes to it carries a redirect: the path,
 * from the lower root, of the lower directory it shows ({@code trusted.strata.redirect}, or
 * {@code user.strata.redirect} for a user's mount). Where the upper is in the kernel's form
 * (device whiteouts) it also gets kernel overlayfs's {@code trusted.overlay.redirect}, so that
 * kernel overlayfs with redirect_dir=on reads the upper the same way. All four are read.
 */
public final class Markers {
  static final String WH_PREFIX = ".wh.";
  static final String OPAQUE_FILE = ".wh..wh..opq";
  static final String TRUSTED_OPAQUE = "trusted.overlay.opaque";
  static final String USER_OPAQUE = "user.overlay.opaque";
  static final String TRUSTED_REDIRECT = "trusted.strata.redirect";
  static final String USER_REDIRECT = "user.strata.redirect";
  static final String OVERLAY_REDIRECT = "trusted.overlay.redirect";
  static final String OVERLAY_USER_REDIRECT = "user.overlay.redirect";
  /** Read in this order: strata's own before the kernel's. */
  private static final String[] REDIRECTS = {TRUSTED_REDIRECT, USER_REDIRECT, OVERLAY_REDIRECT,
      OVERLAY_USER_REDIRECT};

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

  /** A real directory's markers: whether it is opaque, and its redirect (null for none). */
  record DirMarks(boolean opaque, String redirect) {}

  /**
   * The markers of the real directory {@code dir}, from one listing of its xattrs (a directory
   * with none, the common case, costs that call and one lstat).
   */
  static DirMarks dirMarks(Loc dir) throws IOException {
    boolean opaque = Stat.lstat(dir.child(OPAQUE_FILE)) != null;
    java.util.List<String> names = RawFs.llistxattr(dir.dirfd(), dir.rel());
    if (names.isEmpty()) {
      return new DirMarks(opaque, null);
    }
    if (!opaque) {
      for (String o : new String[] {TRUSTED_OPAQUE, USER_OPAQUE}) {
        if (names.contains(o) && isY(RawFs.lgetxattr(dir.dirfd(), dir.rel(), o))) {
          opaque = true;
        }
      }
    }
    String redirect = null;
    for (String r : REDIRECTS) {
      if (redirect == null && names.contains(r)) {
        redirect = validRedirect(RawFs.lgetxattr(dir.dirfd(), dir.rel(), r));
      }
    }
    return new DirMarks(opaque, redirect);
  }

  /**
   * A redirect's value if it is one: an absolute path of names (no empty, "." or ".."
   * component) or one such name; else null, and the directory shows no lower one.
   */
  static String validRedirect(byte[] v) {
    if (v == null || v.length == 0 || v.length > 4096) {
      return null;
    }
    String s = RawFs.raw(v);
    String body = s.startsWith("/") ? s.substring(1) : s;
    if (body.isEmpty() || (!s.startsWith("/") && body.contains("/"))) {
      return null;
    }
    for (String c : body.split("/", -1)) {
      if (c.isEmpty() || c.equals(".") || c.equals("..") || c.indexOf('\0') >= 0) {
        return null;
      }
    }
    return s;
  }

  /** Marks a renamed directory with the lower directory it shows ({@code /PATH}). */
  static void setRedirect(Loc dir, String redirect, WhiteoutForm form) throws IOException {
    byte[] v = RawFs.bytes(redirect);
    boolean trusted = trustedXattrs();
    RawFs.lsetxattr(dir.dirfd(), dir.rel(), trusted ? TRUSTED_REDIRECT : USER_REDIRECT, v);
    if (form == WhiteoutForm.DEVICE) {
      RawFs.lsetxattr(dir.dirfd(), dir.rel(), trusted ? OVERLAY_REDIRECT : OVERLAY_USER_REDIRECT,
          v);
    }
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

  /**
   * Whether the kernel's {@code trusted.*} markers can be written: only by the host's root
   * (CAP_SYS_ADMIN in the initial user namespace). Root in a user namespace (rootless podman's
   * mount program) writes the {@code user.*} ones, as kernel overlayfs's userxattr does.
   */
  static boolean trustedXattrs() {
    return Places.isHostRoot();
  }

  /**
   * Marks a real directory opaque: the kernel's xattr in the device form; in a user namespace
   * also the {@code .wh..wh..opq} file, as fuse-overlayfs writes there (containers/storage
   * reads it when it diffs a rootless upper).
   */
  static void markOpaque(Loc dir, WhiteoutForm form) throws IOException {
    if (form == WhiteoutForm.DEVICE && trustedXattrs()) {
      RawFs.lsetxattr(dir.dirfd(), dir.rel(), TRUSTED_OPAQUE, new byte[] {'y'});
    } else {
      if (form == WhiteoutForm.DEVICE) {
        RawFs.lsetxattr(dir.dirfd(), dir.rel(), USER_OPAQUE, new byte[] {'y'});
      }
      RawFs.close(RawFs.open(dir.dirfd(), dir.child(OPAQUE_FILE).rel(),
          RawFs.O_WRONLY | RawFs.O_CREAT | RawFs.O_EXCL, 0644));
    }
  }

  /** Whether an xattr name belongs to the overlay machinery and is hidden from users. */
  public static boolean isPrivateXattr(String name) {
    return name.startsWith("trusted.overlay.") || name.startsWith("user.overlay.")
        || name.startsWith("trusted.strata.") || name.startsWith("user.strata.");
  }
}
