package io.strata.layers.fs;

import io.strata.layers.base.Text;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.Charset;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import jnr.ffi.LibraryLoader;
import jnr.ffi.Runtime;
import jnr.ffi.annotations.SaveError;

/**
 * File system calls on names as bytes, relative to a directory descriptor (the *at calls), so
 * that no name is decoded into characters on its way to the kernel and the length of a
 * directory's own location never matters.
 *
 * <p>Names and relative paths are <em>raw strings</em>: one char per byte (ISO-8859-1), which
 * round-trips every byte sequence exactly. {@link #raw} and {@link #bytes} convert; {@link
 * #display} makes one readable for messages. A relative path longer than the kernel takes in
 * one call (PATH_MAX) is reached by opening its parent directory piece by piece.
 *
 * <p>Attributes come from statx(2), whose layout is the same on every architecture.
 */
public final class RawFs {
  /** The libc calls bound here; every path is a NUL-terminated byte array. */
  public interface C {
    @SaveError int openat(int dirfd, byte[] path, int flags, int mode);

    @SaveError int close(int fd);

    @SaveError int dup3(int oldfd, int newfd, int flags);

    @SaveError int fstatfs(int fd, byte[] buf);

    @SaveError int statx(int dirfd, byte[] path, int flags, int mask, byte[] buf);

    @SaveError int mkdirat(int dirfd, byte[] path, int mode);

    @SaveError int mknodat(int dirfd, byte[] path, int mode, long dev);

    @SaveError int symlinkat(byte[] target, int dirfd, byte[] path);

    @SaveError long readlinkat(int dirfd, byte[] path, byte[] buf, long size);

    @SaveError int unlinkat(int dirfd, byte[] path, int flags);

    @SaveError int renameat2(int olddirfd, byte[] from, int newdirfd, byte[] to, int flags);

    @SaveError int linkat(int olddirfd, byte[] from, int newdirfd, byte[] to, int flags);

    @SaveError int fchownat(int dirfd, byte[] path, int uid, int gid, int flags);

    @SaveError int fchmodat(int dirfd, byte[] path, int mode, int flags);

    @SaveError int utimensat(int dirfd, byte[] path, long[] times, int flags);

    @SaveError int lsetxattr(byte[] path, byte[] name, byte[] value, long size, int flags);

    @SaveError long lgetxattr(byte[] path, byte[] name, byte[] value, long size);

    @SaveError long llistxattr(byte[] path, byte[] list, long size);

    @SaveError int lremovexattr(byte[] path, byte[] name);

    @SaveError long syscall(long number, int fd, byte[] buf, long count);

    @SaveError long pwrite(int fd, byte[] buf, long count, long offset);

    @SaveError int flock(int fd, int operation);
  }

  public static final int AT_FDCWD = -100;
  public static final int AT_SYMLINK_NOFOLLOW = 0x100;
  public static final int AT_REMOVEDIR = 0x200;
  public static final int AT_EMPTY_PATH = 0x1000;
  public static final int O_RDONLY = 0;
  public static final int O_WRONLY = 1;
  public static final int O_CREAT = 0100;
  public static final int O_EXCL = 0200;
  public static final int O_NOFOLLOW = 0400000;
  public static final int O_DIRECTORY = 0200000;
  public static final int O_CLOEXEC = 02000000;
  public static final int O_PATH = 010000000;
  private static final int STATX_BASIC = 0x7ff;
  private static final int STATX_BTIME = 0x800;
  private static final long SYS_GETDENTS64 = 217; // x86_64; aarch64 is 61
  private static final int CHUNK = 3800; // well under PATH_MAX, leaving room for a name
  private static final long UTIME_OMIT = (1L << 30) - 2L;

  private static final C LIBC = LibraryLoader.create(C.class).load("c");
  private static final Runtime RUNTIME = Runtime.getRuntime(LIBC);
  private static final Charset JNU = Charset.forName(
      System.getProperty("sun.jnu.encoding", "UTF-8"));

  private RawFs() {}

  // ---------------------------------------------------------------- raw strings

  /** Bytes as a raw string, one char per byte. */
  public static String raw(byte[] b) {
    return new String(b, StandardCharsets.ISO_8859_1);
  }

  /** A raw string's bytes. */
  public static byte[] bytes(String raw) {
    return raw.getBytes(StandardCharsets.ISO_8859_1);
  }

  /** A path that Java decoded, as the raw string of the bytes it names on disk. */
  public static String raw(Path p) {
    return raw(p.toString().getBytes(JNU));
  }

  /** A raw string as a person reads it (see {@link Text#display}). */
  public static String display(String raw) {
    return Text.display(raw);
  }

  private static byte[] z(String raw) {
    byte[] b = new byte[raw.length() + 1];
    for (int i = 0; i < raw.length(); i++) {
      b[i] = (byte) raw.charAt(i);
    }
    return b;
  }

  public static int errno() {
    return jnr.ffi.LastError.getLastError(RUNTIME);
  }

  private static Posix.PosixException fail(String call, int dirfd, String rel) {
    return new Posix.PosixException(call, Path.of("fd" + dirfd, display(rel)), errno());
  }

  // ---------------------------------------------------------------- long paths

  /**
   * A directory and a name in it that reach {@code rel} below {@code dirfd}: the same pair
   * when {@code rel} is short; else the parent opened piece by piece, which the caller closes
   * ({@link At#close}).
   */
  public record At(int dirfd, String rel, boolean owned) implements AutoCloseable {
    @Override
    public void close() {
      if (owned) {
        LIBC.close(dirfd);
      }
    }

    byte[] path() {
      return z(rel.isEmpty() ? "." : rel);
    }

    /** The same place as a path for calls that have no *at form (the xattr calls). */
    byte[] procPath() {
      if (dirfd == AT_FDCWD) {
        return z(rel);
      }
      return z("/proc/self/fd/" + dirfd + "/" + (rel.isEmpty() ? "." : rel));
    }
  }

  /** Where {@code rel} below {@code dirfd} is reached from. */
  public static At at(int dirfd, String rel) throws IOException {
    if (rel.length() < CHUNK) {
      return new At(dirfd, rel, false);
    }
    int slash = rel.lastIndexOf('/');
    String parent = rel.substring(0, slash);
    int fd = dirfd;
    boolean owned = false;
    int start = 0;
    while (start < parent.length()) {
      int end = Math.min(parent.length(), start + CHUNK);
      if (end < parent.length()) {
        end = parent.lastIndexOf('/', end);
        if (end <= start) {
          throw new Posix.PosixException("open", Path.of(display(rel)), Posix.ENAMETOOLONG);
        }
      }
      int next = LIBC.openat(fd, z(parent.substring(start, end)),
          O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
      int err = errno();
      if (owned) {
        LIBC.close(fd);
      }
      if (next < 0) {
        throw new Posix.PosixException("open", Path.of(display(rel)), err);
      }
      fd = next;
      owned = true;
      start = end + 1;
    }
    return new At(fd, rel.substring(slash + 1), true);
  }

  // ---------------------------------------------------------------- calls

  /**
   * statx's answer buffer, one per thread: lstat is the call a listing makes for every entry
   * of every layer, and a cold walk of 100,000 files allocated one per call.
   */
  private static final ThreadLocal<byte[]> STATX_BUF = ThreadLocal.withInitial(() -> new byte[256]);

  /** The attributes of {@code rel} itself (not following a final symlink), or null if absent. */
  public static Statx lstat(int dirfd, String rel) throws IOException {
    return lstat(dirfd, rel, Statx::new);
  }

  /** Makes a caller's own record of what statx(2) said, with no {@link Statx} in between. */
  @FunctionalInterface
  public interface StatxReader<T> {
    T read(long ino, int mode, long nlink, int uid, int gid, long rdev, long size, long blocks,
        long atimeNanos, long mtimeNanos, long ctimeNanos, long dev, long btimeNanos);
  }

  /**
   * lstat of {@code rel} read straight into the caller's record (null if absent): the union's
   * listings lstat every entry of every layer.
   */
  public static <T> T lstat(int dirfd, String rel, StatxReader<T> reader) throws IOException {
    byte[] buf = STATX_BUF.get(); // read before this returns; nothing in between calls lstat
    try (At a = at(dirfd, rel)) {
      int flags = AT_SYMLINK_NOFOLLOW | (rel.isEmpty() ? AT_EMPTY_PATH : 0);
      if (LIBC.statx(a.dirfd(), rel.isEmpty() ? z("") : a.path(), flags,
          STATX_BASIC | STATX_BTIME, buf) < 0) {
        int e = errno();
        if (e == Posix.ENOENT || e == Posix.ENOTDIR) {
          return null;
        }
        throw new Posix.PosixException("statx", Path.of(display(rel)), e);
      }
    }
    return Statx.read(buf, reader);
  }

  /** The attributes of what the absolute path {@code p} names, following symlinks. */
  public static Statx stat(Path p) throws IOException {
    byte[] buf = new byte[256];
    if (LIBC.statx(AT_FDCWD, z(raw(p)), 0, STATX_BASIC | STATX_BTIME, buf) < 0) {
      throw new Posix.PosixException("statx", p, errno());
    }
    return Statx.parse(buf);
  }

  private static final int STATX_MNT_ID_UNIQUE = 0x4000;
  private static final int AT_STATX_DONT_SYNC = 0x4000;

  /**
   * The unique id of the mount {@code p} is on (statx's STATX_MNT_ID_UNIQUE, Linux 6.8+: never
   * reused, unlike mountinfo's ids and a FUSE mount's device number), asking the filesystem
   * nothing (AT_STATX_DONT_SYNC: a FUSE server that hangs or died is not waited for); 0 where
   * the kernel has no such id.
   */
  public static long mountId(Path p) throws IOException {
    ByteBuffer b = statxNoSync(p, STATX_MNT_ID_UNIQUE);
    if (b == null) {
      throw new Posix.PosixException("statx", p, Posix.ENOENT);
    }
    return (b.getInt(0) & STATX_MNT_ID_UNIQUE) != 0 ? b.getLong(144) : 0;
  }

  /**
   * statx of {@code p} itself that asks the filesystem nothing (a FUSE server that hangs or
   * died is not waited for); null when nothing is there.
   */
  private static ByteBuffer statxNoSync(Path p, int mask) throws IOException {
    byte[] buf = new byte[256];
    if (LIBC.statx(AT_FDCWD, z(raw(p)), AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC, mask, buf) < 0) {
      int e = errno();
      if (e == Posix.ENOENT || e == Posix.ENOTDIR) {
        return null;
      }
      throw new Posix.PosixException("statx", p, e);
    }
    return ByteBuffer.wrap(buf).order(ByteOrder.nativeOrder());
  }

  private static final long STATX_ATTR_MOUNT_ROOT = 0x2000;

  /**
   * Whether {@code p} (not following a final symlink) is the root of a mount: TRUE or FALSE
   * from statx's STATX_ATTR_MOUNT_ROOT (Linux 5.8+), one call whatever the size of the mount
   * table, asking the filesystem nothing (AT_STATX_DONT_SYNC: a FUSE server that hangs or died
   * is not waited for); FALSE when nothing is there; null when the kernel does not say.
   */
  public static Boolean isMountRoot(Path p) throws IOException {
    ByteBuffer b = statxNoSync(p, 0);
    if (b == null) {
      return Boolean.FALSE;
    }
    if ((b.getLong(56) & STATX_ATTR_MOUNT_ROOT) == 0) { // stx_attributes_mask
      return null;
    }
    return (b.getLong(8) & STATX_ATTR_MOUNT_ROOT) != 0; // stx_attributes
  }

  /**
   * What statx(2) says of a file; times in nanoseconds since 1970, rdev as a dev_t; the birth
   * time {@link #NO_BTIME} where the filesystem keeps none.
   */
  public record Statx(long ino, int mode, long nlink, int uid, int gid, long rdev, long size,
      long blocks, long atimeNanos, long mtimeNanos, long ctimeNanos, long dev, long btimeNanos) {
    public static final long NO_BTIME = Long.MIN_VALUE;

    static Statx parse(byte[] buf) {
      return read(buf, Statx::new);
    }

    /** struct statx's fields, read from the buffer in place (no ByteBuffer around it). */
    static <T> T read(byte[] b, StatxReader<T> reader) {
      return reader.read(i64(b, 32), u16(b, 28), i32(b, 16) & 0xffffffffL, i32(b, 20),
          i32(b, 24), Posix.makedev(i32(b, 128), i32(b, 132)), i64(b, 40), i64(b, 48),
          time(b, 64), time(b, 112), time(b, 96), Posix.makedev(i32(b, 136), i32(b, 140)),
          (i32(b, 0) & STATX_BTIME) != 0 ? time(b, 80) : NO_BTIME);
    }

    private static final java.lang.invoke.VarHandle I64 =
        java.lang.invoke.MethodHandles.byteArrayViewVarHandle(long[].class,
            ByteOrder.nativeOrder());
    private static final java.lang.invoke.VarHandle I32 =
        java.lang.invoke.MethodHandles.byteArrayViewVarHandle(int[].class,
            ByteOrder.nativeOrder());
    private static final java.lang.invoke.VarHandle I16 =
        java.lang.invoke.MethodHandles.byteArrayViewVarHandle(short[].class,
            ByteOrder.nativeOrder());

    private static long i64(byte[] b, int at) {
      return (long) I64.get(b, at);
    }

    private static int i32(byte[] b, int at) {
      return (int) I32.get(b, at);
    }

    private static int u16(byte[] b, int at) {
      return ((short) I16.get(b, at)) & 0xffff;
    }

    private static long time(byte[] b, int at) {
      return i64(b, at) * 1_000_000_000L + (i32(b, at + 8) & 0xffffffffL);
    }
  }

  /** Opens {@code rel} below {@code dirfd}; returns the descriptor. */
  public static int open(int dirfd, String rel, int flags, int mode) throws IOException {
    try (At a = at(dirfd, rel)) {
      int fd = LIBC.openat(a.dirfd(), a.path(), flags | O_CLOEXEC, mode);
      if (fd < 0) {
        throw fail("open", dirfd, rel);
      }
      return fd;
    }
  }

  public static void close(int fd) {
    LIBC.close(fd);
  }

  /**
   * What statfs(2) says of the filesystem of {@code fd} (an O_PATH descriptor will do): block
   * counts in units of {@code fragmentSize}, inode counts, the longest name.
   */
  public record FsStat(long blockSize, long fragmentSize, long blocks, long blocksFree,
      long blocksAvailable, long files, long filesFree, long nameMax) {}

  public static FsStat fstatfs(int fd) throws IOException {
    byte[] buf = new byte[128];
    if (LIBC.fstatfs(fd, buf) < 0) {
      throw new Posix.PosixException("fstatfs", Path.of("descriptor " + fd), errno());
    }
    // struct statfs of the 64-bit Linux ABIs (x86_64, aarch64, riscv64, ppc64le): f_type,
    // f_bsize, f_blocks, f_bfree, f_bavail, f_files, f_ffree, f_fsid, f_namelen, f_frsize, 8
    // bytes each
    ByteBuffer b = ByteBuffer.wrap(buf).order(ByteOrder.nativeOrder());
    long bsize = b.getLong(8);
    long frsize = b.getLong(72);
    return new FsStat(bsize, frsize == 0 ? bsize : frsize, b.getLong(16), b.getLong(24),
        b.getLong(32), b.getLong(40), b.getLong(48), b.getLong(64));
  }

  /** Makes {@code newfd} a close-on-exec copy of {@code oldfd} (dup3(2)), closing what it was. */
  public static void dup3(int oldfd, int newfd) throws IOException {
    if (LIBC.dup3(oldfd, newfd, O_CLOEXEC) < 0) {
      throw new Posix.PosixException("dup3", Path.of("descriptor " + newfd), errno());
    }
  }

  private static final int LOCK_EX = 2;
  private static final int LOCK_NB = 4;
  private static final int EWOULDBLOCK = 11;

  /**
   * Takes flock(2)'s exclusive lock on the open file {@code fd} without waiting: false when
   * another open file description holds it (in this process or another). The kernel drops it
   * when the description's last descriptor closes, or its process dies.
   */
  public static boolean tryLock(int fd) throws IOException {
    if (LIBC.flock(fd, LOCK_EX | LOCK_NB) == 0) {
      return true;
    }
    int e = errno();
    if (e == EWOULDBLOCK) {
      return false;
    }
    throw new Posix.PosixException("flock", Path.of("/proc/self/fd/" + fd), e);
  }

  /** Writes {@code len} bytes of {@code buf} at {@code offset} of an open file, all of them. */
  public static void pwrite(int fd, byte[] buf, int len, long offset) throws IOException {
    int done = 0;
    while (done < len) {
      byte[] rest = done == 0 ? buf : java.util.Arrays.copyOfRange(buf, done, len);
      long n = LIBC.pwrite(fd, rest, len - done, offset + done);
      if (n < 0) {
        throw new Posix.PosixException("pwrite", Path.of("fd" + fd), errno());
      }
      done += (int) n;
    }
  }

  public static void mkdir(int dirfd, String rel, int mode) throws IOException {
    try (At a = at(dirfd, rel)) {
      check(LIBC.mkdirat(a.dirfd(), a.path(), mode), "mkdir", dirfd, rel);
    }
  }

  /** Makes a device node, fifo or socket; {@code mode} carries the type bits. */
  public static void mknod(int dirfd, String rel, int mode, int major, int minor)
      throws IOException {
    try (At a = at(dirfd, rel)) {
      check(LIBC.mknodat(a.dirfd(), a.path(), mode, Posix.makedev(major, minor)), "mknod", dirfd,
          rel);
    }
  }

  /** Makes a symlink whose target is the raw string {@code target}, byte for byte. */
  public static void symlink(String target, int dirfd, String rel) throws IOException {
    try (At a = at(dirfd, rel)) {
      check(LIBC.symlinkat(z(target), a.dirfd(), a.path()), "symlink", dirfd, rel);
    }
  }

  /** A symlink's target as a raw string. */
  public static String readlink(int dirfd, String rel) throws IOException {
    try (At a = at(dirfd, rel)) {
      byte[] buf = new byte[4097];
      long n = LIBC.readlinkat(a.dirfd(), a.path(), buf, buf.length);
      if (n < 0) {
        throw fail("readlink", dirfd, rel);
      }
      return new String(buf, 0, (int) n, StandardCharsets.ISO_8859_1);
    }
  }

  public static void unlink(int dirfd, String rel) throws IOException {
    try (At a = at(dirfd, rel)) {
      check(LIBC.unlinkat(a.dirfd(), a.path(), 0), "unlink", dirfd, rel);
    }
  }

  public static void rmdir(int dirfd, String rel) throws IOException {
    try (At a = at(dirfd, rel)) {
      check(LIBC.unlinkat(a.dirfd(), a.path(), AT_REMOVEDIR), "rmdir", dirfd, rel);
    }
  }

  /** renameat2(2); {@code flags} as RENAME_NOREPLACE (1) or RENAME_EXCHANGE (2). */
  public static void rename(int fromDir, String from, int toDir, String to, int flags)
      throws IOException {
    try (At a = at(fromDir, from); At b = at(toDir, to)) {
      check(LIBC.renameat2(a.dirfd(), a.path(), b.dirfd(), b.path(), flags), "rename", toDir, to);
    }
  }

  public static void link(int fromDir, String from, int toDir, String to) throws IOException {
    try (At a = at(fromDir, from); At b = at(toDir, to)) {
      check(LIBC.linkat(a.dirfd(), a.path(), b.dirfd(), b.path(), 0), "link", toDir, to);
    }
  }

  /**
   * Gives an open file a name: linkat of /proc/self/fd/N with AT_SYMLINK_FOLLOW, which works
   * without CAP_DAC_READ_SEARCH (unlike AT_EMPTY_PATH), for an O_TMPFILE file among others.
   */
  public static void linkOpenFile(int fd, int toDir, String to) throws IOException {
    try (At b = at(toDir, to)) {
      check(LIBC.linkat(AT_FDCWD, z("/proc/self/fd/" + fd), b.dirfd(), b.path(), 0x400),
          "link", toDir, to);
    }
  }

  public static void lchown(int dirfd, String rel, int uid, int gid) throws IOException {
    try (At a = at(dirfd, rel)) {
      check(LIBC.fchownat(a.dirfd(), a.path(), uid, gid, AT_SYMLINK_NOFOLLOW), "lchown", dirfd,
          rel);
    }
  }

  /** Sets all twelve mode bits (never on a symlink, whose mode Linux does not keep). */
  public static void chmod(int dirfd, String rel, int mode) throws IOException {
    try (At a = at(dirfd, rel)) {
      check(LIBC.fchmodat(a.dirfd(), a.path(), mode & 07777, 0), "chmod", dirfd, rel);
    }
  }

  /** Sets times in nanoseconds; -1 leaves one as it is. */
  public static void lutimes(int dirfd, String rel, long atimeNanos, long mtimeNanos)
      throws IOException {
    long[] t = timespecs(atimeNanos, mtimeNanos);
    try (At a = at(dirfd, rel)) {
      check(LIBC.utimensat(a.dirfd(), a.path(), t, AT_SYMLINK_NOFOLLOW), "utimensat", dirfd, rel);
    }
  }

  /** futimens(2): the times of an open file, named or not (a negative time is left as it is). */
  public static void futimes(int fd, long atimeNanos, long mtimeNanos) throws IOException {
    // through its /proc/self/fd link, followed: the file itself
    check(LIBC.utimensat(AT_FDCWD, z("/proc/self/fd/" + fd), timespecs(atimeNanos, mtimeNanos),
        0), "futimens", fd, "");
  }

  private static long[] timespecs(long atimeNanos, long mtimeNanos) {
    return new long[] {
      atimeNanos < 0 ? 0 : Math.floorDiv(atimeNanos, 1_000_000_000L),
      atimeNanos < 0 ? UTIME_OMIT : Math.floorMod(atimeNanos, 1_000_000_000L),
      mtimeNanos < 0 ? 0 : Math.floorDiv(mtimeNanos, 1_000_000_000L),
      mtimeNanos < 0 ? UTIME_OMIT : Math.floorMod(mtimeNanos, 1_000_000_000L)
    };
  }

  /** Whether the file has an xattr of that (raw) name (one lgetxattr of its size). */
  public static boolean hasXattr(int dirfd, String rel, String name) throws IOException {
    try (At a = at(dirfd, rel)) {
      long got = LIBC.lgetxattr(a.procPath(), z(name), null, 0);
      if (got >= 0) {
        return true;
      }
      int e = errno();
      if (e == Posix.ENODATA || e == Posix.ENOTSUP) {
        return false;
      }
      throw new Posix.PosixException("lgetxattr", Path.of(display(rel)), e);
    }
  }

  /** An xattr's value, or null if the file has none of that (raw) name. */
  public static byte[] lgetxattr(int dirfd, String rel, String name) throws IOException {
    try (At a = at(dirfd, rel)) {
      byte[] path = a.procPath();
      byte[] n = z(name);
      for (int size = 256; ; size *= 4) {
        byte[] buf = new byte[size];
        long got = LIBC.lgetxattr(path, n, buf, size);
        if (got >= 0) {
          return java.util.Arrays.copyOf(buf, (int) got);
        }
        int e = errno();
        if (e == Posix.ENODATA || e == Posix.ENOTSUP) {
          return null;
        }
        if (e != Posix.ERANGE || size > (1 << 20)) {
          throw new Posix.PosixException("lgetxattr", Path.of(display(rel)), e);
        }
      }
    }
  }

  public static void lsetxattr(int dirfd, String rel, String name, byte[] value)
      throws IOException {
    try (At a = at(dirfd, rel)) {
      check(LIBC.lsetxattr(a.procPath(), z(name), value, value.length, 0), "lsetxattr", dirfd,
          rel);
    }
  }

  /** The (raw) names of a file's xattrs. */
  public static List<String> llistxattr(int dirfd, String rel) throws IOException {
    try (At a = at(dirfd, rel)) {
      byte[] path = a.procPath();
      for (int size = 1024; ; size *= 4) {
        byte[] buf = new byte[size];
        long got = LIBC.llistxattr(path, buf, size);
        if (got >= 0) {
          List<String> out = new ArrayList<>();
          int start = 0;
          for (int i = 0; i < got; i++) {
            if (buf[i] == 0) {
              if (i > start) {
                out.add(new String(buf, start, i - start, StandardCharsets.ISO_8859_1));
              }
              start = i + 1;
            }
          }
          return out;
        }
        int e = errno();
        if (e == Posix.ENOTSUP) {
          return List.of();
        }
        if (e != Posix.ERANGE || size > (1 << 22)) {
          throw new Posix.PosixException("llistxattr", Path.of(display(rel)), e);
        }
      }
    }
  }

  public static void lremovexattr(int dirfd, String rel, String name) throws IOException {
    try (At a = at(dirfd, rel)) {
      check(LIBC.lremovexattr(a.procPath(), z(name)), "lremovexattr", dirfd, rel);
    }
  }

  /** One directory entry: its raw name, inode number and d_type. */
  public record DirEntry(String name, long ino, int type) {}

  /** The entries of a directory, without "." and "..", in the order the kernel gives them. */
  public static List<DirEntry> list(int dirfd, String rel) throws IOException {
    int fd = open(dirfd, rel, O_RDONLY | O_DIRECTORY, 0);
    try {
      List<DirEntry> out = new ArrayList<>();
      byte[] buf = new byte[64 * 1024];
      while (true) {
        long n = LIBC.syscall(SYS_GETDENTS64, fd, buf, buf.length);
        if (n < 0) {
          throw fail("getdents64", dirfd, rel);
        }
        if (n == 0) {
          return out;
        }
        ByteBuffer b = ByteBuffer.wrap(buf, 0, (int) n).order(ByteOrder.nativeOrder());
        int pos = 0;
        while (pos < n) {
          long ino = b.getLong(pos);
          int reclen = b.getShort(pos + 16) & 0xffff;
          int type = buf[pos + 18] & 0xff;
          int nameStart = pos + 19;
          int end = nameStart;
          while (end < pos + reclen && buf[end] != 0) {
            end++;
          }
          String name = new String(buf, nameStart, end - nameStart, StandardCharsets.ISO_8859_1);
          if (!name.equals(".") && !name.equals("..")) {
            out.add(new DirEntry(name, ino, type));
          }
          pos += reclen;
        }
      }
    } finally {
      LIBC.close(fd);
    }
  }

  private static void check(int rc, String call, int dirfd, String rel) throws IOException {
    if (rc < 0) {
      throw fail(call, dirfd, rel);
    }
  }
}
