package io.strata.union.view;

import io.strata.layers.fs.Posix;
import io.strata.layers.fs.RawFs;
import io.strata.layers.fs.Trees;
import java.io.IOException;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongConsumer;

/**
 * Copy-up: bringing a lower node into the upper layer before it changes. A file is staged in
 * the work directory (data, or for a metadata-only change just its size, marked metacopy;
 * owner, mode, xattrs, times and its origin inode number), then renamed into place, so a
 * failure leaves nothing half-written in the upper. Parents go first. Called by
 * {@link UnionView} under its namespace write lock.
 */
final class CopyUp {
  private final UnionView view;
  private final Loc stagingRoot;
  private final Path staging;
  private final UnionView.Options opts;
  private final String originXattr;
  private final String metacopyXattr;
  private final AtomicLong tmpNames = new AtomicLong();
  private volatile LongConsumer listener = ino -> { };

  CopyUp(UnionView view, Loc stagingRoot, Path staging, UnionView.Options opts,
      String originXattr, String metacopyXattr) {
    this.view = view;
    this.stagingRoot = stagingRoot;
    this.staging = staging;
    this.opts = opts;
    this.originXattr = originXattr;
    this.metacopyXattr = metacopyXattr;
  }

  /** Whom to tell the inode number of each node copied up (see {@link UnionView#onCopyUp}). */
  void onCopyUp(LongConsumer l) {
    listener = l;
  }

  boolean isMetacopy(Loc p) throws IOException {
    return RawFs.lgetxattr(p.dirfd(), p.rel(), metacopyXattr) != null;
  }

  /**
   * Makes sure {@code n} exists in the upper layer and returns its upper path. Parents are
   * copied up first. A file is staged in the work directory with data (or, for
   * {@code withData == false}, only its size, marked metacopy), owner, mode, xattrs, times and
   * origin, then renamed into place, so a failure leaves nothing half-written in the upper.
   */
  Loc copyUp(Node n, boolean withData) throws FsException {
    try {
      if (n.upper() != null) {
        if (withData && !n.upperAttr().isDirectory() && isMetacopy(n.upper())) {
          return completeMetacopy(n);
        }
        return n.upper();
      }
      Loc parent = copyUp(view.resolveRel(UnionView.parentOf(n.path())), false);
      Loc src = n.lower().path();
      Attr a = Stat.lstat(src);
      Loc tmp = stagingRoot.child("copyup-" + tmpNames.incrementAndGet());
      try {
        boolean meta = false;
        switch (a.type()) {
          case Posix.S_IFDIR:
            RawFs.mkdir(tmp.dirfd(), tmp.rel(), 0700);
            break;
          case Posix.S_IFLNK:
            RawFs.symlink(RawFs.readlink(src.dirfd(), src.rel()), tmp.dirfd(), tmp.rel());
            break;
          case Posix.S_IFREG:
            meta = !withData && a.size() > 0;
            copyFile(src, tmp, a, meta);
            break;
          default:
            RawFs.mknod(tmp.dirfd(), tmp.rel(), a.type() | 0600, (int) ((a.rdev() >>> 8) & 0xfff),
                (int) ((a.rdev() & 0xff) | ((a.rdev() >>> 12) & 0xfff00)));
        }
        // A lower file with other names keeps its number only while below: the copy breaks the
        // link, and kernel overlayfs (without index) then reports the upper file's own number.
        boolean breaksLink = a.type() != Posix.S_IFDIR && a.nlink() > 1;
        copyMetadata(src, tmp, a, breaksLink ? -1 : UnionView.compose(n.lower().layer(), a.ino()));
        if (meta) {
          RawFs.lsetxattr(tmp.dirfd(), tmp.rel(), metacopyXattr, new byte[0]);
        }
        Loc target = parent.child(UnionView.name(n.path()));
        RawFs.rename(tmp.dirfd(), tmp.rel(), target.dirfd(), target.rel(), 0);
        if (a.type() == Posix.S_IFDIR) {
          view.directoryCopiedUp(n.path()); // it has an upper directory now
        } else if (a.type() == Posix.S_IFREG && !meta) {
          view.dataCopiedUp(n.path(), target);
        }
        listener.accept(UnionView.compose(n.lower().layer(), a.ino()));
        return target;
      } catch (IOException | FsException | RuntimeException e) {
        Trees.deleteRecursively(staging.resolve(tmp.rel()));
        throw e;
      }
    } catch (IOException e) {
      throw FsException.from(e);
    }
  }

  /** Replaces a metacopy upper file with a full copy, keeping its (newer) metadata. */
  private Loc completeMetacopy(Node n) throws IOException, FsException {
    Loc tmp = stagingRoot.child("copyup-" + tmpNames.incrementAndGet());
    Loc up = n.upper();
    try {
      Attr meta = Stat.lstat(up);
      copyFile(n.lower().path(), tmp, meta, false);
      copyMetadata(up, tmp, meta, -1); // private xattrs, metacopy among them, stay behind
      byte[] origin = RawFs.lgetxattr(up.dirfd(), up.rel(), originXattr);
      if (origin != null) {
        RawFs.lsetxattr(tmp.dirfd(), tmp.rel(), originXattr, origin);
      }
      RawFs.rename(tmp.dirfd(), tmp.rel(), up.dirfd(), up.rel(), 0);
      view.dataCopiedUp(n.path(), up);
      listener.accept(view.upperInode(up));
      return up;
    } catch (IOException | FsException | RuntimeException e) {
      Trees.deleteRecursively(staging.resolve(tmp.rel()));
      throw e;
    }
  }

  private void copyFile(Loc src, Loc tmp, Attr a, boolean sizeOnly) throws FsException {
    int out = Io.open(tmp, Io.O_WRONLY | Io.O_CREAT | Io.O_EXCL, 0600);
    try {
      if (sizeOnly) {
        Io.check(Io.LIBC.ftruncate(out, a.size()), "ftruncate " + tmp);
      } else {
        int in = Io.open(src, Io.O_RDONLY, 0);
        try {
          Io.copyData(in, out, a.size(), src.toString());
        } finally {
          Io.close(in);
        }
        if (opts.fsync()) {
          Io.check(Io.LIBC.fsync(out), "fsync " + tmp);
        }
      }
    } finally {
      Io.close(out);
    }
  }

  /** Owner, mode, xattrs (not the overlay's own), times and the origin inode number. */
  private void copyMetadata(Loc src, Loc dst, Attr a, long originIno) throws IOException {
    RawFs.lchown(dst.dirfd(), dst.rel(), a.uid(), a.gid());
    if (a.type() != Posix.S_IFLNK) {
      RawFs.chmod(dst.dirfd(), dst.rel(), a.mode() & 07777);
    }
    if (opts.xattrs()) {
      for (String x : RawFs.llistxattr(src.dirfd(), src.rel())) {
        if (!Markers.isPrivateXattr(x)) {
          byte[] v = RawFs.lgetxattr(src.dirfd(), src.rel(), x);
          if (v != null) {
            RawFs.lsetxattr(dst.dirfd(), dst.rel(), x, v);
          }
        }
      }
    }
    if (originIno >= 0) {
      RawFs.lsetxattr(dst.dirfd(), dst.rel(), originXattr,
          java.nio.ByteBuffer.allocate(8).putLong(originIno).array());
    }
    RawFs.lutimes(dst.dirfd(), dst.rel(), a.atimeNanos(), a.mtimeNanos());
  }

}
