package io.strata.union.jnr;

import io.strata.union.view.Attr;
import io.strata.union.view.FsException;
import io.strata.union.view.Times;
import io.strata.union.view.UnionView;
import io.strata.layers.fs.Posix;
import io.strata.layers.fs.RawFs;
import java.util.List;
import java.util.function.Consumer;
import jnr.ffi.Pointer;
import ru.serce.jnrfuse.FuseFillDir;
import ru.serce.jnrfuse.FuseStubFS;
import ru.serce.jnrfuse.struct.FileStat;
import ru.serce.jnrfuse.struct.FuseFileInfo;
import ru.serce.jnrfuse.struct.Statvfs;
import ru.serce.jnrfuse.struct.Timespec;

/**
 * The thin jnr-fuse adapter: each FUSE call becomes one {@link UnionView} call, each
 * {@link FsException} its errno, and anything else is logged and becomes EIO, so no throwable
 * ever crosses into native code. Paths and names arrive raw (bytes, one char each) through
 * {@link RawCallbacks}, which stand in for jnr-fuse's String-decoding callbacks.
 */
public final class UnionFuse extends FuseStubFS {
  private static final long UTIME_NOW = (1L << 30) - 1;
  private static final long UTIME_OMIT = (1L << 30) - 2;

  private final UnionView view;
  private final Consumer<String> log;
  @SuppressWarnings("unused") // holds the raw closures that native code calls
  private final RawCallbacks raw;

  /** A FUSE operation in the shape every callback shares. */
  @FunctionalInterface
  private interface Op {
    int run() throws FsException;
  }

  public UnionFuse(UnionView view, Consumer<String> log) {
    this.view = view;
    this.log = log;
    // libfuse's flag_nullpath_ok and flag_utime_omit_ok bits, which jnr-fuse declares only as
    // padding: operations on an open file whose last name is gone then reach fgetattr, read and
    // write with a null path (served by the file handle) instead of failing with ENOENT.
    jnr.ffi.Pointer ops = jnr.ffi.Struct.getMemory(fuseOperations);
    long at = flagsOffset();
    ops.putInt(at, ops.getInt(at) | 0b101);
    // Every callback that carries a name gets it as bytes (raw), not decoded by jnr-fuse.
    this.raw = RawCallbacks.install(this, fuseOperations);
  }

  /** Where the flag bits sit in struct fuse_operations: after the 38 pointers up to bmap. */
  private long flagsOffset() {
    try {
      return RawCallbacks.offset(fuseOperations.flag_nullpath_ok);
    } catch (IllegalStateException e) {
      return 38L * jnr.ffi.Runtime.getSystemRuntime().addressSize();
    }
  }

  public UnionView view() {
    return view;
  }

  private int call(String what, String path, Op op) {
    try {
      return op.run();
    } catch (FsException e) {
      return -e.errno();
    } catch (Throwable t) {
      log.accept(what + " " + path + ": unexpected " + t);
      return -Posix.EIO;
    }
  }

  private int uid() {
    return (int) getContext().uid.get();
  }

  /** libfuse 2's FUSE_CAP_DONT_MASK: the kernel leaves the umask to the server. */
  private static final int CAP_DONT_MASK = 1 << 6;
  /** Whether the kernel agreed to FUSE_CAP_DONT_MASK (see {@link #init}). */
  private volatile boolean dontMask;

  /**
   * Asks for FUSE_CAP_DONT_MASK, as the own transport asks for FUSE_DONT_MASK: the view then
   * applies the caller's umask, or a directory's default ACL instead, as kernel overlayfs lets
   * the upper filesystem do. {@code conn} is libfuse 2's struct fuse_conn_info: five unsigned
   * ints, then capable (offset 20) and want (24).
   */
  @Override
  public Pointer init(Pointer conn) {
    if (conn != null && (conn.getInt(20) & CAP_DONT_MASK) != 0) {
      conn.putInt(24, conn.getInt(24) | CAP_DONT_MASK);
      dontMask = true;
    }
    return null;
  }

  /** The caller's umask for the view, or -1: the kernel applied it. */
  private int umask() {
    return dontMask ? (int) getContext().umask.get() & 0777 : -1;
  }

  private int gid() {
    return (int) getContext().gid.get();
  }

  static void fill(Attr a, FileStat st) {
    st.st_ino.set(a.ino());
    st.st_mode.set(a.mode());
    st.st_nlink.set(a.nlink());
    st.st_uid.set(a.uid());
    st.st_gid.set(a.gid());
    st.st_rdev.set(a.rdev());
    st.st_size.set(a.size());
    st.st_blocks.set(a.blocks());
    st.st_blksize.set(4096);
    st.st_atim.tv_sec.set(Math.floorDiv(a.atimeNanos(), 1_000_000_000L));
    st.st_atim.tv_nsec.set(Math.floorMod(a.atimeNanos(), 1_000_000_000L));
    st.st_mtim.tv_sec.set(Math.floorDiv(a.mtimeNanos(), 1_000_000_000L));
    st.st_mtim.tv_nsec.set(Math.floorMod(a.mtimeNanos(), 1_000_000_000L));
    st.st_ctim.tv_sec.set(Math.floorDiv(a.ctimeNanos(), 1_000_000_000L));
    st.st_ctim.tv_nsec.set(Math.floorMod(a.ctimeNanos(), 1_000_000_000L));
  }

  @Override
  public int getattr(String path, FileStat stat) {
    return call("getattr", path, () -> {
      fill(view.getattr(path), stat);
      return 0;
    });
  }

  @Override
  public int fgetattr(String path, FileStat stat, FuseFileInfo fi) {
    return call("fgetattr", path, () -> {
      fill(view.fgetattr(path, fi.fh.get()), stat);
      return 0;
    });
  }

  @Override
  public int readlink(String path, Pointer buf, long size) {
    return call("readlink", path, () -> {
      byte[] target = RawFs.bytes(view.readlink(path));
      int n = (int) Math.min(target.length, size - 1);
      buf.put(0, target, 0, n);
      buf.putByte(n, (byte) 0);
      return 0;
    });
  }

  @Override
  public int opendir(String path, FuseFileInfo fi) {
    return call("opendir", path, () -> {
      if (!view.getattr(path).isDirectory()) {
        return -Posix.ENOTDIR;
      }
      return 0;
    });
  }

  @Override
  public int readdir(String path, Pointer buf, FuseFillDir filter, long offset, FuseFileInfo fi) {
    return call("readdir", path, () -> {
      List<UnionView.DirEntry> entries = view.readdir(path);
      filter.apply(buf, ".", null, 0);
      filter.apply(buf, "..", null, 0);
      FileStat st = new FileStat(jnr.ffi.Runtime.getSystemRuntime());
      Pointer stp = jnr.ffi.Struct.getMemory(st);
      for (UnionView.DirEntry e : entries) {
        st.st_ino.set(e.ino());
        st.st_mode.set(e.type());
        // The name's own bytes, NUL-terminated: the String form would encode it as UTF-8.
        java.nio.ByteBuffer name = java.nio.ByteBuffer.allocateDirect(e.name().length() + 1);
        name.put(RawFs.bytes(e.name())).put((byte) 0).flip();
        // offset 0: libfuse keeps the whole listing and serves seeks itself, so offsets are right.
        if (filter.apply(buf, name, stp, 0) != 0) {
          break;
        }
      }
      return 0;
    });
  }

  @Override
  public int releasedir(String path, FuseFileInfo fi) {
    return 0;
  }

  @Override
  public int open(String path, FuseFileInfo fi) {
    return call("open", path, () -> {
      fi.fh.set(view.open(path, fi.flags.get()));
      return 0;
    });
  }

  @Override
  public int create(String path, long mode, FuseFileInfo fi) {
    return call("create", path, () -> {
      fi.fh.set(view.create(path, (int) mode, umask(), fi.flags.get(), uid(), gid()));
      return 0;
    });
  }

  @Override
  public int read(String path, Pointer buf, long size, long offset, FuseFileInfo fi) {
    return call("read", path, () -> view.read(fi.fh.get(), buf, size, offset));
  }

  @Override
  public int write(String path, Pointer buf, long size, long offset, FuseFileInfo fi) {
    return call("write", path, () -> view.write(fi.fh.get(), buf, size, offset));
  }

  @Override
  public int flush(String path, FuseFileInfo fi) {
    return 0;
  }

  @Override
  public int fsync(String path, int isdatasync, FuseFileInfo fi) {
    return call("fsync", path, () -> {
      view.fsync(fi.fh.get(), isdatasync != 0);
      return 0;
    });
  }

  @Override
  public int fsyncdir(String path, FuseFileInfo fi) {
    return 0;
  }

  @Override
  public int release(String path, FuseFileInfo fi) {
    view.release(fi.fh.get());
    return 0;
  }

  @Override
  public int truncate(String path, long size) {
    return call("truncate", path, () -> {
      view.truncate(path, size);
      return 0;
    });
  }

  @Override
  public int ftruncate(String path, long size, FuseFileInfo fi) {
    return call("ftruncate", path, () -> {
      view.ftruncate(fi.fh.get(), size);
      return 0;
    });
  }

  @Override
  public int fallocate(String path, int mode, long off, long length, FuseFileInfo fi) {
    return call("fallocate", path, () -> {
      view.fallocate(fi.fh.get(), mode, off, length);
      return 0;
    });
  }

  @Override
  public int mkdir(String path, long mode) {
    return call("mkdir", path, () -> {
      view.mkdir(path, (int) mode, umask(), uid(), gid());
      return 0;
    });
  }

  @Override
  public int mknod(String path, long mode, long rdev) {
    return call("mknod", path, () -> {
      view.mknod(path, (int) mode, umask(), rdev, uid(), gid());
      return 0;
    });
  }

  @Override
  public int symlink(String oldpath, String newpath) {
    return call("symlink", newpath, () -> {
      view.symlink(oldpath, newpath, uid(), gid());
      return 0;
    });
  }

  @Override
  public int link(String oldpath, String newpath) {
    return call("link", newpath, () -> {
      view.link(oldpath, newpath);
      return 0;
    });
  }

  @Override
  public int unlink(String path) {
    return call("unlink", path, () -> {
      view.unlink(path);
      return 0;
    });
  }

  @Override
  public int rmdir(String path) {
    return call("rmdir", path, () -> {
      view.rmdir(path);
      return 0;
    });
  }

  @Override
  public int rename(String oldpath, String newpath) {
    return call("rename", oldpath, () -> {
      view.rename(oldpath, newpath);
      return 0;
    });
  }

  @Override
  public int chmod(String path, long mode) {
    return call("chmod", path, () -> {
      view.chmod(path, (int) mode);
      return 0;
    });
  }

  @Override
  public int chown(String path, long uid, long gid) {
    return call("chown", path, () -> {
      view.chown(path, (int) uid, (int) gid);
      return 0;
    });
  }

  @Override
  public int utimens(String path, Timespec[] timespec) {
    return call("utimens", path, () -> {
      view.utimens(path, nanos(timespec[0]), nanos(timespec[1]));
      return 0;
    });
  }

  private static long nanos(Timespec t) {
    long ns = t.tv_nsec.longValue();
    if (ns == UTIME_NOW) {
      return Times.NOW;
    }
    if (ns == UTIME_OMIT) {
      return Times.OMIT;
    }
    return t.tv_sec.get() * 1_000_000_000L + ns;
  }

  @Override
  public int setxattr(String path, String name, Pointer value, long size, int flags) {
    return call("setxattr", path, () -> {
      byte[] v = new byte[(int) size];
      value.get(0, v, 0, v.length);
      view.setxattr(path, name, v, flags);
      return 0;
    });
  }

  @Override
  public int getxattr(String path, String name, Pointer value, long size) {
    return call("getxattr", path, () -> {
      byte[] v = view.getxattr(path, name);
      if (size == 0) {
        return v.length;
      }
      if (v.length > size) {
        return -Posix.ERANGE;
      }
      value.put(0, v, 0, v.length);
      return v.length;
    });
  }

  @Override
  public int listxattr(String path, Pointer list, long size) {
    return call("listxattr", path, () -> {
      java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
      for (String n : view.listxattr(path)) {
        out.writeBytes(RawFs.bytes(n));
        out.write(0);
      }
      byte[] all = out.toByteArray();
      if (size == 0) {
        return all.length;
      }
      if (all.length > size) {
        return -Posix.ERANGE;
      }
      list.put(0, all, 0, all.length);
      return all.length;
    });
  }

  @Override
  public int removexattr(String path, String name) {
    return call("removexattr", path, () -> {
      view.removexattr(path, name);
      return 0;
    });
  }

  @Override
  public int statfs(String path, Statvfs stbuf) {
    return call("statfs", path, () -> {
      UnionView.FsStats s = view.statfs();
      stbuf.f_bsize.set(s.blockSize());
      stbuf.f_frsize.set(s.fragmentSize());
      stbuf.f_blocks.set(s.blocks());
      stbuf.f_bfree.set(s.blocksFree());
      stbuf.f_bavail.set(s.blocksAvailable());
      stbuf.f_files.set(s.files());
      stbuf.f_ffree.set(s.filesFree());
      stbuf.f_namemax.set(s.nameMax());
      return 0;
    });
  }

  @Override
  public int access(String path, int mask) {
    return call("access", path, () -> {
      view.access(path);
      return 0;
    });
  }
}
