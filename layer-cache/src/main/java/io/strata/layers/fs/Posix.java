package io.strata.layers.fs;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import jnr.ffi.LibraryLoader;
import jnr.ffi.Runtime;
import jnr.ffi.annotations.SaveError;

/**
 * The few libc calls that java.nio has no API for: ownership and mode bits of links and setuid
 * files, device nodes, every xattr namespace, and nanosecond times on symlinks.
 *
 * <p>Every call works on the path itself and never follows a final symlink.
 */
public final class Posix {

  /** The subset of libc that strata binds; jnr-ffi fills it in at load time. */
  public interface LibC {
    @SaveError int lchown(String path, int uid, int gid);

    @SaveError int chmod(String path, int mode);

    @SaveError int mknod(String path, int mode, long dev);

    @SaveError int utimensat(int dirfd, String path, long[] times, int flags);

    @SaveError int mkdir(String path, int mode);

    @SaveError int rmdir(String path);

    @SaveError int unlink(String path);

    @SaveError int rename(String from, String to);

    @SaveError int renameat2(int olddirfd, String from, int newdirfd, String to, int flags);

    @SaveError int link(String from, String to);

    @SaveError int symlink(String target, String path);

    @SaveError int truncate(String path, long length);

    @SaveError int access(String path, int mode);

    int geteuid();

    @SaveError int umount2(byte[] target, int flags);

    String strerror(int errnum);

    int malloc_trim(long pad);
  }

  public static final int S_IFMT = 0170000;
  public static final int S_IFSOCK = 0140000;
  public static final int S_IFLNK = 0120000;
  public static final int S_IFREG = 0100000;
  public static final int S_IFBLK = 0060000;
  public static final int S_IFDIR = 0040000;
  public static final int S_IFCHR = 0020000;
  public static final int S_IFIFO = 0010000;

  public static final int ENOENT = 2;
  public static final int ENODATA = 61;
  public static final int ERANGE = 34;
  public static final int EPERM = 1;
  public static final int ENOTSUP = 95;
  public static final int EIO = 5;
  public static final int EBUSY = 16;
  public static final int EEXIST = 17;
  public static final int EXDEV = 18;
  public static final int ENOTDIR = 20;
  public static final int EISDIR = 21;
  public static final int EINVAL = 22;
  public static final int ENOSPC = 28;
  public static final int EROFS = 30;
  public static final int EMLINK = 31;
  public static final int ENAMETOOLONG = 36;
  public static final int ENOTEMPTY = 39;
  public static final int ELOOP = 40;
  public static final int EACCES = 13;
  public static final int EBADF = 9;
  public static final int ENOSYS = 38;
  public static final int EOPNOTSUPP = 95;
  public static final int EINTR = 4;
  public static final int EAGAIN = 11;
  public static final int ENODEV = 19;
  public static final int ESTALE = 116;

  private static final int AT_FDCWD = -100;
  private static final int AT_SYMLINK_NOFOLLOW = 0x100;
  private static final long UTIME_OMIT = (1L << 30) - 2L;

  private static final LibC LIBC = LibraryLoader.create(LibC.class).load("c");
  private static final Runtime RUNTIME = Runtime.getRuntime(LIBC);

  private Posix() {}

  /** Whether this process runs as root, and so may chown and mknod. */
  public static boolean isRoot() {
    return LIBC.geteuid() == 0;
  }

  /**
   * Gives the C heap's free memory back to the kernel (glibc's malloc_trim): what native code
   * (FUSE buffers, jnr) freed stays resident in malloc's arenas otherwise.
   */
  public static void mallocTrim() {
    LIBC.malloc_trim(0);
  }

  /** umount2(2)'s flag: detach now, let go of the filesystem once it is no longer busy. */
  public static final int MNT_DETACH = 2;

  /**
   * Unmounts what is mounted on {@code path} (its bytes, as {@link RawFs#raw} has them), with
   * umount2(2); 0 or the errno.
   */
  public static int umount2(String rawPath, int flags) {
    byte[] b = RawFs.bytes(rawPath);
    byte[] z = java.util.Arrays.copyOf(b, b.length + 1);
    return LIBC.umount2(z, flags) == 0 ? 0 : errno();
  }

  /** This process's effective user id. */
  public static int geteuid() {
    return LIBC.geteuid();
  }

  public static void lchown(Path path, int uid, int gid) throws IOException {
    check(LIBC.lchown(path.toString(), uid, gid), "lchown", path);
  }

  /** Sets all twelve mode bits, setuid, setgid and sticky included. */
  public static void chmod(Path path, int mode) throws IOException {
    check(LIBC.chmod(path.toString(), mode & 07777), "chmod", path);
  }

  /** Makes a device node, fifo or socket; {@code mode} carries the file type bits. */
  public static void mknod(Path path, int mode, int major, int minor) throws IOException {
    check(LIBC.mknod(path.toString(), mode, makedev(major, minor)), "mknod", path);
  }

  /** Sets the access and modification times of the path itself, in nanoseconds since 1970. */
  public static void lutimes(Path path, long atimeNanos, long mtimeNanos) throws IOException {
    long[] times = {
      atimeNanos < 0 ? 0 : Math.floorDiv(atimeNanos, 1_000_000_000L),
      atimeNanos < 0 ? UTIME_OMIT : Math.floorMod(atimeNanos, 1_000_000_000L),
      Math.floorDiv(mtimeNanos, 1_000_000_000L),
      Math.floorMod(mtimeNanos, 1_000_000_000L)
    };
    check(LIBC.utimensat(AT_FDCWD, path.toString(), times, AT_SYMLINK_NOFOLLOW), "utimensat", path);
  }

  /** Sets an xattr of the path itself (through {@link RawFs}, names as UTF-8 bytes). */
  public static void lsetxattr(Path path, String name, byte[] value) throws IOException {
    RawFs.lsetxattr(RawFs.AT_FDCWD, RawFs.raw(path), utf8(name), value);
  }


  /** An xattr of the path itself, or null when it has none of that name. */
  public static byte[] lgetxattr(Path path, String name) throws IOException {
    return RawFs.lgetxattr(RawFs.AT_FDCWD, RawFs.raw(path), utf8(name));
  }


  /** The xattr names of the path itself. */
  public static List<String> llistxattr(Path path) throws IOException {
    List<String> out = new ArrayList<>();
    for (String raw : RawFs.llistxattr(RawFs.AT_FDCWD, RawFs.raw(path))) {
      out.add(new String(RawFs.bytes(raw), StandardCharsets.UTF_8));
    }
    return out;
  }

  private static String utf8(String name) {
    return RawFs.raw(name.getBytes(StandardCharsets.UTF_8));
  }

  public static void mkdir(Path path, int mode) throws IOException {
    check(LIBC.mkdir(path.toString(), mode), "mkdir", path);
  }

  public static void rmdir(Path path) throws IOException {
    check(LIBC.rmdir(path.toString()), "rmdir", path);
  }

  public static void unlink(Path path) throws IOException {
    check(LIBC.unlink(path.toString()), "unlink", path);
  }

  public static void rename(Path from, Path to) throws IOException {
    check(LIBC.rename(from.toString(), to.toString()), "rename", from);
  }

  public static final int RENAME_NOREPLACE = 1;
  public static final int RENAME_EXCHANGE = 2;
  public static final int RENAME_WHITEOUT = 4;

  /** rename(2) with flags (RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT). */
  public static void renameat2(Path from, Path to, int flags) throws IOException {
    check(LIBC.renameat2(AT_FDCWD, from.toString(), AT_FDCWD, to.toString(), flags),
        "renameat2", from);
  }

  public static void link(Path existing, Path link) throws IOException {
    check(LIBC.link(existing.toString(), link.toString()), "link", link);
  }

  public static void symlink(String target, Path link) throws IOException {
    check(LIBC.symlink(target, link.toString()), "symlink", link);
  }

  public static void truncate(Path path, long length) throws IOException {
    check(LIBC.truncate(path.toString(), length), "truncate", path);
  }

  /** The errno of the last bound call made on this thread. */
  public static int errno() {
    return jnr.ffi.LastError.getLastError(RUNTIME);
  }

  public static String strerror(int errno) {
    return LIBC.strerror(errno);
  }

  public static long makedev(int major, int minor) {
    long ma = major & 0xffffffffL;
    long mi = minor & 0xffffffffL;
    return ((ma & 0xfffff000L) << 32) | ((ma & 0xfffL) << 8) | ((mi & 0xffffff00L) << 12) | (mi & 0xffL);
  }

  public static int major(long dev) {
    return (int) (((dev >>> 32) & 0xfffff000L) | ((dev >>> 8) & 0xfffL));
  }

  public static int minor(long dev) {
    return (int) (((dev >>> 12) & 0xffffff00L) | (dev & 0xffL));
  }

  private static void check(long rc, String op, Path path) throws IOException {
    if (rc < 0) {
      throw failure(op, path, errno());
    }
  }

  private static PosixException failure(String op, Path path, int errno) {
    return new PosixException(op, path, errno);
  }

  /** A failed libc call, carrying its errno so callers can map it onward. */
  public static final class PosixException extends IOException {
    private final int errno;

    public PosixException(String op, Path path, int errno) {
      super(op + " " + path + ": " + strerror(errno));
      this.errno = errno;
    }

    public int errno() {
      return errno;
    }
  }
}
