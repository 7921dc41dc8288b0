package io.strata.union;

import com.github.benmanes.caffeine.cache.Cache;
import com.github.benmanes.caffeine.cache.Caffeine;
import io.strata.layers.Posix;
import io.strata.layers.RawFs;
import io.strata.layers.Trees;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import jnr.ffi.Pointer;

/**
 * The union of read-only lower layers and one writable upper layer, as plain Java: every
 * operation a FUSE adapter needs, by path, with errors as {@link FsException}s.
 *
 * <p>Lookup: one place, {@link #resolve}, walks a path: the upper layer is consulted live (it
 * changes only through this view), the lower layers through {@link LowerTree}'s cache of merged
 * directories (they never change while mounted). An upper whiteout hides a name; an opaque
 * upper directory hides everything below it.
 *
 * <p>Identity: every node has an inode number the view owns: (layer index << 48) | st_ino of
 * the real file it came from, the upper layer being index 0. A copy-up records the lower
 * number in the upper file ({@code *.strata.origin}), so numbers survive copy-up and hard links
 * in a layer share one.
 *
 * <p>Locking: {@code namespace} is held for writing by every operation that changes the upper
 * layer (copy-up included) and for reading by every lookup, so a lookup never sees a half-done
 * change. Reads and writes on open files take no lock: they go straight to the file
 * descriptor. No lock is held across a call into the FUSE kernel module: the view never calls
 * it. This class is long on purpose: it is the hot path, kept in one place.
 */
public final class UnionView implements AutoCloseable {
  /** Mount-time choices; see {@link OverlayOptions} for how the command line sets them. */
  public record Options(WhiteoutForm whiteoutForm, boolean metacopy, boolean xattrs,
      boolean fsync, IdMap uids, IdMap gids, boolean squashToRoot, long cacheEntries) {

    public static Options defaults() {
      return new Options(Posix.isRoot() ? WhiteoutForm.DEVICE : WhiteoutForm.FILE, true, true,
          true, IdMap.IDENTITY, IdMap.IDENTITY, false, 1_000_000);
    }
  }

  /** A directory entry as readdir reports it: name, inode number and file type bits. */
  public record DirEntry(String name, long ino, int type) {}

  /** Filesystem statistics for statfs. */
  public record FsStats(long blockSize, long blocks, long blocksFree, long blocksAvailable,
      long files, long filesFree, long nameMax) {}

  /** What a path resolves to: its upper file (if any) and its topmost lower entry (if any). */
  private record Node(String path, Loc upper, Attr upperAttr, LowerTree.Entry lower,
      boolean lowerDirVisible) {
    boolean isDir() {
      return upperAttr != null ? upperAttr.isDirectory() : lower.isDir();
    }

    Loc real() {
      return upper != null ? upper : lower.path();
    }

    /** The path of this node's merged lower directory, or null if no lower directory shows. */
    String lowerDirPath() {
      return lowerDirVisible ? path : null;
    }
  }

  private static final String ORIGIN_TRUSTED = "trusted.strata.origin";
  private static final String ORIGIN_USER = "user.strata.origin";
  private static final String METACOPY = "trusted.overlay.metacopy";
  private static final String METACOPY_USER = "user.overlay.metacopy";
  private static final int MAX_NAME = 255;

  private final List<Path> lowers;
  private final Path upper; // null: read-only view
  private final Path work;
  private final Path staging;
  // The same directories held open: every call of the view is relative to one of them.
  private final List<Loc> lowerRoots;
  private final Loc upperRoot; // null: read-only view
  private final Loc stagingRoot;
  private final Options opts;
  private final LowerTree lowerTree;
  private final String originXattr;
  private final String metacopyXattr;
  private final ReentrantReadWriteLock namespace = new ReentrantReadWriteLock();
  private final Cache<String, Boolean> upperOpaque;
  /**
   * Directory steps by path, so that a lookup resolves only its last name. A step changes only
   * when its directory is copied up, removed or moved: copy-up replaces it, rmdir and rename
   * drop them all. Filled under the read lock, changed under the write lock.
   */
  private final Cache<String, Step> steps;
  /** Descriptors of dropped steps, closed under the write lock, when no lookup can hold them. */
  private final java.util.concurrent.ConcurrentLinkedQueue<Integer> unusedFds =
      new java.util.concurrent.ConcurrentLinkedQueue<>();
  /** At most this many directory steps, each an open descriptor: a quarter of what we may open. */
  private static final int MAX_OPEN_STEPS = (int) Math.min(8192, openFileLimit() / 4);

  /** The soft RLIMIT_NOFILE, from /proc (Java has no call for it); 1024 if unknown. */
  private static long openFileLimit() {
    try {
      for (String line : Files.readAllLines(Path.of("/proc/self/limits"))) {
        if (line.startsWith("Max open files")) {
          String soft = line.substring("Max open files".length()).trim().split("\\s+")[0];
          return soft.equals("unlimited") ? Long.MAX_VALUE : Long.parseLong(soft);
        }
      }
    } catch (IOException | RuntimeException e) {
      // fall through
    }
    return 1024;
  }
  private final ConcurrentHashMap<Long, OpenFile> open = new ConcurrentHashMap<>();
  private final AtomicLong handles = new AtomicLong(1);
  private final AtomicLong tmpNames = new AtomicLong();
  /** Told the inode number of every node copied up (for a transport's cache invalidation). */
  private volatile java.util.function.LongConsumer copyUpListener = ino -> { };

  /**
   * Whom to tell, after each copy-up, the inode number of the node copied up: its data and
   * number stay, but its ctime, blocks and (for a directory) link count may not. Called under
   * the namespace lock: the listener must only queue.
   */
  public void onCopyUp(java.util.function.LongConsumer listener) {
    this.copyUpListener = listener;
  }

  /**
   * An open file: a descriptor on the real file and, once its last name is gone, the
   * attributes it had (taken at unlink time, so opening costs no stat).
   */
  static final class OpenFile {
    final int fd;
    final String path;
    final boolean writable;
    volatile Attr unlinked;

    OpenFile(int fd, String path, boolean writable) {
      this.fd = fd;
      this.path = path;
      this.writable = writable;
    }
  }

  private UnionView(List<Path> lowers, Path upper, Path work, Options opts) throws IOException {
    this.lowers = List.copyOf(lowers);
    this.upper = upper;
    this.work = work;
    this.staging = work == null ? null : work.resolve("strata-staging");
    this.opts = opts;
    List<Loc> roots = new ArrayList<>();
    for (Path l : lowers) {
      roots.add(openRoot(l));
    }
    this.lowerRoots = List.copyOf(roots);
    this.upperRoot = upper == null ? null : openRoot(upper);
    if (staging != null) {
      Trees.deleteRecursively(staging); // a killed view's half-done copy-ups
      Files.createDirectories(staging);
    }
    this.stagingRoot = staging == null ? null : openRoot(staging);
    this.lowerTree = new LowerTree(lowerRoots, opts.cacheEntries());
    boolean root = Posix.isRoot();
    this.originXattr = root ? ORIGIN_TRUSTED : ORIGIN_USER;
    this.metacopyXattr = root ? METACOPY : METACOPY_USER;
    this.upperOpaque = Caffeine.newBuilder().maximumSize(100_000).recordStats().build();
    this.steps = Caffeine.newBuilder().maximumSize(MAX_OPEN_STEPS).recordStats()
        .executor(Runnable::run)
        .<String, Step>removalListener((k, v, cause) -> {
          if (v != null && v.owned()) {
            unusedFds.add(v.upper().dirfd()); // closed when no operation can be using it
          }
        }).build();
  }

  /**
   * Opens a view. Lowers are top first. Without {@code upper} the view is read-only. The work
   * directory must be on the upper's filesystem; what a killed view left in it is removed.
   */
  public static UnionView open(List<Path> lowers, Path upper, Path work, Options opts)
      throws IOException {
    if (lowers.isEmpty() && upper == null) {
      throw new IllegalArgumentException("a view needs at least one lower layer or an upper");
    }
    List<Path> abs = new ArrayList<>();
    for (Path l : lowers) {
      Path a = l.toAbsolutePath().normalize();
      if (!Files.isDirectory(a)) {
        throw new IllegalArgumentException("lower layer " + l + " is not a directory");
      }
      abs.add(a.toRealPath());
    }
    Path u = null;
    Path w = null;
    if (upper != null) {
      if (work == null) {
        throw new IllegalArgumentException("an upper layer needs a work directory");
      }
      u = upper.toAbsolutePath().normalize();
      w = work.toAbsolutePath().normalize();
      if (!Files.isDirectory(u)) {
        throw new IllegalArgumentException("upper directory " + upper + " is not a directory");
      }
      Files.createDirectories(w);
      u = u.toRealPath();
      w = w.toRealPath();
      if (w.startsWith(u) || u.startsWith(w)) {
        throw new IllegalArgumentException("upper " + u + " and work " + w
            + " must not contain each other");
      }
      Object du = Files.getAttribute(u, "unix:dev");
      Object dw = Files.getAttribute(w, "unix:dev");
      if (!du.equals(dw)) {
        throw new IllegalArgumentException("work directory " + w
            + " must be on the same filesystem as the upper " + u + " (copy-up renames across them)");
      }
      for (Path l : abs) {
        if (l.startsWith(u) || u.startsWith(l)) {
          throw new IllegalArgumentException("lower " + l + " and upper " + u
              + " must not contain each other");
        }
      }
    }
    return new UnionView(abs, u, w, opts);
  }

  private static Loc openRoot(Path dir) throws IOException {
    return new Loc(RawFs.open(RawFs.AT_FDCWD, RawFs.raw(dir), RawFs.O_PATH | RawFs.O_DIRECTORY, 0),
        "");
  }

  public List<Path> lowers() {
    return lowers;
  }

  public Path upper() {
    return upper;
  }

  /** Hit rates and sizes of the view's caches, for logs and benchmarks. */
  public String cacheReport() {
    var s = lowerTree.stats();
    var o = upperOpaque.stats();
    var d = steps.stats();
    return String.format("lower directories: %d cached, hit rate %.1f%% (%d hits, %d misses);"
        + " upper opacity: hit rate %.1f%%; directory steps: %d cached, hit rate %.1f%%",
        lowerTree.cachedDirectories(), 100 * s.hitRate(), s.hitCount(), s.missCount(),
        100 * o.hitRate(), steps.estimatedSize(), 100 * d.hitRate());
  }

  // ---------------------------------------------------------------- lookup

  /** Turns "/a/b" into "a/b" and "/" into "", checking every name's length. */
  private static String rel(String path) throws FsException {
    if (path == null || !path.startsWith("/")) {
      throw new FsException(Posix.EINVAL, "bad path " + path);
    }
    String r = path.substring(1);
    if (r.endsWith("/")) {
      r = r.substring(0, r.length() - 1);
    }
    int start = 0;
    while (start <= r.length()) {
      int slash = r.indexOf('/', start);
      int end = slash < 0 ? r.length() : slash;
      if (end - start > MAX_NAME) { // raw: one char per byte
        throw new FsException(Posix.ENAMETOOLONG, "name too long in " + path);
      }
      if (slash < 0) {
        break;
      }
      start = slash + 1;
    }
    return r;
  }

  private Node resolve(String path) throws FsException {
    return resolveRel(rel(path));
  }

  /**
   * Where a directory's children are looked up: its upper directory (null if the upper has
   * none there) and its merged lower directory's path (null if no lower directory shows). The
   * upper directory is held open ({@code owned}: the cache closes it), so that looking up a
   * child costs one short *at call whatever the depth.
   */
  private record Step(Loc upper, String lower, boolean owned) {}

  /**
   * Resolves a relative path: its parent's {@link Step} comes from the cache of directory
   * steps (or is resolved and cached, ancestors first), and only the last name is looked up,
   * so a lookup costs the same at any depth. ENOENT or ENOTDIR when it does not resolve.
   */
  private Node resolveRel(String rel) throws FsException {
    try {
      if (rel.isEmpty()) {
        LowerTree.Entry rootEntry = lowers.isEmpty() ? null
            : new LowerTree.Entry("", 1, lowerRoots.get(0), true, lowerRoots,
                Stat.lstat(lowerRoots.get(0)));
        return new Node("", upperRoot, upperRoot == null ? null : Stat.lstat(upperRoot),
            rootEntry, !lowers.isEmpty());
      }
      int slash = rel.lastIndexOf('/');
      Step parent = step(slash < 0 ? "" : rel.substring(0, slash));
      return lookup(parent, rel, rel.substring(slash + 1));
    } catch (IOException e) {
      throw FsException.from(e);
    } catch (UncheckedIOException e) {
      throw FsException.from(e.getCause());
    }
  }

  /** The step of the directory {@code dir}: cached, or resolved from its nearest cached ancestor. */
  private Step step(String dir) throws FsException, IOException {
    java.util.ArrayDeque<String> missing = new java.util.ArrayDeque<>();
    Step s = null;
    String d = dir;
    while (!d.isEmpty() && (s = steps.getIfPresent(d)) == null) {
      missing.push(d);
      d = parentOf(d);
    }
    if (s == null) {
      s = new Step(upperRoot, lowers.isEmpty() ? null : "", false);
    }
    while (!missing.isEmpty()) {
      String sub = missing.pop();
      Node n = lookup(s, sub, name(sub));
      if (!n.isDir()) {
        throw FsException.of(Posix.ENOTDIR, "/" + sub);
      }
      Loc up = null;
      boolean owned = false;
      if (n.upperAttr() != null && n.upperAttr().isDirectory()) {
        try {
          up = new Loc(RawFs.open(n.upper().dirfd(), n.upper().rel(),
              RawFs.O_PATH | RawFs.O_DIRECTORY | RawFs.O_NOFOLLOW, 0), "");
          owned = true;
        } catch (Posix.PosixException outOfDescriptors) {
          // EMFILE and the like: the path from the upper's root, which stays open, still works
          up = new Loc(upperRoot.dirfd(), sub);
        }
      }
      s = new Step(up, n.lowerDirVisible() ? sub : null, owned);
      steps.put(sub, s);
    }
    return s;
  }

  /** Looks {@code name} up in the directory {@code at}; {@code sub} is the path it makes. */
  private Node lookup(Step at, String sub, String name) throws FsException, IOException {
    if (name.isEmpty() || name.equals(".") || name.equals("..")) {
      throw new FsException(Posix.EINVAL, "bad name in /" + sub);
    }
    if (Markers.isWhiteoutName(name)) {
      throw FsException.of(Posix.ENOENT, "/" + sub); // overlay markers are never visible
    }
    LowerTree.Entry le = null;
    if (at.lower() != null) {
      LowerTree.Dir d = lowerTree.dir(at.lower());
      le = d == null ? null : d.entries().get(name);
    }
    Loc u = null;
    Attr ua = null;
    if (at.upper() != null) {
      Loc cand = at.upper().child(name);
      ua = Stat.lstat(cand);
      if (Markers.isWhiteoutDevice(ua)) {
        throw FsException.of(Posix.ENOENT, "/" + sub);
      }
      if (ua != null) {
        u = cand;
      } else if (le != null && Markers.hasWhiteoutFile(at.upper(), name)) {
        throw FsException.of(Posix.ENOENT, "/" + sub);
      }
    }
    if (u == null && le == null) {
      throw FsException.of(Posix.ENOENT, "/" + sub);
    }
    boolean upperIsDir = ua != null && ua.isDirectory();
    // The lower entry is kept even when the upper hides it: removing or renaming the name
    // must then leave a whiteout. It shows through only below an upper directory that is
    // not opaque (an upper non-directory hides everything below it).
    boolean lowerShows = le != null
        && (ua == null || (upperIsDir && le.isDir() && !isUpperOpaque(sub, u)));
    return new Node(sub, u, ua, le, lowerShows && le.isDir());
  }

  private boolean isUpperOpaque(String rel, Loc dir) throws IOException {
    Boolean cached = upperOpaque.getIfPresent(rel);
    if (cached != null) {
      return cached;
    }
    boolean o = Markers.isOpaque(dir);
    upperOpaque.put(rel, o);
    return o;
  }

  // ---------------------------------------------------------------- reading

  public Attr getattr(String path) throws FsException {
    lockRead();
    try {
      return attrOf(resolve(path));
    } finally {
      namespace.readLock().unlock();
    }
  }

  /** Attributes of an open file: by path while it has one, else from its descriptor. */
  public Attr fgetattr(String path, long fh) throws FsException {
    OpenFile f = open.get(fh);
    Attr gone = f == null ? null : f.unlinked;
    if (gone != null) {
      long end = Io.LIBC.lseek(f.fd, 0, 2 /* SEEK_END */);
      return gone.withNlink(0).withSize(end < 0 ? gone.size() : end);
    }
    return getattr(path != null ? path : f == null ? null : "/" + f.path);
  }

  private Attr attrOf(Node n) throws FsException {
    try {
      Attr a;
      long ino;
      if (n.upper() != null) {
        a = n.upperAttr();
        ino = upperIno(n.upper(), a);
      } else {
        a = n.lower().attr(); // lower layers never change while mounted: stat'ed once, at merge
        ino = compose(n.lower().layer(), a.ino());
        if (a.nlink() > 1 && !a.isDirectory()) {
          a = a.withLowerLink();
        }
      }
      if (n.path().isEmpty()) {
        ino = 1; // the root is inode 1, as FUSE numbers it
      }
      a = a.withIno(ino);
      if (a.isDirectory() && isMerged(n)) {
        a = a.withNlink(1); // as the kernel reports a merged directory: its count is not knowable
      }
      return mapIds(a);
    } catch (IOException e) {
      throw FsException.from(e);
    }
  }

  private boolean isMerged(Node n) {
    if (!n.lowerDirVisible()) {
      return false;
    }
    if (n.upper() != null) {
      return true;
    }
    LowerTree.Dir d = lowerTree.dir(n.path());
    return d != null && d.layers().size() > 1;
  }

  private Attr mapIds(Attr a) {
    if (opts.squashToRoot()) {
      return new Attr(a.ino(), a.mode(), a.nlink(), 0, 0, a.rdev(), a.size(), a.blocks(),
          a.atimeNanos(), a.mtimeNanos(), a.ctimeNanos(), a.lowerLink());
    }
    if (opts.uids().isIdentity() && opts.gids().isIdentity()) {
      return a;
    }
    return new Attr(a.ino(), a.mode(), a.nlink(), opts.uids().toContainer(a.uid()),
        opts.gids().toContainer(a.gid()), a.rdev(), a.size(), a.blocks(), a.atimeNanos(),
        a.mtimeNanos(), a.ctimeNanos(), a.lowerLink());
  }

  /** An upper file's number: its origin's if it was copied up, else its own. */
  private long upperIno(Loc p, Attr a) throws IOException {
    byte[] origin = RawFs.lgetxattr(p.dirfd(), p.rel(), originXattr);
    return origin != null && origin.length == 8
        ? java.nio.ByteBuffer.wrap(origin).getLong() : compose(0, a.ino());
  }

  static long compose(int layer, long ino) {
    return ((long) layer << 48) | (ino & 0xffff_ffff_ffffL);
  }

  /**
   * The merged listing of a directory without "." and "..", in kernel overlayfs's order: the
   * upper directory's own order, then the lower entries in merge order. Stable while nothing
   * changes, and the same bytes from {@code tar -c} as on a kernel overlay.
   */
  public List<DirEntry> readdir(String path) throws FsException {
    lockRead();
    try {
      Node n = resolve(path);
      if (!n.isDir()) {
        throw FsException.of(Posix.ENOTDIR, path);
      }
      return list(n);
    } finally {
      namespace.readLock().unlock();
    }
  }

  private List<DirEntry> list(Node n) throws FsException {
    Map<String, DirEntry> out = new java.util.LinkedHashMap<>();
    java.util.Set<String> hidden = new java.util.HashSet<>();
    try {
      if (n.upper() != null) {
        {
          for (RawFs.DirEntry de : RawFs.list(n.upper().dirfd(), n.upper().rel())) {
            String name = de.name();
            Loc c = n.upper().child(name);
            if (Markers.isWhiteoutName(name)) {
              hidden.add(name.substring(Markers.WH_PREFIX.length()));
              continue;
            }
            Attr a = Stat.lstat(c);
            if (a == null) {
              continue;
            }
            if (Markers.isWhiteoutDevice(a)) {
              hidden.add(name);
              continue;
            }
            out.put(name, new DirEntry(name, upperIno(c, a), a.type()));
          }
        }
      }
      String lowerPath = n.lowerDirPath();
      if (lowerPath != null) {
        LowerTree.Dir d = lowerTree.dir(lowerPath);
        if (d != null) {
          for (LowerTree.Entry e : d.entries().values()) {
            if (!out.containsKey(e.name()) && !hidden.contains(e.name())) {
              out.put(e.name(), new DirEntry(e.name(), compose(e.layer(), e.ino()), e.type()));
            }
          }
        }
      }
    } catch (IOException e) {
      throw FsException.from(e);
    } catch (UncheckedIOException e) {
      throw FsException.from(e.getCause());
    }
    return new ArrayList<>(out.values());
  }

  /**
   * The bytes of a small regular file of the view (at most {@code max}), or null when there is
   * no regular file there: for reading an image's /etc/passwd before it runs.
   */
  public byte[] readSmallFile(String path, int max) throws FsException {
    lockRead();
    try {
      Node n;
      try {
        n = resolve(path);
      } catch (FsException e) {
        if (e.errno() == Posix.ENOENT || e.errno() == Posix.ENOTDIR) {
          return null;
        }
        throw e;
      }
      Loc real = n.real();
      if (n.upper() != null && n.lower() != null && isMetacopy(n.upper())) {
        real = n.lower().path(); // the data is still below
      }
      Attr a = attrOf(n);
      if (a.type() != Posix.S_IFREG) {
        return null;
      }
      int fd = Io.open(real, Io.O_RDONLY, 0);
      try (java.io.InputStream in = Files.newInputStream(Path.of("/proc/self/fd/" + fd))) {
        return in.readNBytes(max);
      } finally {
        Io.close(fd);
      }
    } catch (IOException e) {
      throw FsException.from(e);
    } finally {
      namespace.readLock().unlock();
    }
  }

  public String readlink(String path) throws FsException {
    lockRead();
    try {
      Node n = resolve(path);
      return RawFs.readlink(n.real().dirfd(), n.real().rel());
    } catch (IOException e) {
      throw FsException.from(e);
    } finally {
      namespace.readLock().unlock();
    }
  }

  /** Opens a file; opening for writing or with O_TRUNC copies it up first. */
  public long open(String path, int flags) throws FsException {
    boolean write = (flags & Io.O_ACCMODE) != Io.O_RDONLY || (flags & Io.O_TRUNC) != 0;
    if (!write) {
      lockRead();
      try {
        Node n = resolve(path);
        Loc real = n.real();
        if (n.upper() != null && n.lower() != null && isMetacopy(n.upper())) {
          real = n.lower().path(); // metadata was copied up, the data is still below
        }
        return register(Io.open(real, flags & ~(Io.O_CREAT | Io.O_EXCL | Io.O_DIRECT), 0),
            n.path(), false);
      } catch (IOException e) {
        throw FsException.from(e);
      } finally {
        namespace.readLock().unlock();
      }
    }
    requireWritable(path);
    lockWrite();
    try {
      Node n = resolve(path);
      if (n.isDir()) {
        throw FsException.of(Posix.EISDIR, path);
      }
      Loc real = copyUp(n, true);
      int fd = Io.open(real, flags & ~(Io.O_CREAT | Io.O_EXCL | Io.O_DIRECT), 0);
      return register(fd, n.path(), true);
    } finally {
      namespace.writeLock().unlock();
    }
  }

  private long register(int fd, String rel, boolean writable) {
    long fh = handles.getAndIncrement();
    open.put(fh, new OpenFile(fd, rel, writable));
    return fh;
  }

  public int read(long fh, Pointer buf, long size, long offset) throws FsException {
    OpenFile f = handle(fh);
    long total = 0;
    while (total < size) {
      long n = Io.LIBC.pread(f.fd, buf.slice(total), size - total, offset + total);
      if (n < 0) {
        throw FsException.of(Io.errno(), "read /" + f.path);
      }
      if (n == 0) {
        break;
      }
      total += n;
    }
    return (int) total;
  }

  public int write(long fh, Pointer buf, long size, long offset) throws FsException {
    OpenFile f = handle(fh);
    if (!f.writable) {
      throw FsException.of(Posix.EBADF, "write /" + f.path);
    }
    long total = 0;
    while (total < size) {
      long n = Io.LIBC.pwrite(f.fd, buf.slice(total), size - total, offset + total);
      if (n < 0) {
        throw FsException.of(Io.errno(), "write /" + f.path);
      }
      total += n;
    }
    return (int) total;
  }

  public void fsync(long fh, boolean dataOnly) throws FsException {
    OpenFile f = handle(fh);
    if (!opts.fsync()) {
      return;
    }
    Io.check(dataOnly ? Io.LIBC.fdatasync(f.fd) : Io.LIBC.fsync(f.fd), "fsync /" + f.path);
  }

  public void release(long fh) {
    OpenFile f = open.remove(fh);
    if (f != null) {
      Io.close(f.fd);
    }
  }

  public void ftruncate(long fh, long size) throws FsException {
    OpenFile f = handle(fh);
    if (!f.writable) {
      throw FsException.of(Posix.EBADF, "truncate /" + f.path);
    }
    Io.check(Io.LIBC.ftruncate(f.fd, size), "ftruncate /" + f.path);
  }

  public void fallocate(long fh, int mode, long offset, long length) throws FsException {
    OpenFile f = handle(fh);
    if (!f.writable) {
      throw FsException.of(Posix.EBADF, "fallocate /" + f.path);
    }
    Io.check(Io.LIBC.fallocate(f.fd, mode, offset, length), "fallocate /" + f.path);
  }

  /** lseek(2) on an open file: SEEK_DATA and SEEK_HOLE see the real file's holes. */
  public long lseek(long fh, long offset, int whence) throws FsException {
    OpenFile f = handle(fh);
    long r = Io.LIBC.lseek(f.fd, offset, whence);
    if (r < 0) {
      throw FsException.of(Io.errno(), "lseek /" + f.path);
    }
    return r;
  }

  /** copy_file_range(2) between two open files of the view; returns the bytes copied. */
  public long copyFileRange(long fhIn, long offIn, long fhOut, long offOut, long len)
      throws FsException {
    OpenFile in = handle(fhIn);
    OpenFile out = handle(fhOut);
    if (!out.writable) {
      throw FsException.of(Posix.EBADF, "copy_file_range to /" + out.path);
    }
    var oi = new jnr.ffi.byref.LongLongByReference(offIn);
    var oo = new jnr.ffi.byref.LongLongByReference(offOut);
    long n = Io.LIBC.copy_file_range(in.fd, oi, out.fd, oo, len, 0);
    if (n < 0) {
      throw FsException.of(Io.errno(), "copy_file_range /" + in.path);
    }
    return n;
  }

  /**
   * The descriptor of the real file behind an open file, for a transport that hands it to the
   * kernel (FUSE passthrough). It stays the view's: valid until {@link #release}.
   */
  public int descriptor(long fh) throws FsException {
    return handle(fh).fd;
  }

  private OpenFile handle(long fh) throws FsException {
    OpenFile f = open.get(fh);
    if (f == null) {
      throw new FsException(Posix.EBADF, "no open file " + fh);
    }
    return f;
  }

  public byte[] getxattr(String path, String name) throws FsException {
    requireXattrs();
    if (Markers.isPrivateXattr(name)) {
      throw new FsException(Posix.ENODATA, name);
    }
    lockRead();
    try {
      Loc real = resolve(path).real();
      byte[] v = RawFs.lgetxattr(real.dirfd(), real.rel(), name);
      if (v == null) {
        throw new FsException(Posix.ENODATA, name);
      }
      return v;
    } catch (IOException e) {
      throw FsException.from(e);
    } finally {
      namespace.readLock().unlock();
    }
  }

  public List<String> listxattr(String path) throws FsException {
    requireXattrs();
    lockRead();
    try {
      List<String> out = new ArrayList<>();
      Loc real = resolve(path).real();
      for (String n : RawFs.llistxattr(real.dirfd(), real.rel())) {
        if (!Markers.isPrivateXattr(n)) {
          out.add(n);
        }
      }
      return out;
    } catch (IOException e) {
      throw FsException.from(e);
    } finally {
      namespace.readLock().unlock();
    }
  }

  public FsStats statfs() throws FsException {
    try {
      Path p = upper != null ? upper : lowers.get(0);
      var store = Files.getFileStore(p);
      long bs = store.getBlockSize();
      return new FsStats(bs, store.getTotalSpace() / bs, store.getUnallocatedSpace() / bs,
          store.getUsableSpace() / bs, 0, 0, MAX_NAME);
    } catch (IOException e) {
      throw FsException.from(e);
    }
  }

  public void access(String path) throws FsException {
    getattr(path);
  }

  // ---------------------------------------------------------------- writing

  public long create(String path, int mode, int flags, int uid, int gid) throws FsException {
    requireWritable(path);
    lockWrite();
    try {
      String rel = rel(path);
      Loc target = prepareNew(rel);
      int fd = Io.open(target, (flags | Io.O_CREAT | Io.O_EXCL) & ~(Io.O_TRUNC | Io.O_DIRECT),
          0600);
      try {
        finishNew(target, mode, uid, gid, false);
        return register(fd, rel, (flags & Io.O_ACCMODE) != Io.O_RDONLY);
      } catch (FsException | RuntimeException e) {
        Io.close(fd);
        throw e;
      }
    } finally {
      namespace.writeLock().unlock();
    }
  }

  public void mknod(String path, int mode, long rdev, int uid, int gid) throws FsException {
    mutate(path, () -> {
      Loc target = prepareNew(rel(path));
      int type = mode & Posix.S_IFMT;
      if (type == Posix.S_IFREG || type == 0) {
        Io.close(Io.open(target, Io.O_CREAT | Io.O_EXCL | Io.O_WRONLY, 0600));
      } else {
        RawFs.mknod(target.dirfd(), target.rel(), (mode & Posix.S_IFMT) | 0600, (int) ((rdev >>> 8) & 0xfff),
            (int) ((rdev & 0xff) | ((rdev >>> 12) & 0xfff00)));
      }
      finishNew(target, mode, uid, gid, false);
    });
  }

  public void mkdir(String path, int mode, int uid, int gid) throws FsException {
    mutate(path, () -> {
      String rel = rel(path);
      NewName created = prepareNew(rel, false);
      Loc target = created.path();
      RawFs.mkdir(target.dirfd(), target.rel(), 0700);
      finishNew(target, mode, uid, gid, false);
      if (created.hadWhiteout()) {
        // Something of that name was deleted from a lower layer: keep it hidden.
        Markers.markOpaque(target, opts.whiteoutForm());
        upperOpaque.put(rel, true);
      } else {
        upperOpaque.put(rel, false);
      }
    });
  }

  public void symlink(String target, String path, int uid, int gid) throws FsException {
    mutate(path, () -> {
      Loc link = prepareNew(rel(path));
      RawFs.symlink(target, link.dirfd(), link.rel());
      finishNew(link, 0777, uid, gid, true);
    });
  }

  public void link(String from, String to) throws FsException {
    mutate(to, () -> {
      Node src = resolve(from);
      if (src.isDir()) {
        throw FsException.of(Posix.EPERM, from);
      }
      Loc existing = copyUp(src, true);
      Loc link = prepareNew(rel(to));
      RawFs.link(existing.dirfd(), existing.rel(), link.dirfd(), link.rel());
    });
  }

  public void unlink(String path) throws FsException {
    mutate(path, () -> {
      Node n = resolve(path);
      if (n.isDir()) {
        throw FsException.of(Posix.EISDIR, path);
      }
      List<OpenFile> orphaned = lastNameOpen(n);
      Attr before = orphaned.isEmpty() ? null : attrOf(n);
      removeNode(n);
      orphaned.forEach(f -> f.unlinked = before);
    });
  }

  public void rmdir(String path) throws FsException {
    mutate(path, () -> {
      Node n = resolve(path);
      if (!n.isDir()) {
        throw FsException.of(Posix.ENOTDIR, path);
      }
      if (n.path().isEmpty()) {
        throw FsException.of(Posix.EBUSY, path);
      }
      if (!list(n).isEmpty()) {
        throw FsException.of(Posix.ENOTEMPTY, path);
      }
      removeNode(n);
    });
  }

  /**
   * Renames within the view. A directory that a lower layer contributes to cannot move (EXDEV,
   * as fuse-overlayfs and the kernel without redirect_dir); programs such as mv then copy.
   */
  public void rename(String from, String to) throws FsException {
    rename(from, to, 0);
  }

  /** RENAME_NOREPLACE: fail with EEXIST when the target exists. */
  public static final int RENAME_NOREPLACE = 1;
  /** RENAME_EXCHANGE: swap the two names, which must both exist. */
  public static final int RENAME_EXCHANGE = 2;

  /**
   * rename(2) with renameat2's flags: {@link #RENAME_NOREPLACE}, decided under the namespace
   * lock (no race with a create of the target), and {@link #RENAME_EXCHANGE}, which swaps the
   * two names in the upper layer after copying both up. A directory that a lower layer
   * contributes to moves neither way (EXDEV). RENAME_WHITEOUT is refused (EINVAL).
   */
  public void rename(String from, String to, int flags) throws FsException {
    if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) != 0
        || flags == (RENAME_NOREPLACE | RENAME_EXCHANGE)) {
      throw new FsException(Posix.EINVAL, "rename flags " + flags);
    }
    if (flags == RENAME_EXCHANGE) {
      exchange(from, to);
      return;
    }
    mutate(to, () -> {
      Node src = resolve(from);
      String toRel = rel(to);
      if ((flags & RENAME_NOREPLACE) != 0) {
        try {
          resolveRel(toRel);
          throw FsException.of(Posix.EEXIST, to);
        } catch (FsException e) {
          if (e.errno() != Posix.ENOENT) {
            throw e;
          }
        }
      }
      if (src.path().isEmpty() || toRel.equals(src.path())) {
        if (toRel.equals(src.path())) {
          return;
        }
        throw FsException.of(Posix.EBUSY, from);
      }
      if (toRel.startsWith(src.path() + "/")) {
        throw FsException.of(Posix.EINVAL, to + " is inside " + from);
      }
      Node dst = null;
      try {
        dst = resolveRel(toRel);
      } catch (FsException e) {
        if (e.errno() != Posix.ENOENT) {
          throw e;
        }
      }
      if (src.isDir() && src.lowerDirVisible()) {
        throw FsException.of(Posix.EXDEV, from);
      }
      if (dst != null) {
        if (src.isDir() && !dst.isDir()) {
          throw FsException.of(Posix.ENOTDIR, to);
        }
        if (!src.isDir() && dst.isDir()) {
          throw FsException.of(Posix.EISDIR, to);
        }
        if (dst.isDir() && !list(dst).isEmpty()) {
          throw FsException.of(Posix.ENOTEMPTY, to);
        }
      }
      Loc srcUpper = copyUp(src, true);
      boolean dstHadLowerDir = dst != null && dst.lowerDirVisible();
      NewName moved = prepareNew(toRel, dst != null);
      Loc target = moved.path();
      if (dst != null && dst.upper() != null && dst.isDir()) {
        clearMarkers(dst.upper());
      }
      RawFs.rename(srcUpper.dirfd(), srcUpper.rel(), target.dirfd(), target.rel(), 0);
      if (src.lower() != null) {
        Markers.writeWhiteout(srcUpper.parent(), name(src.path()), opts.whiteoutForm());
      }
      if (src.isDir() && (dstHadLowerDir || (dst == null && moved.hadWhiteout()))) {
        Markers.markOpaque(target, opts.whiteoutForm());
      }
      upperOpaque.invalidateAll();
      steps.invalidateAll(); // the moved directory's and everything below it
    });
  }

  private void exchange(String a, String b) throws FsException {
    mutate(b, () -> {
      Node na = resolve(a);
      Node nb = resolve(b);
      if (na.path().equals(nb.path())) {
        return;
      }
      if (na.path().isEmpty() || nb.path().isEmpty()) {
        throw FsException.of(Posix.EBUSY, a);
      }
      if (nb.path().startsWith(na.path() + "/") || na.path().startsWith(nb.path() + "/")) {
        throw FsException.of(Posix.EINVAL, a + " and " + b + " contain each other");
      }
      if ((na.isDir() && na.lowerDirVisible()) || (nb.isDir() && nb.lowerDirVisible())) {
        throw FsException.of(Posix.EXDEV, na.isDir() && na.lowerDirVisible() ? a : b);
      }
      Loc ua = copyUp(na, true);
      Loc ub = copyUp(nb, true);
      RawFs.rename(ua.dirfd(), ua.rel(), ub.dirfd(), ub.rel(), RENAME_EXCHANGE);
      // A directory arriving where a lower directory of that name is must hide it.
      if (nb.isDir() && na.lower() != null && na.lower().isDir()) {
        Markers.markOpaque(ua, opts.whiteoutForm());
      }
      if (na.isDir() && nb.lower() != null && nb.lower().isDir()) {
        Markers.markOpaque(ub, opts.whiteoutForm());
      }
      upperOpaque.invalidateAll();
      steps.invalidateAll();
    });
  }

  public void chmod(String path, int mode) throws FsException {
    mutate(path, () -> {
      Loc p = copyUp(resolve(path), !opts.metacopy());
      RawFs.chmod(p.dirfd(), p.rel(), mode & 07777);
    });
  }

  public void chown(String path, int uid, int gid) throws FsException {
    mutate(path, () -> {
      Node n = resolve(path);
      Loc p = copyUp(n, !opts.metacopy());
      Attr a = Stat.lstat(p);
      int hostUid = uid == -1 ? a.uid() : opts.uids().toHost(uid);
      int hostGid = gid == -1 ? a.gid() : opts.gids().toHost(gid);
      RawFs.lchown(p.dirfd(), p.rel(), hostUid, hostGid); // clears setuid/setgid as chown(2) does
    });
  }

  /** Sets times; -1 leaves a time as it is (UTIME_OMIT), -2 means now (UTIME_NOW). */
  public void utimens(String path, long atimeNanos, long mtimeNanos) throws FsException {
    mutate(path, () -> {
      Loc p = copyUp(resolve(path), !opts.metacopy());
      Times.set(p, atimeNanos, mtimeNanos);
    });
  }

  public void truncate(String path, long size) throws FsException {
    mutate(path, () -> {
      Node n = resolve(path);
      if (n.isDir()) {
        throw FsException.of(Posix.EISDIR, path);
      }
      int fd = Io.open(copyUp(n, true), Io.O_WRONLY, 0);
      try {
        Io.check(Io.LIBC.ftruncate(fd, size), "truncate " + path);
      } finally {
        Io.close(fd);
      }
    });
  }

  public void setxattr(String path, String name, byte[] value, int flags) throws FsException {
    requireXattrs();
    if (Markers.isPrivateXattr(name)) {
      throw new FsException(Posix.EPERM, name + " is reserved for the overlay");
    }
    mutate(path, () -> {
      Loc p = copyUp(resolve(path), !opts.metacopy());
      if ((flags & 1) != 0 && RawFs.lgetxattr(p.dirfd(), p.rel(), name) != null) {
        throw new FsException(Posix.EEXIST, name); // XATTR_CREATE
      }
      if ((flags & 2) != 0 && RawFs.lgetxattr(p.dirfd(), p.rel(), name) == null) {
        throw new FsException(Posix.ENODATA, name); // XATTR_REPLACE
      }
      RawFs.lsetxattr(p.dirfd(), p.rel(), name, value);
    });
  }

  public void removexattr(String path, String name) throws FsException {
    requireXattrs();
    if (Markers.isPrivateXattr(name)) {
      throw new FsException(Posix.ENODATA, name);
    }
    mutate(path, () -> {
      Node n = resolve(path);
      if (RawFs.lgetxattr(n.real().dirfd(), n.real().rel(), name) == null) {
        throw new FsException(Posix.ENODATA, name);
      }
      Loc p = copyUp(n, !opts.metacopy());
      RawFs.lremovexattr(p.dirfd(), p.rel(), name);
    });
  }

  // ---------------------------------------------------------------- the upper layer

  /** A change to the upper layer: one shape for every mutating operation. */
  @FunctionalInterface
  private interface Mutation {
    void run() throws IOException, FsException;
  }

  /** Runs a change under the namespace write lock, refusing it on a read-only view. */
  private void mutate(String path, Mutation m) throws FsException {
    requireWritable(path);
    lockWrite();
    try {
      m.run();
    } catch (IOException e) {
      throw FsException.from(e);
    } finally {
      namespace.writeLock().unlock();
    }
  }

  private void requireWritable(String path) throws FsException {
    if (upper == null) {
      throw FsException.of(Posix.EROFS, path);
    }
  }

  private void requireXattrs() throws FsException {
    if (!opts.xattrs()) {
      throw new FsException(Posix.ENOTSUP, "xattrs are disabled (noxattrs)");
    }
  }

  /**
   * Where a new name goes in the upper layer, and whether a whiteout of that name was removed
   * to make room (something of the name was deleted from a lower layer).
   */
  private record NewName(Loc path, boolean hadWhiteout) {}

  private Loc prepareNew(String rel) throws FsException {
    return prepareNew(rel, false).path();
  }

  /**
   * Checks that {@code rel} may be created (its parent is a directory, its name is legal and,
   * unless {@code replacing}, free), copies the parent up and removes a whiteout of the name.
   */
  private NewName prepareNew(String rel, boolean replacing) throws FsException {
    String name = name(rel);
    if (Markers.isWhiteoutName(name)) {
      throw new FsException(Posix.EINVAL, "names starting with .wh. are reserved for whiteouts");
    }
    if (!replacing) {
      try {
        resolveRel(rel);
        throw FsException.of(Posix.EEXIST, "/" + rel);
      } catch (FsException e) {
        if (e.errno() != Posix.ENOENT) {
          throw e;
        }
      }
    }
    Node parent = resolveRel(parentOf(rel));
    if (!parent.isDir()) {
      throw FsException.of(Posix.ENOTDIR, "/" + parentOf(rel));
    }
    try {
      Loc dir = copyUp(parent, false);
      boolean hadWhiteout = Markers.removeWhiteout(dir, name);
      return new NewName(dir.child(name), hadWhiteout);
    } catch (IOException e) {
      throw FsException.from(e);
    }
  }

  /** Gives a new upper node its caller's owner and exact mode (the kernel applied the umask). */
  private void finishNew(Loc p, int mode, int uid, int gid, boolean symlink) throws FsException {
    try {
      RawFs.lchown(p.dirfd(), p.rel(), opts.uids().toHost(uid), opts.gids().toHost(gid));
      if (!symlink) {
        RawFs.chmod(p.dirfd(), p.rel(), mode & 07777);
      }
    } catch (IOException e) {
      throw FsException.from(e);
    }
  }

  /** Removes a node from the view: its upper file goes, and a whiteout hides any lower one. */
  private void removeNode(Node n) throws IOException, FsException {
    Loc parent = copyUp(resolveRel(parentOf(n.path())), false);
    if (n.upper() != null) {
      if (n.upperAttr().isDirectory()) {
        clearMarkers(n.upper());
        RawFs.rmdir(n.upper().dirfd(), n.upper().rel());
      } else {
        RawFs.unlink(n.upper().dirfd(), n.upper().rel());
      }
    }
    if (n.lower() != null) {
      Markers.writeWhiteout(parent, name(n.path()), opts.whiteoutForm());
    }
    upperOpaque.invalidate(n.path());
    if (n.isDir()) {
      steps.invalidateAll(); // the removed directory's and everything below it
    }
  }

  /** Empties an upper directory of the whiteouts and markers that make it look non-empty. */
  private static void clearMarkers(Loc dir) throws IOException {
    for (RawFs.DirEntry e : RawFs.list(dir.dirfd(), dir.rel())) {
      // only whiteouts remain in a directory the view shows as empty
      RawFs.unlink(dir.dirfd(), dir.child(e.name()).rel());
    }
  }

  /** The open files that lose their last name when {@code n} is unlinked. */
  private List<OpenFile> lastNameOpen(Node n) {
    List<OpenFile> out = new ArrayList<>();
    if (n.upperAttr() != null && n.upperAttr().nlink() > 1) {
      return out;
    }
    for (OpenFile f : open.values()) {
      if (f.path.equals(n.path())) {
        out.add(f);
      }
    }
    return out;
  }

  private boolean isMetacopy(Loc p) throws IOException {
    return RawFs.lgetxattr(p.dirfd(), p.rel(), metacopyXattr) != null;
  }

  /**
   * Makes sure {@code n} exists in the upper layer and returns its upper path. Parents are
   * copied up first. A file is staged in the work directory with data (or, for
   * {@code withData == false}, only its size, marked metacopy), owner, mode, xattrs, times and
   * origin, then renamed into place, so a failure leaves nothing half-written in the upper.
   */
  private Loc copyUp(Node n, boolean withData) throws FsException {
    try {
      if (n.upper() != null) {
        if (withData && !n.upperAttr().isDirectory() && isMetacopy(n.upper())) {
          return completeMetacopy(n);
        }
        return n.upper();
      }
      Loc parent = copyUp(resolveRel(parentOf(n.path())), false);
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
        copyMetadata(src, tmp, a, breaksLink ? -1 : compose(n.lower().layer(), a.ino()));
        if (meta) {
          RawFs.lsetxattr(tmp.dirfd(), tmp.rel(), metacopyXattr, new byte[0]);
        }
        Loc target = parent.child(name(n.path()));
        RawFs.rename(tmp.dirfd(), tmp.rel(), target.dirfd(), target.rel(), 0);
        if (a.type() == Posix.S_IFDIR) {
          upperOpaque.put(n.path(), false);
          steps.invalidate(n.path()); // it has an upper directory now
        }
        copyUpListener.accept(compose(n.lower().layer(), a.ino()));
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

  private static String parentOf(String rel) {
    int slash = rel.lastIndexOf('/');
    return slash < 0 ? "" : rel.substring(0, slash);
  }

  private static String name(String rel) {
    return rel.substring(rel.lastIndexOf('/') + 1);
  }

  private void lockRead() {
    if (unusedFds.size() > 256 && namespace.writeLock().tryLock()) {
      try {
        closeUnused(); // a mount that only reads never takes the write lock otherwise
      } finally {
        namespace.writeLock().unlock();
      }
    }
    namespace.readLock().lock();
  }

  private void lockWrite() {
    namespace.writeLock().lock();
    closeUnused();
  }

  /** Closes the descriptors of dropped steps; only under the write lock, so none is in use. */
  private void closeUnused() {
    Integer fd;
    while ((fd = unusedFds.poll()) != null) {
      RawFs.close(fd);
    }
  }

  @Override
  public void close() {
    for (Long fh : new ArrayList<>(open.keySet())) {
      release(fh);
    }
    steps.invalidateAll();
    closeUnused();
    for (Loc l : lowerRoots) {
      RawFs.close(l.dirfd());
    }
    if (upperRoot != null) {
      RawFs.close(upperRoot.dirfd());
    }
    if (stagingRoot != null) {
      RawFs.close(stagingRoot.dirfd());
    }
  }
}
