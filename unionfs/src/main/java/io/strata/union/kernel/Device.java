package io.strata.union.kernel;

import jnr.ffi.LibraryLoader;
import jnr.ffi.Memory;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import jnr.ffi.annotations.SaveError;

/**
 * The few system calls Java lacks for speaking FUSE: /dev/fuse's descriptor, read and write of
 * whole frames into native memory, its ioctls, and mount(2). Nothing here knows the protocol.
 */
final class Device {
  /** libc, as bound here. */
  public interface C {
    @SaveError int open(String path, int flags);

    @SaveError long read(int fd, Pointer buf, long count);

    @SaveError long write(int fd, Pointer buf, long count);

    @SaveError long pread(int fd, Pointer buf, long count, long offset);

    @SaveError int ioctl(int fd, long request, Pointer arg);

    @SaveError int mount(byte[] source, byte[] target, byte[] type, long flags, byte[] data);

    @SaveError int close(int fd);

    @SaveError int fcntl(int fd, int cmd, int arg);

    @SaveError long readlink(String path, byte[] buf, long size);

    @SaveError int socket(int domain, int type, int protocol);

    @SaveError int connect(int fd, byte[] address, int length);

    @SaveError int memfd_create(String name, int flags);

    /** syscall(2) with integer and address arguments (io_uring_setup and io_uring_enter). */
    @SaveError long syscall(long number, long a1, long a2, long a3, long a4, long a5, long a6);
  }

  static final C LIBC = LibraryLoader.create(C.class).load("c");
  static final Runtime RUNTIME = Runtime.getRuntime(LIBC);
  static final int O_RDWR = 2;
  static final int O_CLOEXEC = 02000000;
  static final int F_DUPFD_CLOEXEC = 1030;
  static final long MS_NOSUID = 2;
  static final long MS_NODEV = 4;

  private Device() {}

  static int errno() {
    return jnr.ffi.LastError.getLastError(RUNTIME);
  }

  /** Opens /dev/fuse; the descriptor, or -errno. */
  static int open() {
    int fd = LIBC.open("/dev/fuse", O_RDWR | O_CLOEXEC);
    return fd < 0 ? -errno() : fd;
  }

  /** A new descriptor on the same connection as {@code fd} (FUSE_DEV_IOC_CLONE), or -errno. */
  static int cloneOf(int fd) {
    int clone = open();
    if (clone < 0) {
      return clone;
    }
    Pointer arg = Memory.allocateDirect(RUNTIME, 4);
    arg.putInt(0, fd);
    if (LIBC.ioctl(clone, Fuse.DEV_IOC_CLONE, arg) < 0) {
      int e = errno();
      LIBC.close(clone);
      return -e;
    }
    return clone;
  }

  /** Registers {@code backing} as a passthrough file (FUSE_DEV_IOC_BACKING_OPEN): id or -errno. */
  static int backingOpen(int fd, int backing) {
    Pointer map = Memory.allocateDirect(RUNTIME, 16);
    map.putInt(0, backing);
    map.putInt(4, 0);
    map.putLong(8, 0);
    int id = LIBC.ioctl(fd, Fuse.DEV_IOC_BACKING_OPEN, map);
    return id < 0 ? -errno() : id;
  }

  static void backingClose(int fd, int id) {
    Pointer arg = Memory.allocateDirect(RUNTIME, 4);
    arg.putInt(0, id);
    LIBC.ioctl(fd, Fuse.DEV_IOC_BACKING_CLOSE, arg);
  }

  static byte[] z(byte[] b) {
    return java.util.Arrays.copyOf(b, b.length + 1);
  }
}
