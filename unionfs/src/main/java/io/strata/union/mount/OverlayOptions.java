package io.strata.union.mount;

import io.strata.union.view.IdMap;
import io.strata.union.view.UnionView;
import io.strata.union.view.WhiteoutForm;
import io.strata.layers.fs.Posix;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * fuse-overlayfs's {@code -o} options: lowerdir (top first, ':'-separated), upperdir, workdir,
 * uidmapping, gidmapping, squash_to_root, noxattrs, fsync=0, timeout=, and strata's own
 * transport=kernel|uring|dev|jnr, uring and nouring (FUSE over io_uring required or forbidden)
 * and passthrough=0|1, plus the generic mount
 * flags that containers/storage passes along. Values are checked before anything is mounted.
 */
public record OverlayOptions(List<Path> lowers, Path upper, Path work, UnionView.Options view,
    Double timeout, FuseMount.Transport transport, Boolean passthrough,
    io.strata.union.kernel.KernelSession.RingUse ring) {

  /** Generic flags accepted and left to the kernel's defaults or to FUSE's own handling. */
  private static final List<String> IGNORED = List.of("rw", "ro", "dev", "nodev", "suid",
      "nosuid", "exec", "noexec", "atime", "noatime", "relatime", "strictatime", "diratime",
      "nodiratime", "sync", "async", "default_permissions", "allow_other", "allow_root",
      "userxattr", "index=off", "xino=off", "xino=auto",
      "metacopy=off", "metacopy=on", "fast_ino=1", "fast_ino=0", "static_nlink",
      "plugins=", "threaded=1", "threaded=0", "noacl", "posixacl");

  /** A layer's link as containers/storage makes it: {@code l/ID} to {@code ../LAYER/diff}. */
  private static final java.util.regex.Pattern LAYER_LINK =
      java.util.regex.Pattern.compile("\\.\\./[0-9a-f]{64}/diff");

  /**
   * Whether every lower is a layer of containers/storage (podman's, buildah's): a link in its
   * driver's {@code l/} directory to a layer's {@code diff}, which that library never changes
   * once the layer exists (a layer is written before it is ever a lower, and removed, not
   * changed). The view may then keep their merged tree for the next container of the image.
   */
  static boolean containersStorageLayers(List<Path> lowers) {
    for (Path l : lowers) {
      Path dir = l.getParent();
      if (dir == null || dir.getFileName() == null || !dir.getFileName().toString().equals("l")) {
        return false;
      }
      try {
        if (!LAYER_LINK.matcher(java.nio.file.Files.readSymbolicLink(l).toString()).matches()) {
          return false;
        }
      } catch (java.io.IOException | UnsupportedOperationException e) {
        return false; // not a link: not one of its layers
      }
    }
    return !lowers.isEmpty();
  }

  public static OverlayOptions parse(List<String> optionStrings, Consumer<String> warn) {
    List<Path> lowers = new ArrayList<>();
    Path upper = null;
    Path work = null;
    UnionView.Options d = UnionView.Options.defaults();
    WhiteoutForm form = d.whiteoutForm();
    boolean xattrs = true;
    boolean fsync = true;
    boolean squash = false;
    boolean metacopy = d.metacopy();
    boolean redirectDir = d.redirectDir();
    IdMap uids = IdMap.IDENTITY;
    IdMap gids = IdMap.IDENTITY;
    Double timeout = null;
    FuseMount.Transport transport = null;
    Boolean passthrough = null;
    io.strata.union.kernel.KernelSession.RingUse ring = null;
    for (String opt : splitOptions(String.join(",", optionStrings))) {
      int eq = opt.indexOf('=');
      String key = eq < 0 ? opt : opt.substring(0, eq);
      String value = eq < 0 ? null : opt.substring(eq + 1);
      switch (key) {
        case "lowerdir":
          for (String l : splitLowers(require(key, value))) {
            lowers.add(io.strata.layers.base.Invocation.current().resolve(l));
          }
          break;
        case "upperdir":
          upper = io.strata.layers.base.Invocation.current().resolve(require(key, value));
          break;
        case "workdir":
          work = io.strata.layers.base.Invocation.current().resolve(require(key, value));
          break;
        case "uidmapping":
          uids = IdMap.parse(require(key, value), key);
          break;
        case "gidmapping":
          gids = IdMap.parse(require(key, value), key);
          break;
        case "squash_to_root":
          squash = true;
          break;
        case "noxattrs":
          xattrs = false;
          break;
        case "fsync":
          fsync = !"0".equals(require(key, value));
          break;
        case "volatile":
          // kernel overlayfs's: no sync reaches the upper (podman passes it for --rm
          // containers); fuse-overlayfs takes it as fsync=0 too
          fsync = false;
          break;
        case "transport":
          transport = FuseMount.Transport.parse(require(key, value));
          ring = FuseMount.Transport.ringOf(value);
          break;
        case "uring":
          ring = io.strata.union.kernel.KernelSession.RingUse.ON;
          break;
        case "nouring":
          ring = io.strata.union.kernel.KernelSession.RingUse.OFF;
          break;
        case "passthrough":
          passthrough = !"0".equals(require(key, value));
          break;
        case "timeout":
          timeout = io.strata.layers.base.Text.decimal(require(key, value), "timeout=");
          break;
        case "whiteout":
          if ("file".equals(value)) {
            form = WhiteoutForm.FILE;
          } else if ("device".equals(value)) {
            form = WhiteoutForm.DEVICE;
          } else {
            throw new IllegalArgumentException("whiteout=" + value + ": expected file or device");
          }
          break;
        case "nometacopy":
          metacopy = false;
          break;
        case "redirect_dir":
          // on: rename directories a lower layer contributes to (with a redirect); off,
          // follow, nofollow: such renames are EXDEV (redirects present are still followed)
          switch (require(key, value)) {
            case "on" -> redirectDir = true;
            case "off", "follow", "nofollow" -> redirectDir = false;
            default -> throw new IllegalArgumentException("redirect_dir=" + value
                + ": expected on, follow, nofollow or off");
          }
          break;
        default:
          if (!IGNORED.contains(opt) && !IGNORED.contains(key + "=")
              && !opt.startsWith("context=") && !opt.startsWith("fscontext=")
              && !opt.startsWith("rootcontext=") && !opt.startsWith("defcontext=")
              && !opt.startsWith("fsname=") && !opt.startsWith("subtype=")) {
            warn.accept("ignoring unknown option '" + opt + "'");
          }
      }
    }
    if (lowers.isEmpty()) {
      throw new IllegalArgumentException("missing lowerdir=DIR[:DIR…] (top layer first)");
    }
    if (upper != null && work == null) {
      throw new IllegalArgumentException("upperdir needs workdir=DIR on the same filesystem");
    }
    if (form == WhiteoutForm.DEVICE && !Posix.isRoot()) {
      form = WhiteoutForm.FILE;
    }
    UnionView.Options view = new UnionView.Options(form, metacopy, xattrs, fsync, uids, gids,
        squash, d.cacheEntries(), redirectDir, containersStorageLayers(lowers));
    return new OverlayOptions(List.copyOf(lowers), upper, work, view, timeout, transport,
        passthrough, ring);
  }

  private static String require(String key, String value) {
    if (value == null || value.isEmpty()) {
      throw new IllegalArgumentException(key + " needs a value (" + key + "=…)");
    }
    return value;
  }

  /** Splits on unescaped commas; "\," is a comma inside a value. */
  static List<String> splitOptions(String s) {
    return split(s, ',');
  }

  /** Splits lowerdir on unescaped colons; "\:" is a colon inside a path. */
  static List<String> splitLowers(String s) {
    return split(s, ':');
  }

  private static List<String> split(String s, char sep) {
    List<String> out = new ArrayList<>();
    StringBuilder cur = new StringBuilder();
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c == '\\' && i + 1 < s.length()) {
        char next = s.charAt(++i);
        if (next != sep && next != '\\') {
          cur.append('\\'); // an escape for a later split: keep it
        }
        cur.append(next);
      } else if (c == sep) {
        if (cur.length() > 0) {
          out.add(cur.toString());
        }
        cur.setLength(0);
      } else {
        cur.append(c);
      }
    }
    if (cur.length() > 0) {
      out.add(cur.toString());
    }
    return out;
  }
}
