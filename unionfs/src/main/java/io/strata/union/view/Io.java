package io.strata.union.view;

import io.strata.layers.fs.Posix;
import java.io.IOException;
import jnr.ffi.LibraryLoader;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import jnr.ffi.annotations.SaveError;
import jnr.ffi.byref.LongLongByReference;

/**
 * File-descriptor I/O through libc, so that FUSE reads and writes go straight between the
 * kernel's buffer and the real file (pread/pwrite on the FUSE pointer, no Java copy), and
 * copy-up uses copy_file_range over the data regions only (holes stay holes).
 */
public final class Io {
  /** The libc calls bound here. */
  public interface C {
    @SaveError int open(String path, int flags, int mode);

    @SaveError int close(int fd);

    @SaveError long pread(int fd, Pointer buf, long count, long offset);

    @SaveError long pwrite(int fd, Pointer buf, long count, long offset);

    @SaveError int fsync(int fd);

    @SaveError int dup3(int oldfd, int newfd, int flags);

    @SaveError int fdatasync(int fd);

    @SaveError int ftruncate(int fd, long length);

    @SaveError int fchown(int fd, int uid, int gid);

    @SaveError int fchmod(int fd, int mode);

    @SaveError int fallocate(int fd, int mode, long offset, long len);

    @SaveError long lseek(int fd, long offset, int whence);

    @SaveError long copy_file_range(int fdIn, LongLongByReference offIn, int fdOut,
        LongLongByReference offOut, long len, int flags);
  }

  public static final int O_RDONLY = 0;
  public static final int O_WRONLY = 1;
  static final int O_RDWR = 2;
  static final int O_ACCMODE = 3;
  static final int O_CREAT = 0100;
  static final int O_EXCL = 0200;
  static final int O_TRUNC = 01000;
  static final int O_CLOEXEC = 02000000;
  static final int O_DIRECTORY = 0200000;
  /** O_TMPFILE as open(2) takes it (with O_DIRECTORY's bit). */
  static final int O_TMPFILE = 020200000;
  /**
   * Not passed on to the real file: the kernel already serves an O_DIRECT open of a FUSE file
   * uncached, and the real file would then demand aligned buffers and offsets, which the FUSE
   * request's buffer does not promise (EINVAL, where both peers accept the flag).
   */
  static final int O_DIRECT = 040000;
  static final int SEEK_DATA = 3;
  static final int SEEK_HOLE = 4;
  static final int ENXIO = 6;

  static final C LIBC = LibraryLoader.create(C.class).load("c");
  private static final Runtime RUNTIME = Runtime.getRuntime(LIBC);

  private Io() {}

  static int errno() {
    return jnr.ffi.LastError.getLastError(RUNTIME);
  }

  static int open(Loc p, int flags, int mode) throws FsException {
    try {
      return io.strata.layers.fs.RawFs.open(p.dirfd(), p.rel(), flags, mode);
    } catch (IOException e) {
      throw FsException.from(e);
    }
  }

  static void close(int fd) {
    LIBC.close(fd);
  }

  static void check(long rc, String what) throws FsException {
    if (rc < 0) {
      throw FsException.of(errno(), what);
    }
  }

  /**
   * Copies the data regions of {@code in} to {@code out} at the same offsets with
   * copy_file_range, then sets the length, so a sparse file stays sparse.
   */
  static void copyData(int in, int out, long size, String what) throws FsException {
    long pos = 0;
    while (pos < size) {
      long data = LIBC.lseek(in, pos, SEEK_DATA);
      if (data < 0) {
        if (errno() == ENXIO) {
          break; // only a hole is left
        }
        data = pos; // SEEK_DATA unsupported: copy everything
      }
      long hole = LIBC.lseek(in, data, SEEK_HOLE);
      if (hole < 0) {
        hole = size;
      }
      LongLongByReference offIn = new LongLongByReference(data);
      LongLongByReference offOut = new LongLongByReference(data);
      long left = Math.min(hole, size) - data;
      while (left > 0) {
        long n = LIBC.copy_file_range(in, offIn, out, offOut, left, 0);
        if (n < 0) {
          int e = errno();
          if (e == Posix.EXDEV || e == Posix.ENOSYS || e == Posix.EOPNOTSUPP || e == Posix.EINVAL) {
            // Across filesystems (on older kernels) or where unsupported: copy by hand.
            copyByHand(in, out, offIn.longValue(), left, what);
            break;
          }
          throw FsException.of(e, "copy_file_range " + what);
        }
        if (n == 0) {
          break; // source shrank under us
        }
        left -= n;
      }
      pos = hole;
    }
    check(LIBC.ftruncate(out, size), "ftruncate " + what);
  }

  private static void copyByHand(int in, int out, long offset, long length, String what)
      throws FsException {
    int chunk = 1 << 20;
    Pointer buf = jnr.ffi.Memory.allocateDirect(RUNTIME, chunk);
    long done = 0;
    while (done < length) {
      long n = LIBC.pread(in, buf, Math.min(chunk, length - done), offset + done);
      if (n < 0) {
        throw FsException.of(errno(), "read " + what);
      }
      if (n == 0) {
        return;
      }
      long written = 0;
      while (written < n) {
        long w = LIBC.pwrite(out, buf.slice(written), n - written, offset + done + written);
        if (w < 0) {
          throw FsException.of(errno(), "write copy of " + what);
        }
        written += w;
      }
      done += n;
    }
  }
}
