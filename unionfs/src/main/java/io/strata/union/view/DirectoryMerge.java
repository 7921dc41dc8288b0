package io.strata.union.view;

import io.strata.layers.fs.RawFs;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * A directory of the union as readdir lists it: the upper directory's own entries (whiteouts
 * and markers hidden, the names they hide remembered), then the merged lower directory's
 * entries that the upper neither has nor hides, in kernel overlayfs's order.
 */
final class DirectoryMerge {
  private final Lookup lookup;
  private final LowerTree lowerTree;

  DirectoryMerge(Lookup lookup, LowerTree lowerTree) {
    this.lookup = lookup;
    this.lowerTree = lowerTree;
  }

  List<UnionView.DirEntry> list(Node n) throws FsException {
    try {
      // what the upper directory shows and hides; null without one (every directory of a cold
      // walk of an image), and then no maps are filled at all
      Map<String, UnionView.DirEntry> upper = null;
      java.util.Set<String> hidden = null;
      if (n.upper() != null) {
        upper = new java.util.LinkedHashMap<>();
        hidden = new java.util.HashSet<>();
        for (RawFs.DirEntry de : RawFs.list(n.upper().dirfd(), n.upper().rel())) {
          String name = de.name();
          Loc c = n.upper().child(name);
          if (Markers.isWhiteoutName(name)) {
            hidden.add(name.substring(Markers.WH_PREFIX.length()));
            continue;
          }
          Attr a = Stat.lstat(c);
          if (a == null) {
            continue;
          }
          if (Markers.isWhiteoutDevice(a)) {
            hidden.add(name);
            continue;
          }
          upper.put(name, new UnionView.DirEntry(name, lookup.upperIno(c, a), a.type()));
        }
      }
      List<UnionView.DirEntry> out = upper == null ? new ArrayList<>()
          : new ArrayList<>(upper.values());
      String lowerPath = n.lowerDirPath();
      LowerTree.Dir d = lowerPath == null ? null : lowerTree.dir(lowerPath);
      if (d != null) {
        for (LowerTree.Entry e : d.entries().values()) {
          if (upper == null || !upper.containsKey(e.name()) && !hidden.contains(e.name())) {
            out.add(new UnionView.DirEntry(e.name(), UnionView.compose(e.layer(), e.ino()),
                e.type()));
          }
        }
      }
      return out;
    } catch (IOException e) {
      throw FsException.from(e);
    } catch (UncheckedIOException e) {
      throw FsException.from(e.getCause());
    }
  }
}
