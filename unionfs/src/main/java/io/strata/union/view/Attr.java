package io.strata.union.view;

import io.strata.layers.fs.Posix;

/**
 * What stat(2) reports for a node of the view; times are nanoseconds since 1970.
 * {@code lowerLink} marks a file of a lower layer that has other names there: a copy-up through
 * one name breaks the link (as kernel overlayfs without index=on does), so a transport must
 * not let the kernel treat its names as one inode.
 */
public record Attr(long ino, int mode, long nlink, int uid, int gid, long rdev, long size,
    long blocks, long atimeNanos, long mtimeNanos, long ctimeNanos, boolean lowerLink,
    long btimeNanos) {

  /** The birth time of a file whose filesystem keeps none. */
  public static final long NO_BTIME = io.strata.layers.fs.RawFs.Statx.NO_BTIME;

  public Attr(long ino, int mode, long nlink, int uid, int gid, long rdev, long size,
      long blocks, long atimeNanos, long mtimeNanos, long ctimeNanos) {
    this(ino, mode, nlink, uid, gid, rdev, size, blocks, atimeNanos, mtimeNanos, ctimeNanos,
        false, NO_BTIME);
  }

  /** Whether the birth time is known. */
  public boolean hasBtime() {
    return btimeNanos != NO_BTIME;
  }

  public int type() {
    return mode & Posix.S_IFMT;
  }

  public boolean isDirectory() {
    return type() == Posix.S_IFDIR;
  }

  Attr withIno(long newIno) {
    return new Attr(newIno, mode, nlink, uid, gid, rdev, size, blocks, atimeNanos, mtimeNanos,
        ctimeNanos, lowerLink, btimeNanos);
  }

  Attr withNlink(long n) {
    return new Attr(ino, mode, n, uid, gid, rdev, size, blocks, atimeNanos, mtimeNanos,
        ctimeNanos, lowerLink, btimeNanos);
  }

  Attr withSize(long newSize) {
    return new Attr(ino, mode, nlink, uid, gid, rdev, newSize, blocks, atimeNanos, mtimeNanos,
        ctimeNanos, lowerLink, btimeNanos);
  }

  Attr withLowerLink() {
    return new Attr(ino, mode, nlink, uid, gid, rdev, size, blocks, atimeNanos, mtimeNanos,
        ctimeNanos, true, btimeNanos);
  }
}
