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
    if (n.upper() == null) {
      return lowerOnly(n); // nothing above to hide or replace a name: no maps to fill
    }
    Map<String, UnionView.DirEntry> out = new java.util.LinkedHashMap<>();
    java.util.Set<String> hidden = new java.util.HashSet<>();
    try {
      if (n.upper() != null) {
        {
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
            out.put(name, new UnionView.DirEntry(name, lookup.upperIno(c, a), a.type()));
          }
        }
      }
      String lowerPath = n.lowerDirPath();
      if (lowerPath != null) {
        LowerTree.Dir d = lowerTree.dir(lowerPath);
        if (d != null) {
          for (LowerTree.Entry e : d.entries().values()) {
            if (!out.containsKey(e.name()) && !hidden.contains(e.name())) {
              out.put(e.name(), new UnionView.DirEntry(e.name(), UnionView.compose(e.layer(), e.ino()), e.type()));
            }
          }
        }
      }
    } catch (IOException e) {
      throw FsException.from(e);
    } catch (UncheckedIOException e) {
      throw FsException.from(e.getCause());
    }
    return new ArrayList<>(out.values());
  }

  /** The listing of a directory that has no upper directory: its merged lower entries. */
  private List<UnionView.DirEntry> lowerOnly(Node n) throws FsException {
    String lowerPath = n.lowerDirPath();
    LowerTree.Dir d;
    try {
      d = lowerPath == null ? null : lowerTree.dir(lowerPath);
    } catch (UncheckedIOException e) {
      throw FsException.from(e.getCause());
    }
    if (d == null) {
      return new ArrayList<>();
    }
    List<UnionView.DirEntry> out = new ArrayList<>(d.entries().size());
    for (LowerTree.Entry e : d.entries().values()) {
      out.add(new UnionView.DirEntry(e.name(), UnionView.compose(e.layer(), e.ino()), e.type()));
    }
    return out;
  }
}
