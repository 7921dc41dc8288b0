package io.strata.union.view;

import io.strata.layers.fs.RawFs;
import java.io.IOException;

/** lstat of a real file, by statx relative to its layer, as the view's {@link Attr}. */
final class Stat {
  private Stat() {}

  /** The attributes of the file itself, or null when it does not exist. */
  static Attr lstat(Loc l) throws IOException {
    RawFs.Statx s = RawFs.lstat(l.dirfd(), l.rel());
    return s == null ? null : new Attr(s.ino(), s.mode(), s.nlink(), s.uid(), s.gid(), s.rdev(),
        s.size(), s.blocks(), s.atimeNanos(), s.mtimeNanos(), s.ctimeNanos(), false,
        s.btimeNanos());
  }
}
