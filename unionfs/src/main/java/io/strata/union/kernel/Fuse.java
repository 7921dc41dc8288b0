package io.strata.union.kernel;

/**
 * The kernel's FUSE protocol as constants: opcodes, flags and structure sizes of
 * {@code include/uapi/linux/fuse.h} (protocol 7.45 on this machine; strata needs 7.31 and uses
 * what the kernel offers above it). Offsets are little-endian, as on every Linux host that
 * runs this.
 */
final class Fuse {
  private Fuse() {}

  static final int KERNEL_MAJOR = 7;
  static final int KERNEL_MINOR = 45;
  static final long ROOT_ID = 1;

  // opcodes
  static final int LOOKUP = 1;
  static final int FORGET = 2;
  static final int GETATTR = 3;
  static final int SETATTR = 4;
  static final int READLINK = 5;
  static final int SYMLINK = 6;
  static final int MKNOD = 8;
  static final int MKDIR = 9;
  static final int UNLINK = 10;
  static final int RMDIR = 11;
  static final int RENAME = 12;
  static final int LINK = 13;
  static final int OPEN = 14;
  static final int READ = 15;
  static final int WRITE = 16;
  static final int STATFS = 17;
  static final int RELEASE = 18;
  static final int FSYNC = 20;
  static final int SETXATTR = 21;
  static final int GETXATTR = 22;
  static final int LISTXATTR = 23;
  static final int REMOVEXATTR = 24;
  static final int FLUSH = 25;
  static final int INIT = 26;
  static final int OPENDIR = 27;
  static final int READDIR = 28;
  static final int RELEASEDIR = 29;
  static final int FSYNCDIR = 30;
  static final int ACCESS = 34;
  static final int CREATE = 35;
  static final int INTERRUPT = 36;
  static final int DESTROY = 38;
  static final int BATCH_FORGET = 42;
  static final int FALLOCATE = 43;
  static final int READDIRPLUS = 44;
  static final int RENAME2 = 45;
  static final int LSEEK = 46;
  static final int COPY_FILE_RANGE = 47;
  static final int TMPFILE = 51;
  static final int STATX = 52;
  static final int MAX_OPCODE = 64;

  /** Names for logs and statistics, by opcode. */
  static String name(int opcode) {
    return switch (opcode) {
      case LOOKUP -> "LOOKUP"; case FORGET -> "FORGET"; case GETATTR -> "GETATTR";
      case SETATTR -> "SETATTR"; case READLINK -> "READLINK"; case SYMLINK -> "SYMLINK";
      case MKNOD -> "MKNOD"; case MKDIR -> "MKDIR"; case UNLINK -> "UNLINK"; case RMDIR -> "RMDIR";
      case RENAME -> "RENAME"; case LINK -> "LINK"; case OPEN -> "OPEN"; case READ -> "READ";
      case WRITE -> "WRITE"; case STATFS -> "STATFS"; case RELEASE -> "RELEASE";
      case FSYNC -> "FSYNC"; case SETXATTR -> "SETXATTR"; case GETXATTR -> "GETXATTR";
      case LISTXATTR -> "LISTXATTR"; case REMOVEXATTR -> "REMOVEXATTR"; case FLUSH -> "FLUSH";
      case INIT -> "INIT"; case OPENDIR -> "OPENDIR"; case READDIR -> "READDIR";
      case RELEASEDIR -> "RELEASEDIR"; case FSYNCDIR -> "FSYNCDIR"; case ACCESS -> "ACCESS";
      case CREATE -> "CREATE"; case INTERRUPT -> "INTERRUPT"; case DESTROY -> "DESTROY";
      case BATCH_FORGET -> "BATCH_FORGET"; case FALLOCATE -> "FALLOCATE";
      case READDIRPLUS -> "READDIRPLUS"; case RENAME2 -> "RENAME2"; case LSEEK -> "LSEEK";
      case COPY_FILE_RANGE -> "COPY_FILE_RANGE"; case TMPFILE -> "TMPFILE";
      case 31 -> "GETLK"; case 32 -> "SETLK"; case 33 -> "SETLKW"; case 37 -> "BMAP";
      case 39 -> "IOCTL"; case 40 -> "POLL"; case 50 -> "SYNCFS"; case 52 -> "STATX";
      default -> "OP" + opcode;
    };
  }

  // INIT flags (flags2 is the upper 32 bits)
  static final long ASYNC_READ = 1L << 0;
  static final long ATOMIC_O_TRUNC = 1L << 3;
  static final long BIG_WRITES = 1L << 5;
  static final long DONT_MASK = 1L << 6;
  static final long AUTO_INVAL_DATA = 1L << 12;
  static final long DO_READDIRPLUS = 1L << 13;
  static final long READDIRPLUS_AUTO = 1L << 14;
  static final long ASYNC_DIO = 1L << 15;
  static final long PARALLEL_DIROPS = 1L << 18;
  static final long POSIX_ACL = 1L << 20;
  static final long MAX_PAGES = 1L << 22;
  static final long CACHE_SYMLINKS = 1L << 23;
  static final long HANDLE_KILLPRIV_V2 = 1L << 28;
  static final long INIT_EXT = 1L << 30;
  static final long PASSTHROUGH = 1L << 37;

  // FOPEN_* reply flags
  static final int FOPEN_DIRECT_IO = 1;
  static final int FOPEN_KEEP_CACHE = 1 << 1;
  static final int FOPEN_CACHE_DIR = 1 << 3;
  static final int FOPEN_PASSTHROUGH = 1 << 7;

  // SETATTR valid bits
  static final int FATTR_MODE = 1;
  static final int FATTR_UID = 1 << 1;
  static final int FATTR_GID = 1 << 2;
  static final int FATTR_SIZE = 1 << 3;
  static final int FATTR_ATIME = 1 << 4;
  static final int FATTR_MTIME = 1 << 5;
  static final int FATTR_FH = 1 << 6;
  static final int FATTR_ATIME_NOW = 1 << 7;
  static final int FATTR_MTIME_NOW = 1 << 8;
  static final int FATTR_CTIME = 1 << 10;
  static final int FATTR_KILL_SUIDGID = 1 << 11;
  /** The bits of a SETATTR that change something; FH and LOCKOWNER only say how. */
  static final int FATTR_CHANGES = FATTR_MODE | FATTR_UID | FATTR_GID | FATTR_SIZE | FATTR_ATIME
      | FATTR_MTIME | FATTR_CTIME;
  /** In a WRITE's write_flags, an OPEN's or a CREATE's open_flags (HANDLE_KILLPRIV_V2). */
  static final int WRITE_KILL_SUIDGID = 1 << 2;
  static final int OPEN_KILL_SUIDGID = 1;

  static final int GETATTR_FH = 1;
  static final int FSYNC_FDATASYNC = 1;
  static final int RENAME_NOREPLACE = 1;
  static final int RENAME_EXCHANGE = 2;

  // notifications (sent with unique 0 and the code in the error field)
  static final int NOTIFY_INVAL_INODE = 2;
  static final int NOTIFY_INVAL_ENTRY = 3;
  /** Puts data into a file's page cache: struct fuse_notify_store_out, then the bytes. */
  static final int NOTIFY_STORE = 4;
  static final int NOTIFY_STORE_OUT = 24;
  /** Sends again the requests a server read and did not answer (7.40, Linux 6.9). */
  static final int NOTIFY_RESEND = 7;

  // sizes
  static final int IN_HEADER = 40;
  static final int OUT_HEADER = 16;
  static final int ATTR = 88;
  static final int ENTRY_OUT = 40 + ATTR;
  static final int ATTR_OUT = 16 + ATTR;
  static final int OPEN_OUT = 16;
  static final int DIRENT = 24;
  static final int INIT_OUT = 64;
  static final int MAX_WRITE = 1 << 20;
  static final int MAX_PAGES_COUNT = MAX_WRITE / 4096;
  /** What a request may be at most: a write of MAX_WRITE bytes and its headers. */
  static final int BUFFER = MAX_WRITE + 4096;

  // ioctls on /dev/fuse: _IOR(229, 0, uint32_t), _IOW(229, 1, struct fuse_backing_map),
  // _IOW(229, 2, uint32_t)
  static final long DEV_IOC_CLONE = 0x8004E500L;
  static final long DEV_IOC_BACKING_OPEN = 0x4010E501L;
  static final long DEV_IOC_BACKING_CLOSE = 0x4004E502L;
}
