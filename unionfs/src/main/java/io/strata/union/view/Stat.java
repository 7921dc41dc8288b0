package io.strata.union.view;

import io.strata.layers.fs.RawFs;
import java.io.IOException;

/** lstat of a real file, by statx relative to its layer, as the view's {@link Attr}. */
final class Stat {
  private Stat() {}

  /** The attributes of the file itself, or null when it does not exist. */
  static Attr lstat(Loc l) throws IOException {
    return RawFs.lstat(l.dirfd(), l.rel(), Stat::attr);
  }

  private static Attr attr(long ino, int mode, long nlink, int uid, int gid, long rdev,
      long size, long blocks, long atime, long mtime, long ctime, long dev, long btime) {
    return new Attr(ino, mode, nlink, uid, gid, rdev, size, blocks, atime, mtime, ctime, false,
        btime);
  }
}
