package io.strata.union;

import io.strata.layers.Posix;

/** What stat(2) reports for a node of the view; times are nanoseconds since 1970. */
public record Attr(long ino, int mode, long nlink, int uid, int gid, long rdev, long size,
    long blocks, long atimeNanos, long mtimeNanos, long ctimeNanos) {

  public int type() {
    return mode & Posix.S_IFMT;
  }

  public boolean isDirectory() {
    return type() == Posix.S_IFDIR;
  }

  Attr withIno(long newIno) {
    return new Attr(newIno, mode, nlink, uid, gid, rdev, size, blocks, atimeNanos, mtimeNanos,
        ctimeNanos);
  }

  Attr withNlink(long n) {
    return new Attr(ino, mode, n, uid, gid, rdev, size, blocks, atimeNanos, mtimeNanos, ctimeNanos);
  }

  Attr withSize(long newSize) {
    return new Attr(ino, mode, nlink, uid, gid, rdev, newSize, blocks, atimeNanos, mtimeNanos,
        ctimeNanos);
  }
}
