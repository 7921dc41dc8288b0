package io.strata.union.view;

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
 * Nothing here knows about the upper layer.
 */
final class LowerTree {
  /** One name in a merged lower directory: the topmost layer that has it wins. */
  record Entry(String name, int layer, Loc path, boolean isDir, List<Loc> dirs, Attr attr) {
    long ino() {
      return attr.ino();
    }

    int type() {
      return attr.type();
    }
  }

  /**
   * A merged lower directory: its entries by name, in the order kernel overlayfs lists them:
   * each layer's own order, top layer first, a name where it first appears.
   */
  record Dir(List<Loc> layers, Map<String, Entry> entries) {}

  private final List<Loc> roots; // top layer first: each layer's root directory, held open
  private final LoadingCache<String, Dir> dirs;

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

  private Dir load(String path) {
    try {
      if (path.isEmpty()) {
        return merge(new ArrayList<>(roots), true);
      }
      int slash = path.lastIndexOf('/');
      Dir parent = dir(slash < 0 ? "" : path.substring(0, slash));
      if (parent == null) {
        return null;
      }
      Entry e = parent.entries().get(path.substring(slash + 1));
      if (e == null || !e.isDir()) {
        return null;
      }
      return merge(e.dirs(), false);
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
          Attr a = Stat.lstat(child);
          if (a == null) {
            continue;
          }
          if (Markers.isWhiteoutDevice(a)) {
            hideBelow.add(name);
            continue;
          }
          Entry above = entries.get(name);
          boolean isDir = a.type() == Posix.S_IFDIR;
          if (above == null) {
            entries.put(name, new Entry(name, layer, child, isDir, null, a));
            if (isDir) {
              subdirs.computeIfAbsent(name, k -> new ArrayList<>()).add(child);
            } else {
              hideBelow.add(name);
            }
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
      out.put(e.getKey(), v.isDir()
          ? new Entry(v.name(), v.layer(), v.path(), true, List.copyOf(subdirs.get(e.getKey())),
              v.attr())
          : v);
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
