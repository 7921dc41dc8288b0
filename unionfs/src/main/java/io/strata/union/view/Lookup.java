package io.strata.union.view;

import com.github.benmanes.caffeine.cache.Cache;
import com.github.benmanes.caffeine.cache.Caffeine;
import io.strata.layers.fs.Posix;
import io.strata.layers.fs.RawFs;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * The one place that resolves names: the upper layer is consulted live (it changes only through
 * the view), the lower layers through {@link LowerTree}'s merged directories (they never change
 * while mounted). An upper whiteout hides a name; an opaque upper directory hides everything
 * below it. Directory steps are cached by path, so a lookup resolves only its last name, with
 * one short *at call whatever its depth.
 *
 * <p>Locking: called under {@link UnionView}'s namespace lock, for reading by lookups (which
 * fill the caches) and for writing by changes (which invalidate them).
 */
final class Lookup {
  private final List<Loc> lowerRoots;
  private final Loc upperRoot;
  private final LowerTree lowerTree;
  private final String originXattr;
  /** Upper directories' markers by path: opaque, and the redirect of a renamed one. */
  private final Cache<String, Markers.DirMarks> upperMarks =
      Caffeine.newBuilder().maximumSize(100_000).recordStats().build();
  /**
   * Directory steps by path, so that a lookup resolves only its last name. A step changes only
   * when its directory is copied up, removed or moved: copy-up replaces it, rmdir and rename
   * drop them all. Filled under the read lock, changed under the write lock.
   */
  private final Cache<String, Step> steps;
  /** Descriptors of dropped steps, closed under the write lock, when no lookup can hold them. */
  private final java.util.concurrent.ConcurrentLinkedQueue<Integer> unusedFds =
      new java.util.concurrent.ConcurrentLinkedQueue<>();
  /** At most this many directory steps, each an open descriptor: a quarter of what we may open. */
  private static final int MAX_OPEN_STEPS = (int) Math.min(8192, openFileLimit() / 4);

  /** The soft RLIMIT_NOFILE, from /proc (Java has no call for it); 1024 if unknown. */
  private static long openFileLimit() {
    try {
      for (String line : Files.readAllLines(Path.of("/proc/self/limits"))) {
        if (line.startsWith("Max open files")) {
          String soft = line.substring("Max open files".length()).trim().split("\\s+")[0];
          return soft.equals("unlimited") ? Long.MAX_VALUE : Long.parseLong(soft);
        }
      }
    } catch (IOException | RuntimeException e) {
      // fall through
    }
    return 1024;
  }

  Lookup(List<Loc> lowerRoots, Loc upperRoot, LowerTree lowerTree, String originXattr) {
    this.lowerRoots = lowerRoots;
    this.upperRoot = upperRoot;
    this.rootStep = new Step(upperRoot, lowerRoots.isEmpty() ? null : "", false);
    this.lowerTree = lowerTree;
    this.originXattr = originXattr;
    this.steps = Caffeine.newBuilder().maximumSize(MAX_OPEN_STEPS).recordStats()
        .executor(Runnable::run)
        .<String, Step>removalListener((k, v, cause) -> {
          if (v != null && v.owned()) {
            unusedFds.add(v.upper().dirfd()); // closed when no operation can be using it
          }
        }).build();
  }

  /**
   * Where a directory's children are looked up: its upper directory (null if the upper has
   * none there) and its merged lower directory's path (null if no lower directory shows). The
   * upper directory is held open ({@code owned}: the cache closes it), so that looking up a
   * child costs one short *at call whatever the depth.
   */
  private record Step(Loc upper, String lower, boolean owned) {}

  /** The root directory's step. */
  private final Step rootStep;

  /**
   * Resolves a relative path: its parent's {@link Step} comes from the cache of directory
   * steps (or is resolved and cached, ancestors first), and only the last name is looked up,
   * so a lookup costs the same at any depth. ENOENT or ENOTDIR when it does not resolve.
   */
  Node resolveRel(String rel) throws FsException {
    try {
      if (rel.isEmpty()) {
        LowerTree.Entry rootEntry = lowerRoots.isEmpty() ? null
            : new LowerTree.Entry("", 1, lowerRoots.get(0), true, lowerRoots,
                Stat.lstat(lowerRoots.get(0)));
        return new Node("", upperRoot, upperRoot == null ? null : Stat.lstat(upperRoot),
            rootEntry, lowerRoots.isEmpty() ? null : "");
      }
      int slash = rel.lastIndexOf('/');
      Step parent = step(slash < 0 ? "" : rel.substring(0, slash));
      return lookup(parent, rel, rel.substring(slash + 1));
    } catch (IOException e) {
      throw FsException.from(e);
    } catch (UncheckedIOException e) {
      throw FsException.from(e.getCause());
    }
  }

  /**
   * Resolves {@code name} in the directory {@code relDir} ("" for the root): resolveRel of the
   * path they make, without taking that path apart again (a listing's entries, one by one).
   */
  Node resolveChild(String relDir, String name) throws FsException {
    try {
      return lookup(step(relDir), relDir.isEmpty() ? name : relDir + "/" + name, name);
    } catch (IOException e) {
      throw FsException.from(e);
    } catch (UncheckedIOException e) {
      throw FsException.from(e.getCause());
    }
  }

  /** The step of the directory {@code dir}: cached, or resolved from its nearest cached ancestor. */
  private Step step(String dir) throws FsException, IOException {
    if (dir.isEmpty()) {
      return rootStep;
    }
    Step cached = steps.getIfPresent(dir);
    if (cached != null) {
      return cached; // nearly always: no list of missing ancestors to make
    }
    java.util.ArrayDeque<String> missing = new java.util.ArrayDeque<>();
    Step s = null;
    String d = dir;
    while (!d.isEmpty() && (s = steps.getIfPresent(d)) == null) {
      missing.push(d);
      d = UnionView.parentOf(d);
    }
    if (s == null) {
      s = rootStep;
    }
    while (!missing.isEmpty()) {
      String sub = missing.pop();
      Node n = lookup(s, sub, UnionView.name(sub));
      if (!n.isDir()) {
        throw FsException.of(Posix.ENOTDIR, "/" + sub);
      }
      Loc up = null;
      boolean owned = false;
      if (n.upperAttr() != null && n.upperAttr().isDirectory()) {
        try {
          up = new Loc(RawFs.open(n.upper().dirfd(), n.upper().rel(),
              RawFs.O_PATH | RawFs.O_DIRECTORY | RawFs.O_NOFOLLOW, 0), "");
          owned = true;
        } catch (Posix.PosixException outOfDescriptors) {
          // EMFILE and the like: the path from the upper's root, which stays open, still works
          up = new Loc(upperRoot.dirfd(), sub);
        }
      }
      s = new Step(up, n.lowerDirPath(), owned);
      steps.put(sub, s);
    }
    return s;
  }

  /** Looks {@code name} up in the directory {@code at}; {@code sub} is the path it makes. */
  private Node lookup(Step at, String sub, String name) throws FsException, IOException {
    if (name.isEmpty() || name.equals(".") || name.equals("..")) {
      throw new FsException(Posix.EINVAL, "bad name in /" + sub);
    }
    if (Markers.isWhiteoutName(name)) {
      throw FsException.of(Posix.ENOENT, "/" + sub); // overlay markers are never visible
    }
    LowerTree.Entry le = lowerEntry(at.lower(), name);
    Loc u = null;
    Attr ua = null;
    if (at.upper() != null) {
      Loc cand = at.upper().child(name);
      ua = Stat.lstat(cand);
      if (Markers.isWhiteoutDevice(ua)) {
        throw FsException.of(Posix.ENOENT, "/" + sub);
      }
      if (ua != null) {
        u = cand;
      } else if (le != null && Markers.hasWhiteoutFile(at.upper(), name)) {
        throw FsException.of(Posix.ENOENT, "/" + sub);
      }
    }
    if (u == null && le == null) {
      throw FsException.of(Posix.ENOENT, "/" + sub);
    }
    // The lower entry is kept even when the upper hides it: removing or renaming the name
    // must then leave a whiteout. A lower directory shows through only below an upper
    // directory that is neither opaque nor renamed (an upper non-directory hides everything
    // below it); a renamed one shows the lower directory it was renamed from instead.
    String lowerDir = null;
    if (ua != null && ua.isDirectory()) {
      Markers.DirMarks m = marks(sub, u);
      if (m.redirect() != null) {
        lowerDir = redirected(at.lower(), m.redirect());
      } else if (le != null && le.isDir() && !m.opaque()) {
        lowerDir = join(at.lower(), name);
      }
    } else if (ua == null && le.isDir()) {
      lowerDir = join(at.lower(), name);
    }
    return new Node(sub, u, ua, le, lowerDir);
  }

  /** The entry {@code name} of the merged lower directory {@code dir}, or null. */
  private LowerTree.Entry lowerEntry(String dir, String name) {
    return dir == null ? null : lowerTree.entry(dir, name);
  }

  private static String join(String dir, String name) {
    return dir.isEmpty() ? name : dir + "/" + name;
  }

  /**
   * The lower directory a redirect names: an absolute one from the lower root, a relative one
   * (a name, as kernel overlayfs writes for a rename within one directory) beside the parent's
   * lower directory; null when nothing, or no directory, is there.
   */
  private String redirected(String parentLower, String redirect) {
    String target;
    if (redirect.startsWith("/")) {
      target = redirect.substring(1);
    } else if (parentLower != null) {
      target = join(parentLower, redirect);
    } else {
      return null;
    }
    if (target.isEmpty()) {
      return null;
    }
    int slash = target.lastIndexOf('/');
    LowerTree.Entry e = lowerEntry(slash < 0 ? "" : target.substring(0, slash),
        target.substring(slash + 1));
    return e != null && e.isDir() ? target : null;
  }

  private Markers.DirMarks marks(String rel, Loc dir) throws IOException {
    Markers.DirMarks cached = upperMarks.getIfPresent(rel);
    if (cached != null) {
      return cached;
    }
    Markers.DirMarks m = Markers.dirMarks(dir);
    upperMarks.put(rel, m);
    return m;
  }

  /** An upper file's number: its origin's if it was copied up, else its own. */
  long upperIno(Loc p, Attr a) throws IOException {
    byte[] origin = RawFs.lgetxattr(p.dirfd(), p.rel(), originXattr);
    return origin != null && origin.length == 8
        ? java.nio.ByteBuffer.wrap(origin).getLong() : UnionView.compose(0, a.ino());
  }

  /** Records whether the upper directory {@code rel} is opaque (the view just made it). */
  void opaque(String rel, boolean isOpaque) {
    upperMarks.put(rel, new Markers.DirMarks(isOpaque, null));
  }

  void forgetOpacity(String rel) {
    upperMarks.invalidate(rel);
  }

  /** A directory moved or went: every cached step and marker may be stale. */
  void forgetDirectories() {
    upperMarks.invalidateAll();
    steps.invalidateAll();
  }

  /** A directory was copied up: it has an upper directory now, neither opaque nor renamed. */
  void directoryCopiedUp(String rel) {
    upperMarks.put(rel, new Markers.DirMarks(false, null));
    steps.invalidate(rel);
  }

  int unusedDescriptors() {
    return unusedFds.size();
  }

  /** Closes the descriptors of dropped steps; only under the write lock, so none is in use. */
  void closeUnused() {
    Integer fd;
    while ((fd = unusedFds.poll()) != null) {
      RawFs.close(fd);
    }
  }

  /** The lookup's caches as numbers. */
  java.util.Map<String, Object> stats() {
    var o = upperMarks.stats();
    var d = steps.stats();
    java.util.Map<String, Object> marks = new java.util.LinkedHashMap<>();
    marks.put("hits", o.hitCount());
    marks.put("misses", o.missCount());
    marks.put("hitRate", o.hitRate());
    java.util.Map<String, Object> st = new java.util.LinkedHashMap<>();
    st.put("cached", steps.estimatedSize());
    st.put("hits", d.hitCount());
    st.put("misses", d.missCount());
    st.put("hitRate", d.hitRate());
    return java.util.Map.of("upperMarkers", marks, "directorySteps", st);
  }

  String report() {
    var o = upperMarks.stats();
    var d = steps.stats();
    return String.format("upper markers: hit rate %.1f%%; directory steps: %d cached,"
        + " hit rate %.1f%%", 100 * o.hitRate(), steps.estimatedSize(), 100 * d.hitRate());
  }

  void close() {
    steps.invalidateAll();
    closeUnused();
  }
}
