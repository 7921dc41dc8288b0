package io.strata.union.view;

import com.github.benmanes.caffeine.cache.Cache;
import com.github.benmanes.caffeine.cache.Caffeine;
import com.github.benmanes.caffeine.cache.LoadingCache;
import com.github.benmanes.caffeine.cache.stats.CacheStats;
import io.strata.layers.fs.Posix;
import io.strata.layers.fs.RawFs;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.HashMap;
import java.util.LinkedHashMap;

/**
 * The merged view of the lower layers, which never change while mounted: each directory is
 * merged once (whiteouts and opaque markers applied) and kept in a bounded Caffeine cache.
 * A lookup in a directory not merged yet looks its name up layer by layer instead, as kernel
 * overlayfs does ({@link #entry}): listings merge, lookups need not. Nothing here knows about
 * the upper layer.
 */
final class LowerTree {
  /**
   * One name in a merged lower directory: the topmost layer that has it wins. Its attributes
   * are read on first use, not at the merge (the directory's own listing gives its type): a
   * container's start looks up a few names in /usr/bin and /usr/lib, whose merges stat'ed
   * every entry of every fresh mount.
   */
  static final class Entry {
    private final String name;
    private final int layer;
    private final Loc path;
    private final boolean isDir;
    private final List<Loc> dirs;
    private final int type;
    private volatile Attr attr;

    /** An entry whose attributes are known. */
    Entry(String name, int layer, Loc path, boolean isDir, List<Loc> dirs, Attr attr) {
      this(name, layer, path, isDir, dirs, attr.type(), attr);
    }

    private Entry(String name, int layer, Loc path, boolean isDir, List<Loc> dirs, int type,
        Attr attr) {
      this.name = name;
      this.layer = layer;
      this.path = path;
      this.isDir = isDir;
      this.dirs = dirs;
      this.type = type;
      this.attr = attr;
    }

    /** An entry of the type its directory listing gave (S_IF*), its attributes read later. */
    static Entry listed(String name, int layer, Loc path, int type) {
      return new Entry(name, layer, path, type == Posix.S_IFDIR, null, type, null);
    }

    /** This directory entry with the real directories merged below it. */
    Entry withDirs(List<Loc> below) {
      return new Entry(name, layer, path, true, below, type, attr);
    }

    String name() {
      return name;
    }

    int layer() {
      return layer;
    }

    Loc path() {
      return path;
    }

    boolean isDir() {
      return isDir;
    }

    List<Loc> dirs() {
      return dirs;
    }

    /**
     * Its attributes (lower layers never change while mounted: read once). A file gone from
     * its layer since the merge is an UncheckedIOException, as a failed merge is.
     */
    Attr attr() {
      Attr a = attr;
      if (a == null) {
        try {
          a = Stat.lstat(path);
        } catch (IOException e) {
          throw new UncheckedIOException(e);
        }
        if (a == null) {
          throw new UncheckedIOException(new java.nio.file.NoSuchFileException(
              RawFs.display(path.rel()), null, "gone from its lower layer while mounted"));
        }
        attr = a;
      }
      return a;
    }

    long ino() {
      return attr().ino();
    }

    int type() {
      return type;
    }
  }

  /** The S_IF* type of a directory entry's d_type, or -1 when the listing does not say. */
  private static int typeOf(int dtype) {
    return switch (dtype) {
      case 1 -> Posix.S_IFIFO;
      case 4 -> Posix.S_IFDIR;
      case 6 -> Posix.S_IFBLK;
      case 8 -> Posix.S_IFREG;
      case 10 -> Posix.S_IFLNK;
      case 12 -> Posix.S_IFSOCK;
      default -> -1; // DT_CHR (a whiteout?) and DT_UNKNOWN: stat'ed at the merge
    };
  }

  /**
   * A merged lower directory: its entries by name, in the order kernel overlayfs lists them:
   * each layer's own order, top layer first, a name where it first appears.
   */
  record Dir(List<Loc> layers, Map<String, Entry> entries) {}

  private final List<Loc> roots; // top layer first: each layer's root directory, held open
  private final LoadingCache<String, Dir> dirs;
  /**
   * Names looked up one by one in directories not merged when asked, by path: the entry, or
   * {@link #NONE}. Agrees with the merge (the same rules, on layers that do not change).
   */
  private final Cache<String, Object> named;
  /** The real directories of a directory not merged, top first, up to an opaque one. */
  private final Cache<String, List<Loc>> layersOf;
  private static final Object NONE = new Object();
  private volatile List<Loc> rootLayers;

  // ---------------------------------------------------------------- sharing

  /**
   * Which lowers a tree merges: each root's device, inode, ctime and birth time, top first, and
   * the bound. The times tell a directory from one made later at a reused inode number.
   */
  private record Key(List<String> roots, long maxEntries) {}

  /** A shared tree, its roots (opened once for all its users) and how many views use it. */
  private static final class Shared {
    final LowerTree tree;
    int users;
    /** Every view of it said its lowers never change (see {@link #acquire}). */
    boolean keep;
    /** When the last view let it go (System.nanoTime), for a kept tree. */
    long idleSince;

    Shared(LowerTree tree, boolean keep) {
      this.tree = tree;
      this.keep = keep;
    }
  }

  private static final Map<Key, Shared> SHARED = new HashMap<>();
  /** Kept trees no view uses, least recently let go first; their roots parked. */
  private static final LinkedHashMap<Key, Shared> KEPT = new LinkedHashMap<>();
  /** At most this many kept trees; each goes this long after its last view. */
  static final int MAX_KEPT = 8;
  static final long KEEP_NANOS = 60_000_000_000L;

  /**
   * The tree of {@code lowers} (top first), shared by every view of this process over the
   * same directories: fifty mounts of one image merge each lower directory once and hold it
   * once (the strata daemon serves them all). Lower layers do not change while mounted (the
   * rule kernel overlayfs states too), so what one mount merged holds for the others. Its
   * roots are opened here, once; {@link #release} closes them after the last view.
   *
   * <p>{@code immutable}: the lowers never change at all, not even between mounts (layers of
   * strata's store, of containers/storage, containerd's committed snapshots). Such a tree
   * outlives its last view by up to a minute, its merged directories and looked-up names
   * kept, so that the next mount of the same layers (podman's next container, the next pod)
   * starts warm. Its roots are not held open meanwhile: their descriptors' numbers are parked
   * on /dev/null, so no filesystem stays busy, and opened again by path when a view comes back
   * to the same directories (same device, inode, ctime and birth time).
   */
  static LowerTree acquire(List<java.nio.file.Path> lowers, long maxEntries, boolean immutable)
      throws IOException {
    // a tree in use: one statx a lower, nothing opened (fifty mounts of one image)
    List<String> named = new ArrayList<>();
    for (java.nio.file.Path l : lowers) {
      named.add(identity(RawFs.stat(l)));
    }
    synchronized (LowerTree.class) {
      Shared s = SHARED.get(new Key(List.copyOf(named), maxEntries));
      if (s != null) {
        s.keep &= immutable;
        s.users++;
        return s.tree;
      }
    }
    // else the directories opened, and known by what is open (a kept tree is taken back only
    // for the very directories it merged)
    List<Loc> opened = new ArrayList<>();
    List<String> ids = new ArrayList<>();
    try {
      for (java.nio.file.Path l : lowers) {
        int fd = RawFs.open(RawFs.AT_FDCWD, RawFs.raw(l), RawFs.O_PATH | RawFs.O_DIRECTORY, 0);
        opened.add(new Loc(fd, ""));
        ids.add(identity(RawFs.lstat(fd, "")));
      }
    } catch (IOException | RuntimeException e) {
      opened.forEach(r -> RawFs.close(r.dirfd()));
      throw e;
    }
    Key key = new Key(List.copyOf(ids), maxEntries);
    List<Shared> drop = new ArrayList<>();
    try {
      synchronized (LowerTree.class) {
        Shared s = SHARED.get(key);
        Shared kept = s == null ? KEPT.remove(key) : null;
        if (kept != null && immutable && unpark(kept.tree, opened)) {
          kept.tree.reused++;
          SHARED.put(key, kept);
          s = kept;
        } else if (kept != null) {
          drop.add(kept); // a view that does not vouch for the lowers reads them afresh
        }
        Shared old = expired(System.nanoTime());
        if (old != null) {
          drop.add(old);
        }
        if (s == null) {
          s = new Shared(new LowerTree(opened, maxEntries), immutable);
          s.tree.key = key;
          SHARED.put(key, s);
          opened = List.of(); // the tree's own now
        }
        s.keep &= immutable;
        s.users++;
        return s.tree;
      }
    } finally {
      opened.forEach(r -> RawFs.close(r.dirfd()));
      drop.forEach(d -> d.tree.close());
    }
  }

  /** A directory as a tree's key names it: device, inode, ctime and birth time. */
  private static String identity(RawFs.Statx st) {
    return st.dev() + ":" + st.ino() + ":" + st.ctimeNanos() + ":" + st.btimeNanos();
  }

  /** A kept tree's parked numbers become its directories again, {@code opened} just now. */
  private static boolean unpark(LowerTree tree, List<Loc> opened) {
    try {
      for (int i = 0; i < opened.size(); i++) {
        RawFs.dup3(opened.get(i).dirfd(), tree.roots.get(i).dirfd());
      }
      return true;
    } catch (IOException e) {
      return false; // closed instead, and a tree made afresh
    }
  }

  /** A view is done with a tree from {@link #acquire}; the last one closes its roots. */
  static void release(LowerTree tree) {
    Shared closing = null;
    Shared drop = null;
    synchronized (LowerTree.class) {
      Shared s = SHARED.get(tree.key);
      if (s == null || s.tree != tree || --s.users > 0) {
        return;
      }
      SHARED.remove(tree.key);
      long now = System.nanoTime();
      if (s.keep && park(tree)) {
        s.idleSince = now;
        KEPT.put(tree.key, s);
        if (KEPT.size() > MAX_KEPT) {
          var first = KEPT.entrySet().iterator();
          drop = first.next().getValue();
          first.remove();
        }
      } else {
        closing = s;
      }
    }
    if (closing != null) {
      closing.tree.close();
    }
    if (drop != null) {
      drop.tree.close();
    }
  }

  /** Takes out the first kept tree whose time is up (one a call is enough: calls are often). */
  private static Shared expired(long now) {
    var first = KEPT.entrySet().iterator();
    if (first.hasNext()) {
      Shared s = first.next().getValue();
      if (now - s.idleSince >= KEEP_NANOS) {
        first.remove();
        return s;
      }
    }
    return null;
  }

  /**
   * Closes the kept trees whose time is up ({@code all}: every kept tree); true if it closed
   * any, so that a daemon may give the memory back.
   */
  static boolean dropKept(boolean all) {
    List<Shared> drop = new ArrayList<>();
    synchronized (LowerTree.class) {
      long now = System.nanoTime();
      for (var it = KEPT.values().iterator(); it.hasNext(); ) {
        Shared s = it.next();
        if (all || now - s.idleSince >= KEEP_NANOS) {
          drop.add(s);
          it.remove();
        }
      }
    }
    drop.forEach(s -> s.tree.close());
    return !drop.isEmpty();
  }

  /** How many trees are kept for the next mount of their layers. */
  static synchronized int keptTrees() {
    return KEPT.size();
  }

  /** An O_PATH descriptor of /dev/null: a directory's number rests on it while kept. */
  private static int parking = -1;

  /** Parks the roots' numbers (so their filesystems are not held); false if it cannot. */
  private static boolean park(LowerTree tree) {
    try {
      if (parking < 0) {
        parking = RawFs.open(RawFs.AT_FDCWD, "/dev/null", RawFs.O_PATH, 0);
      }
      for (Loc r : tree.roots) {
        RawFs.dup3(parking, r.dirfd());
      }
      return true;
    } catch (IOException e) {
      return false; // closed instead (a parked half is closed the same way)
    }
  }

  /** Drops the caches and closes the roots (parked or not). */
  private void close() {
    dirs.invalidateAll();
    named.invalidateAll();
    layersOf.invalidateAll();
    for (Loc r : roots) {
      RawFs.close(r.dirfd());
    }
  }

  /** How many views use this tree (1 for one not shared). */
  static synchronized int users(LowerTree tree) {
    Shared s = tree.key == null ? null : SHARED.get(tree.key);
    return s == null ? 1 : s.users;
  }

  /** How often this tree was taken back after its last view had gone. */
  private long reused;

  long reused() {
    return reused;
  }

  private Key key; // set for a shared tree

  /** The layers' roots, top first (for a shared tree, opened by it). */
  List<Loc> roots() {
    return roots;
  }

  /**
   * @param roots the lower layers' root directories (descriptors), top first
   * @param maxEntries bound on the entries held by cached directories
   */
  LowerTree(List<Loc> roots, long maxEntries) {
    this.roots = List.copyOf(roots);
    this.dirs = Caffeine.newBuilder()
        .maximumWeight(maxEntries)
        .weigher((String k, Dir d) -> 1 + d.entries().size())
        .recordStats()
        .build(this::load);
    this.named = Caffeine.newBuilder().maximumSize(Math.max(1, maxEntries)).build();
    this.layersOf = Caffeine.newBuilder().maximumSize(10_000).build();
  }

  /**
   * The entry {@code name} of the merged lower directory {@code dir}, or null: from the merged
   * directory when one is cached, else looked up layer by layer, top first, as kernel
   * overlayfs looks a name up: a fresh mount's first lookups (a container's start asks for a
   * few names in /usr/bin and /usr/lib) cost a few fstatat calls each rather than a merge of
   * every directory they pass (a median LOOKUP of 131 µs on a fresh mount of Debian, up to 2
   * ms). An I/O failure surfaces as UncheckedIOException, as a failed merge does.
   */
  Entry entry(String dir, String name) {
    if (Markers.isWhiteoutName(name)) {
      return null; // a marker, never an entry
    }
    Dir d = dirs.asMap().get(dir); // a peek: the merges' hit rate counts merges only
    if (d != null) {
      return d.entries().get(name);
    }
    String path = dir.isEmpty() ? name : dir + "/" + name;
    Object e = named.getIfPresent(path);
    if (e == null) {
      List<Loc> layers = layers(dir);
      try {
        Entry found = layers == null ? null : lookUp(layers, name);
        e = found == null ? NONE : found;
      } catch (IOException x) {
        throw new UncheckedIOException(x);
      }
      named.put(path, e);
    }
    return e == NONE ? null : (Entry) e;
  }

  /**
   * The real directories that make up the merged lower directory {@code path}, top first and
   * up to the first opaque one (what {@link Dir#layers} holds once merged), or null when no
   * lower directory is there. Found without merging.
   */
  List<Loc> layers(String path) {
    Dir d = dirs.asMap().get(path);
    if (d != null) {
      return d.layers();
    }
    try {
      if (path.isEmpty()) {
        List<Loc> r = rootLayers;
        if (r == null) {
          rootLayers = r = upToOpaque(roots, true);
        }
        return r;
      }
      List<Loc> l = layersOf.getIfPresent(path);
      if (l == null) {
        int slash = path.lastIndexOf('/');
        Entry e = entry(slash < 0 ? "" : path.substring(0, slash), path.substring(slash + 1));
        if (e == null || !e.isDir()) {
          return null;
        }
        l = upToOpaque(e.dirs(), false);
        layersOf.put(path, l);
      }
      return l;
    } catch (IOException x) {
      throw new UncheckedIOException(x);
    }
  }

  /**
   * The directories a merge would list: each in turn, up to and with the first opaque one (at
   * the root only the {@code .wh..wh..opq} file counts, as in {@link #merge}).
   */
  private static List<Loc> upToOpaque(List<Loc> layerDirs, boolean isRoot) throws IOException {
    List<Loc> used = new ArrayList<>();
    for (Loc dir : layerDirs) {
      used.add(dir);
      if (isRoot ? Stat.lstat(dir.child(Markers.OPAQUE_FILE)) != null : Markers.isOpaque(dir)) {
        break;
      }
    }
    return List.copyOf(used);
  }

  /**
   * {@code name} in the real directories {@code layerDirs} (top first), by the merge's rules:
   * the topmost wins; a whiteout (a 0/0 device, or a {@code .wh.} file beside it) hides it
   * below its layer; a non-directory hides everything below; directories below a directory
   * merge with it.
   */
  private Entry lookUp(List<Loc> layerDirs, String name) throws IOException {
    Entry found = null;
    List<Loc> below = null;
    String whiteout = Markers.whiteoutFile(name);
    for (Loc dir : layerDirs) {
      Loc child = dir.child(name);
      Attr a = Stat.lstat(child);
      if (a != null) {
        if (Markers.isWhiteoutDevice(a)) {
          break;
        }
        boolean isDir = a.type() == Posix.S_IFDIR;
        if (found == null) {
          found = new Entry(name, layerIndex(dir), child, isDir, null, a);
          if (!isDir) {
            break;
          }
          below = new ArrayList<>();
          below.add(child);
        } else if (isDir) {
          below.add(child);
        } else {
          break;
        }
      }
      if (whiteout != null && Stat.lstat(dir.child(whiteout)) != null) {
        break;
      }
    }
    return found != null && found.isDir() ? found.withDirs(List.copyOf(below)) : found;
  }

  /** The merged lower directory at {@code path} ("" is the root), or null if none. */
  Dir dir(String path) {
    return dirs.get(path); // an I/O failure while merging surfaces as UncheckedIOException
  }

  CacheStats stats() {
    return dirs.stats();
  }

  long cachedDirectories() {
    return dirs.estimatedSize();
  }

  /** Names looked up one by one and kept (positive and negative). */
  long cachedNames() {
    return named.estimatedSize();
  }

  /**
   * Merges the directory {@code path}, its real directories found by name ({@link #layers}):
   * not through the parent's merge, which would load the cache from within its own loading
   * (Caffeine refuses that: "Recursive update") and merge every directory above it.
   */
  private Dir load(String path) {
    try {
      if (path.isEmpty()) {
        return merge(new ArrayList<>(roots), true);
      }
      List<Loc> layers = layers(path);
      return layers == null ? null : merge(layers, false);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /**
   * Merges the real directories of one path across layers, top first. A layer's whiteouts hide
   * that name in the layers below; a non-directory hides everything below it; an opaque
   * directory ends the merge. Directory entries carry the real directories below that are
   * still visible, so their own merge needs no more lookups.
   */
  private Dir merge(List<Loc> layerDirs, boolean isRoot) throws IOException {
    Map<String, Entry> entries = new LinkedHashMap<>();
    Map<String, List<Loc>> subdirs = new HashMap<>();
    Set<String> hidden = new HashSet<>();
    List<Loc> used = new ArrayList<>();
    for (Loc dir : layerDirs) {
      int layer = layerIndex(dir);
      used.add(dir);
      Set<String> hideBelow = new HashSet<>();
      boolean opaque = false;
      {
        for (RawFs.DirEntry de : RawFs.list(dir.dirfd(), dir.rel())) {
          String name = de.name();
          Loc child = dir.child(name);
          if (name.equals(Markers.OPAQUE_FILE)) {
            opaque = true;
            continue;
          }
          if (Markers.isWhiteoutName(name)) {
            hideBelow.add(name.substring(Markers.WH_PREFIX.length()));
            continue;
          }
          if (hidden.contains(name)) {
            continue;
          }
          int type = typeOf(de.type());
          Attr a = null;
          if (type < 0) {
            a = Stat.lstat(child);
            if (a == null) {
              continue;
            }
            if (Markers.isWhiteoutDevice(a)) {
              hideBelow.add(name);
              continue;
            }
            type = a.type();
          }
          Entry above = entries.get(name);
          boolean isDir = type == Posix.S_IFDIR;
          if (above == null) {
            entries.put(name, a != null ? new Entry(name, layer, child, isDir, null, a)
                : Entry.listed(name, layer, child, type));
            if (isDir) {
              subdirs.computeIfAbsent(name, k -> new ArrayList<>()).add(child);
            }
            // a file needs no entry in hideBelow: the same name below finds it above and is
            // dropped by the last branch (which records the name, for the layers below that)
          } else if (above.isDir() && isDir && !hidden.contains(name)) {
            subdirs.get(name).add(child); // merged with the directory above
          } else {
            hideBelow.add(name);
          }
        }
      }
      if (!opaque && !isRoot) {
        opaque = Markers.isOpaque(dir);
      }
      hidden.addAll(hideBelow);
      if (opaque) {
        break;
      }
    }
    // A directory below an opaque one, or below a whiteout, stops contributing.
    Map<String, Entry> out = new LinkedHashMap<>(entries.size() * 2);
    for (Map.Entry<String, Entry> e : entries.entrySet()) {
      Entry v = e.getValue();
      out.put(e.getKey(), v.isDir() ? v.withDirs(List.copyOf(subdirs.get(e.getKey()))) : v);
    }
    return new Dir(List.copyOf(used), Collections.unmodifiableMap(out));
  }

  /** 1-based index of the layer a real directory belongs to (0 is the upper layer). */
  int layerIndex(Loc realDir) {
    for (int i = 0; i < roots.size(); i++) {
      if (realDir.dirfd() == roots.get(i).dirfd()) {
        return i + 1;
      }
    }
    throw new IllegalStateException(realDir + " is in no lower layer");
  }
}
