package io.strata.union.jnr;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import jnr.ffi.Pointer;
import jnr.ffi.Struct;
import jnr.ffi.annotations.Delegate;
import jnr.ffi.provider.jffi.ClosureHelper;
import jnr.ffi.types.dev_t;
import jnr.ffi.types.gid_t;
import jnr.ffi.types.mode_t;
import jnr.ffi.types.off_t;
import jnr.ffi.types.size_t;
import jnr.ffi.types.uid_t;
import ru.serce.jnrfuse.FuseFillDir;
import ru.serce.jnrfuse.struct.FileStat;
import ru.serce.jnrfuse.struct.FuseFileInfo;
import ru.serce.jnrfuse.struct.FuseOperations;
import ru.serce.jnrfuse.struct.Timespec;

/**
 * jnr-fuse's callbacks that carry names, declared again with each name as a pointer and put in
 * place of jnr-fuse's own in struct fuse_operations. jnr-fuse declares them with String
 * parameters, which jnr-ffi decodes as UTF-8, so a name that is not UTF-8 arrived with U+FFFD
 * in it and two such names became one. Here a name's bytes become a raw string (one char per
 * byte, see {@link io.strata.layers.fs.RawFs}) and {@link UnionFuse} receives exactly what the
 * kernel sent. The closures are kept referenced for the life of the file system.
 */
public final class RawCallbacks {
  /** getattr. */
  public interface Getattr {
    @Delegate int call(Pointer path, Pointer stat);
  }

  /** fgetattr. */
  public interface Fgetattr {
    @Delegate int call(Pointer path, Pointer stat, Pointer fi);
  }

  /** readlink. */
  public interface Readlink {
    @Delegate int call(Pointer path, Pointer buf, @size_t long size);
  }

  /** open, opendir. */
  public interface PathFi {
    @Delegate int call(Pointer path, Pointer fi);
  }

  /** readdir. */
  public interface Readdir {
    @Delegate int call(Pointer path, Pointer buf, Pointer filler, @off_t long offset, Pointer fi);
  }

  /** create. */
  public interface Create {
    @Delegate int call(Pointer path, @mode_t long mode, Pointer fi);
  }

  /** truncate. */
  public interface Truncate {
    @Delegate int call(Pointer path, @off_t long size);
  }

  /** mkdir, chmod. */
  public interface PathMode {
    @Delegate int call(Pointer path, @mode_t long mode);
  }

  /** mknod. */
  public interface Mknod {
    @Delegate int call(Pointer path, @mode_t long mode, @dev_t long rdev);
  }

  /** unlink, rmdir. */
  public interface OnePath {
    @Delegate int call(Pointer path);
  }

  /** symlink, link, rename. */
  public interface TwoPaths {
    @Delegate int call(Pointer from, Pointer to);
  }

  /** chown. */
  public interface Chown {
    @Delegate int call(Pointer path, @uid_t long uid, @gid_t long gid);
  }

  /** utimens. */
  public interface Utimens {
    @Delegate int call(Pointer path, Pointer times);
  }

  /** setxattr. */
  public interface Setxattr {
    @Delegate int call(Pointer path, Pointer name, Pointer value, @size_t long size, int flags);
  }

  /** getxattr. */
  public interface Getxattr {
    @Delegate int call(Pointer path, Pointer name, Pointer value, @size_t long size);
  }

  /** listxattr. */
  public interface Listxattr {
    @Delegate int call(Pointer path, Pointer list, @size_t long size);
  }

  /** access. */
  public interface Access {
    @Delegate int call(Pointer path, int mask);
  }

  private final List<Object> keep = new ArrayList<>();
  private final Pointer ops;

  private RawCallbacks(FuseOperations ops) {
    this.ops = Struct.getMemory(ops);
  }

  /** A C string as a raw string; null stays null (an unlinked open file has no path). */
  static String raw(Pointer p) {
    return p == null ? null : p.getString(0, 8192, StandardCharsets.ISO_8859_1);
  }

  private static FuseFillDir filler(Pointer p) {
    ClosureHelper h = ClosureHelper.getInstance();
    return h.getNativeConveter(FuseFillDir.class).fromNative(p,
        h.getFromNativeContext());
  }

  /** Puts the raw callbacks in place of jnr-fuse's in {@code ops}; fails loudly if it cannot. */
  static RawCallbacks install(UnionFuse fs, FuseOperations o) {
    RawCallbacks r = new RawCallbacks(o);
    r.put(o.getattr, Getattr.class, (Getattr) (p, st) -> fs.getattr(raw(p), FileStat.of(st)));
    r.put(o.fgetattr, Fgetattr.class,
        (Fgetattr) (p, st, fi) -> fs.fgetattr(raw(p), FileStat.of(st), FuseFileInfo.of(fi)));
    r.put(o.readlink, Readlink.class, (Readlink) (p, buf, n) -> fs.readlink(raw(p), buf, n));
    r.put(o.opendir, PathFi.class, (PathFi) (p, fi) -> fs.opendir(raw(p), FuseFileInfo.of(fi)));
    r.put(o.readdir, Readdir.class, (Readdir) (p, buf, fill, off, fi) ->
        fs.readdir(raw(p), buf, filler(fill), off, FuseFileInfo.of(fi)));
    r.put(o.open, PathFi.class, (PathFi) (p, fi) -> fs.open(raw(p), FuseFileInfo.of(fi)));
    r.put(o.create, Create.class,
        (Create) (p, mode, fi) -> fs.create(raw(p), mode, FuseFileInfo.of(fi)));
    r.put(o.truncate, Truncate.class, (Truncate) (p, size) -> fs.truncate(raw(p), size));
    r.put(o.mkdir, PathMode.class, (PathMode) (p, mode) -> fs.mkdir(raw(p), mode));
    r.put(o.chmod, PathMode.class, (PathMode) (p, mode) -> fs.chmod(raw(p), mode));
    r.put(o.mknod, Mknod.class, (Mknod) (p, mode, dev) -> fs.mknod(raw(p), mode, dev));
    r.put(o.unlink, OnePath.class, (OnePath) p -> fs.unlink(raw(p)));
    r.put(o.rmdir, OnePath.class, (OnePath) p -> fs.rmdir(raw(p)));
    r.put(o.symlink, TwoPaths.class, (TwoPaths) (a, b) -> fs.symlink(raw(a), raw(b)));
    r.put(o.link, TwoPaths.class, (TwoPaths) (a, b) -> fs.link(raw(a), raw(b)));
    r.put(o.rename, TwoPaths.class, (TwoPaths) (a, b) -> fs.rename(raw(a), raw(b)));
    r.put(o.chown, Chown.class, (Chown) (p, uid, gid) -> fs.chown(raw(p), uid, gid));
    r.put(o.utimens, Utimens.class, (Utimens) (p, ts) -> {
      Timespec a = Timespec.of(ts);
      return fs.utimens(raw(p), new Timespec[] {a, Timespec.of(ts.slice(Struct.size(a)))});
    });
    r.put(o.setxattr, Setxattr.class, (Setxattr) (p, n, v, size, flags) ->
        fs.setxattr(raw(p), raw(n), v, size, flags));
    r.put(o.getxattr, Getxattr.class,
        (Getxattr) (p, n, v, size) -> fs.getxattr(raw(p), raw(n), v, size));
    r.put(o.listxattr, Listxattr.class, (Listxattr) (p, l, size) -> fs.listxattr(raw(p), l, size));
    r.put(o.removexattr, OnePathName.class,
        (OnePathName) (p, n) -> fs.removexattr(raw(p), raw(n)));
    r.put(o.access, Access.class, (Access) (p, mask) -> fs.access(raw(p), mask));
    return r;
  }

  /** removexattr. */
  public interface OnePathName {
    @Delegate int call(Pointer path, Pointer name);
  }

  private <T> void put(Object slot, Class<T> type, T impl) {
    Pointer fn = jnr.ffi.Runtime.getSystemRuntime().getClosureManager()
        .getClosurePointer(type, impl);
    ops.putPointer(offset(slot), fn);
    keep.add(impl);
    keep.add(fn);
  }

  /** A struct member's offset, which jnr-ffi keeps to itself. */
  static long offset(Object member) {
    try {
      java.lang.reflect.Method offset =
          Class.forName("jnr.ffi.Struct$Member").getDeclaredMethod("offset");
      offset.setAccessible(true);
      return (Long) offset.invoke(member);
    } catch (ReflectiveOperationException e) {
      throw new IllegalStateException("cannot place strata's FUSE callbacks: jnr-ffi's struct"
          + " layout is not what strata expects (" + e + ")", e);
    }
  }
}
