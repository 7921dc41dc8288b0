package io.strata.union.view;

import io.strata.layers.fs.Posix;
import io.strata.layers.fs.RawFs;
import io.strata.layers.fs.Trees;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import jnr.ffi.Pointer;

/**
 * The union of read-only lower layers and one writable upper layer, as plain Java: every
 * operation a FUSE transport needs, by path relative to the view's root, with errors as
 * {@link FsException}s. Its parts, each in a class of its own:
 * <ul>
 *   <li>{@link Lookup}: the one place that resolves a name against its parent directory (upper
 *       live, lowers through {@link LowerTree}), with the cache of directory steps;
 *   <li>{@link Markers}: whiteouts and opaque markers, in both forms;
 *   <li>{@link DirectoryMerge} and {@link LowerTree}: merged directory listings;
 *   <li>{@link CopyUp}: staged, atomic copy-up (and metadata-only copy-up);
 *   <li>{@link OpenFiles}: open files by handle, read and written without a lock.
 * </ul>
 * This class holds the operations themselves and the lock.
 *
 * <p>Identity: every node has an inode number the view owns: (layer index << 48) | st_ino of
 * the real file it came from, the upper layer being index 0. A copy-up records the lower
 * number in the upper file ({@code *.strata.origin}), so numbers survive copy-up and hard links
 * in a layer share one (until a copy-up breaks the link, as on kernel overlayfs).
 *
 * <p>Locking: {@code namespace} is held for writing by every operation that changes the upper
 * layer (copy-up included) and for reading by every lookup, so a lookup never sees a half-done
 * change. Reads and writes on open files take no lock: they go straight to the file
 * descriptor. No lock is held across a call into the FUSE kernel module: the view never calls
 * it.
 */
public final class UnionView implements AutoCloseable {
  /** Mount-time choices (the mount package's OverlayOptions reads them from a command line). */
  /**
   * @param redirectDir whether a directory a lower layer contributes to may be renamed (it then
   *     carries a redirect, as with kernel overlayfs's redirect_dir=on); else such a rename is
   *     EXDEV, as on fuse-overlayfs. Redirects already in the upper are followed either way.
   * @param immutableLowers the lower directories never change, not even between mounts
   *     (strata's store, containers/storage's layers, containerd's committed snapshots): their
   *     merged tree is kept for a minute after the last mount, for the next mount of the same
   *     layers. Off, a change made to a lower between mounts shows at the next mount, as with
   *     kernel overlayfs.
   */
  public record Options(WhiteoutForm whiteoutForm, boolean metacopy, boolean xattrs,
      boolean fsync, IdMap uids, IdMap gids, boolean squashToRoot, long cacheEntries,
      boolean redirectDir, boolean immutableLowers) {

    public static Options defaults() {
      return new Options(Posix.isRoot() ? WhiteoutForm.DEVICE : WhiteoutForm.FILE, true, true,
          true, IdMap.IDENTITY, IdMap.IDENTITY, false, 1_000_000, true, false);
    }

    /** The same options with other id maps (a user namespace's). */
    public Options withIds(IdMap uidMap, IdMap gidMap) {
      return new Options(whiteoutForm, metacopy, xattrs, fsync, uidMap, gidMap, squashToRoot,
          cacheEntries, redirectDir, immutableLowers);
    }

    /** The same options for lowers that never change ({@code immutableLowers}). */
    public Options withImmutableLowers(boolean immutable) {
      return new Options(whiteoutForm, metacopy, xattrs, fsync, uids, gids, squashToRoot,
          cacheEntries, redirectDir, immutable);
    }
  }

  /** A directory entry as readdir reports it: name, inode number and file type bits. */
  public record DirEntry(String name, long ino, int type) {}

  /** Filesystem statistics for statfs. */
  public record FsStats(long blockSize, long fragmentSize, long blocks, long blocksFree,
      long blocksAvailable, long files, long filesFree, long nameMax) {}

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
  private final Lookup lookup;
  private final DirectoryMerge merge;
  private final OpenFiles files = new OpenFiles();
  private final CopyUp copier;

  /**
   * Whom to tell, after each copy-up, the inode number of the node copied up: its data and
   * number stay, but its ctime, blocks and (for a directory) link count may not. Called under
   * the namespace lock: the listener must only queue.
   */
  /**
   * Gives file handles from {@code base} on (a server taking over a mount whose kernel still
   * holds the handles of the one before it).
   */
  public void startHandlesAt(long base) {
    files.startAt(base);
  }

  public void onCopyUp(java.util.function.LongConsumer listener) {
    copier.onCopyUp(listener);
  }

  private UnionView(List<Path> lowers, Path upper, Path work, Options opts) throws IOException {
    this.lowers = List.copyOf(lowers);
    this.upper = upper;
    this.work = work;
    this.staging = work == null ? null : work.resolve("strata-staging");
    this.opts = opts;
    // the merged lower tree and its roots are shared with other views of the same lowers
    this.lowerTree = LowerTree.acquire(lowers, opts.cacheEntries(), opts.immutableLowers());
    this.lowerRoots = lowerTree.roots();
    Loc up = null;
    try {
      up = upper == null ? null : openRoot(upper);
      if (staging != null) {
        Trees.deleteRecursively(staging); // a killed view's half-done copy-ups
        Files.createDirectories(staging);
      }
      this.stagingRoot = staging == null ? null : openRoot(staging);
    } catch (IOException | RuntimeException e) {
      if (up != null) {
        RawFs.close(up.dirfd());
      }
      LowerTree.release(lowerTree);
      throw e;
    }
    this.upperRoot = up;
    boolean trusted = Markers.trustedXattrs();
    this.originXattr = trusted ? ORIGIN_TRUSTED : ORIGIN_USER;
    this.metacopyXattr = trusted ? METACOPY : METACOPY_USER;
    this.copier = new CopyUp(this, stagingRoot, staging, opts, originXattr, metacopyXattr);
    this.lookup = new Lookup(lowerRoots, upperRoot, lowerTree, originXattr);
    this.merge = new DirectoryMerge(lookup, lowerTree);
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
      if (!Files.isDirectory(w)) {
        Files.createDirectories(w);
      }
      u = u.toRealPath();
      w = w.toRealPath();
      if (w.startsWith(u) || u.startsWith(w)) {
        throw new IllegalArgumentException("upper " + u + " and work " + w
            + " must not contain each other");
      }
      if (RawFs.lstat(RawFs.AT_FDCWD, RawFs.raw(u)).dev()
          != RawFs.lstat(RawFs.AT_FDCWD, RawFs.raw(w)).dev()) {
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

  /**
   * The view's caches and open files as numbers, for `strata stats`: the merged lower tree
   * (shared with other mounts of the same lowers), the lookup's caches, files open now.
   */
  public java.util.Map<String, Object> cacheStats() {
    java.util.Map<String, Object> out = new java.util.LinkedHashMap<>();
    var s = lowerTree.stats();
    java.util.Map<String, Object> lower = new java.util.LinkedHashMap<>();
    lower.put("cachedDirectories", lowerTree.cachedDirectories());
    lower.put("namesLookedUp", lowerTree.cachedNames());
    lower.put("hits", s.hitCount());
    lower.put("misses", s.missCount());
    lower.put("hitRate", s.hitRate());
    lower.put("sharedByMounts", LowerTree.users(lowerTree));
    lower.put("keptFromEarlierMounts", lowerTree.reused());
    out.put("lowerDirectories", lower);
    out.putAll(lookup.stats());
    out.put("openFiles", files.count());
    return out;
  }

  /**
   * Closes the merged lower trees kept for the next mount of their layers ({@code
   * Options.immutableLowers}) whose minute has passed, or all of them; true if any went.
   */
  public static boolean dropKeptLowerTrees(boolean all) {
    return LowerTree.dropKept(all);
  }

  /** How many merged lower trees are kept for the next mount of their layers. */
  public static int keptLowerTrees() {
    return LowerTree.keptTrees();
  }

  /** Hit rates and sizes of the view's caches, for logs and benchmarks. */
  public String cacheReport() {
    var s = lowerTree.stats();
    int users = LowerTree.users(lowerTree);
    return String.format("lower directories: %d merged, hit rate %.1f%% (%d hits, %d misses),"
        + " %d names looked up one by one%s; %s", lowerTree.cachedDirectories(), 100 * s.hitRate(),
        s.hitCount(), s.missCount(), lowerTree.cachedNames(),
        users > 1 ? ", shared by " + users + " mounts" : lowerTree.reused() > 0
            ? ", kept from an earlier mount" : "", lookup.report());
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
    return lookup.resolveRel(rel(path));
  }

  Node resolveRel(String rel) throws FsException {
    return lookup.resolveRel(rel);
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

  /**
   * The attributes of {@code name} in the directory {@code dirPath}: what getattr of the path
   * they make answers, without building that path and taking it apart again (READDIRPLUS asks
   * this for every entry of a listing).
   */
  public Attr getattr(String dirPath, String name) throws FsException {
    String dir = rel(dirPath);
    if (name.length() > MAX_NAME) {
      throw new FsException(Posix.ENAMETOOLONG, "name too long in " + dirPath);
    }
    if (name.indexOf('/') >= 0) {
      throw new FsException(Posix.EINVAL, "bad name " + name);
    }
    lockRead();
    try {
      return attrOf(lookup.resolveChild(dir, name));
    } finally {
      namespace.readLock().unlock();
    }
  }

  /** The path of an open file now (it follows renames), or null once its names are gone. */
  public String openPath(long fh) {
    OpenFiles.OpenFile f = files.peek(fh);
    return f == null || f.unlinked != null || f.path.isEmpty() ? null : "/" + f.path;
  }

  /** Attributes of an open file: by path while it has one, else from its descriptor. */
  public Attr fgetattr(String path, long fh) throws FsException {
    OpenFiles.OpenFile f = files.peek(fh);
    Attr gone = f == null ? null : f.unlinked;
    if (gone != null && !f.onUpper) {
      return gone; // below, nothing changes it (see nameGone)
    }
    if (gone != null) {
      // the upper file itself, as it is now (fchmod and the like reach it by handle): its
      // number as the view gave it, its link count as the real file has it
      try {
        RawFs.Statx st = RawFs.lstat(f.fd, "");
        return mapIds(new Attr(gone.ino(), st.mode(), (int) st.nlink(), st.uid(), st.gid(),
            st.rdev(), st.size(), st.blocks(), st.atimeNanos(), st.mtimeNanos(),
            st.ctimeNanos(), false, st.btimeNanos()));
      } catch (IOException e) {
        throw FsException.from(e);
      }
    }
    return getattr(path != null ? path : f == null ? null : "/" + f.path);
  }

  /**
   * fchmod(2) of an open file whose names are all gone, through its handle; with
   * {@link #fchown}, {@link #futimens} and {@link #ftruncate} what SETATTR does for such a file.
   */
  public void fchmod(long fh, int mode) throws FsException {
    Io.check(Io.LIBC.fchmod(nameless(fh).fd, mode & 07777), "fchmod of an unlinked file");
  }

  /** fchown(2) of an open file whose names are all gone; -1 leaves an id as it is. */
  public void fchown(long fh, int uid, int gid) throws FsException {
    int u = uid == -1 ? -1 : opts.uids().toHost(uid);
    int g = gid == -1 ? -1 : opts.gids().toHost(gid);
    Io.check(Io.LIBC.fchown(nameless(fh).fd, u, g), "fchown of an unlinked file");
  }

  /** futimens(2) of an open file whose names are all gone (times as for {@link #utimens}). */
  public void futimens(long fh, long atimeNanos, long mtimeNanos) throws FsException {
    OpenFiles.OpenFile f = nameless(fh);
    long now = System.currentTimeMillis() * 1_000_000L;
    try {
      RawFs.futimes(f.fd, atimeNanos == -2 ? now : atimeNanos,
          mtimeNanos == -2 ? now : mtimeNanos);
    } catch (IOException e) {
      throw FsException.from(e);
    }
  }

  /**
   * The open file of a handle whose names are gone, reaching the upper file. One still below
   * has nowhere to be copied up to: EEXIST, as kernel overlayfs answers (its copy-up meets the
   * whiteout).
   */
  private OpenFiles.OpenFile nameless(long fh) throws FsException {
    OpenFiles.OpenFile f = files.get(fh);
    if (!f.onUpper) {
      throw new FsException(Posix.EEXIST, "an unlinked file still below cannot be changed");
    }
    return f;
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
    } catch (java.io.UncheckedIOException e) {
      throw FsException.from(e.getCause());
    }
  }

  private boolean isMerged(Node n) {
    if (!n.lowerDirVisible()) {
      return false;
    }
    if (n.upper() != null) {
      return true;
    }
    List<Loc> layers = lowerTree.layers(n.path()); // found without merging the directory
    return layers != null && layers.size() > 1;
  }

  private Attr mapIds(Attr a) {
    if (opts.squashToRoot()) {
      return new Attr(a.ino(), a.mode(), a.nlink(), 0, 0, a.rdev(), a.size(), a.blocks(),
          a.atimeNanos(), a.mtimeNanos(), a.ctimeNanos(), a.lowerLink(), a.btimeNanos());
    }
    if (opts.uids().isIdentity() && opts.gids().isIdentity()) {
      return a;
    }
    return new Attr(a.ino(), a.mode(), a.nlink(), opts.uids().toContainer(a.uid()),
        opts.gids().toContainer(a.gid()), a.rdev(), a.size(), a.blocks(), a.atimeNanos(),
        a.mtimeNanos(), a.ctimeNanos(), a.lowerLink(), a.btimeNanos());
  }

  private long upperIno(Loc p, Attr a) throws IOException {
    return lookup.upperIno(p, a);
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
    return merge.list(n);
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
        ReadTarget t = readTarget(n);
        return register(Io.open(t.real(), flags & ~(Io.O_CREAT | Io.O_EXCL | Io.O_DIRECT), 0),
            n.path(), false, t.onUpper());
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
      return register(fd, n.path(), true, true);
    } finally {
      namespace.writeLock().unlock();
    }
  }

  /** The real file a read-only open of a node reaches, and whether it is the upper one. */
  private record ReadTarget(Loc real, boolean onUpper) {}

  private ReadTarget readTarget(Node n) throws IOException {
    if (n.upper() != null && n.lower() != null && isMetacopy(n.upper())) {
      return new ReadTarget(n.lower().path(), false); // metadata copied up, the data below
    }
    return new ReadTarget(n.real(), n.upper() != null);
  }

  /**
   * A file open through the view, as a hand-over to another server gives it: its handle, its
   * descriptor on the real file, its name now (relative; "" for an O_TMPFILE file), whether it
   * is writable and on the upper, and the attributes it had when its last name went (or null).
   */
  public record OpenHandle(long fh, int fd, String path, boolean writable, boolean onUpper,
      Attr unlinked) {}

  /** Every file open through the view (their descriptors stay this view's). */
  public List<OpenHandle> openHandles() {
    List<OpenHandle> out = new ArrayList<>();
    files.all().forEach((fh, f) -> out.add(new OpenHandle(fh, f.fd, f.path, f.writable,
        f.onUpper, f.unlinked)));
    return out;
  }

  /**
   * Takes a file another server had open (a mount taken over), with its descriptor (this
   * view's from now on), under the handle the kernel knows it by.
   */
  public void adopt(OpenHandle h) {
    OpenFiles.OpenFile f = new OpenFiles.OpenFile(h.fd(), h.path(), h.writable(), h.onUpper());
    f.unlinked = h.unlinked();
    files.adopt(h.fh(), f);
  }

  /**
   * Opens {@code path} (relative, as {@link #openHandles} gives it) again under the handle
   * {@code fh} the kernel holds from a server that died with its descriptors (a mount taken
   * over from its checkpoint): what it reaches now, as an open by that name would, except that a file opened for writing must still be on the
   * upper (else it is not the file that was opened: ESTALE).
   */
  public void reopen(long fh, String path, boolean writable) throws FsException {
    lockRead();
    try {
      Node n = resolveRel(path);
      if (n.isDir()) {
        throw FsException.of(Posix.EISDIR, path);
      }
      if (writable && n.upper() == null) {
        throw FsException.of(Posix.ESTALE, path);
      }
      ReadTarget t = writable ? new ReadTarget(n.real(), true) : readTarget(n);
      Loc real = t.real();
      boolean onUpper = t.onUpper();
      int fd;
      try {
        fd = Io.open(real, writable ? Io.O_RDWR : Io.O_RDONLY, 0);
      } catch (FsException e) {
        if (!writable) {
          throw e;
        }
        fd = Io.open(real, Io.O_WRONLY, 0); // a file its owner may only write
      }
      files.adopt(fh, new OpenFiles.OpenFile(fd, n.path(), writable, onUpper));
    } catch (IOException e) {
      throw FsException.from(e);
    } finally {
      namespace.readLock().unlock();
    }
  }

  private long register(int fd, String rel, boolean writable, boolean onUpper) {
    return files.register(fd, rel, writable, onUpper);
  }

  public int read(long fh, Pointer buf, long size, long offset) throws FsException {
    return files.read(fh, buf, size, offset);
  }

  public int write(long fh, Pointer buf, long size, long offset) throws FsException {
    return files.write(fh, buf, size, offset);
  }

  public void fsync(long fh, boolean dataOnly) throws FsException {
    files.fsync(fh, dataOnly, opts.fsync());
  }

  public void release(long fh) {
    files.release(fh);
  }

  public void ftruncate(long fh, long size) throws FsException {
    files.ftruncate(fh, size);
  }

  public void fallocate(long fh, int mode, long offset, long length) throws FsException {
    files.fallocate(fh, mode, offset, length);
  }

  /** lseek(2) on an open file: SEEK_DATA and SEEK_HOLE see the real file's holes. */
  public long lseek(long fh, long offset, int whence) throws FsException {
    return files.lseek(fh, offset, whence);
  }

  /** copy_file_range(2) between two open files of the view; returns the bytes copied. */
  public long copyFileRange(long fhIn, long offIn, long fhOut, long offOut, long len)
      throws FsException {
    return files.copyFileRange(fhIn, offIn, fhOut, offOut, len);
  }

  /**
   * The descriptor of the real file behind an open file, for a transport that hands it to the
   * kernel (FUSE passthrough). It stays the view's: valid until {@link #release}.
   */
  public int descriptor(long fh) throws FsException {
    return files.get(fh).fd;
  }

  /** Whether handle {@code fh} reads a file of a lower layer (not copied up). */
  public boolean below(long fh) throws FsException {
    return !files.get(fh).onUpper;
  }

  /**
   * The errno of a getxattr of {@code name} on a file that does not have it: ENODATA, except
   * for a missing {@code security.selinux}, which is EOPNOTSUPP, a deliberate difference from
   * kernel overlayfs (ENODATA). Where SELinux is enabled the kernel answers that name from the
   * LSM's label without asking the filesystem, so strata is asked only on hosts without
   * SELinux, where no file has a label in force. To a caller that probes labels EOPNOTSUPP
   * means "this filesystem has none", and ls (gnulib's getfilecon cache) then stops asking for
   * the whole mount: without it `ls -l` makes one upcall per file, since FUSE caches no
   * extended attributes. A file that does carry the attribute still returns it; setting and
   * removing it are unchanged.
   */
  public static int missingXattr(String name) {
    return SELINUX.equals(name) ? Posix.EOPNOTSUPP : Posix.ENODATA;
  }

  private static final String SELINUX = "security.selinux";

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
        throw new FsException(missingXattr(name), name);
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

  /**
   * The upper's filesystem's figures (the top lower's for a read-only view), as kernel
   * overlayfs gives them: blocks and inodes, with the union's longest name. One fstatfs(2) on
   * the layer's root (Files.getFileStore read the mount table first: 150-200 µs a request).
   */
  public FsStats statfs() throws FsException {
    try {
      Loc root = upperRoot != null ? upperRoot : lowerRoots.get(0);
      RawFs.FsStat st = RawFs.fstatfs(root.dirfd());
      return new FsStats(st.blockSize(), st.fragmentSize(), st.blocks(), st.blocksFree(),
          st.blocksAvailable(), st.files(), st.filesFree(), Math.min(MAX_NAME, st.nameMax()));
    } catch (IOException e) {
      throw FsException.from(e);
    }
  }

  public void access(String path) throws FsException {
    getattr(path);
  }

  // ---------------------------------------------------------------- writing

  public long create(String path, int mode, int flags, int uid, int gid) throws FsException {
    return create(path, mode, -1, flags, uid, gid);
  }

  /**
   * Creates and opens a regular file. {@code umask} is the caller's, which the view applies
   * unless the directory has a default ACL (FUSE_DONT_MASK; see {@link #finishNew}), or -1:
   * the kernel applied it to {@code mode} already.
   */
  public long create(String path, int mode, int umask, int flags, int uid, int gid)
      throws FsException {
    requireWritable(path);
    lockWrite();
    try {
      String rel = rel(path);
      Loc target = prepareNew(rel);
      int fd = Io.open(target, (flags | Io.O_CREAT | Io.O_EXCL) & ~(Io.O_TRUNC | Io.O_DIRECT),
          mode & 0777);
      try {
        finishNew(target, mode, umask, uid, gid, false);
        return register(fd, rel, (flags & Io.O_ACCMODE) != Io.O_RDONLY, true);
      } catch (FsException | RuntimeException e) {
        Io.close(fd);
        throw e;
      }
    } finally {
      namespace.writeLock().unlock();
    }
  }

  public void mknod(String path, int mode, long rdev, int uid, int gid) throws FsException {
    mknod(path, mode, -1, rdev, uid, gid);
  }

  /** mknod(2); {@code umask} as for {@link #create(String, int, int, int, int, int)}. */
  public void mknod(String path, int mode, int umask, long rdev, int uid, int gid)
      throws FsException {
    if ((mode & Posix.S_IFMT) == Posix.S_IFCHR && rdev == 0) {
      // a whiteout's form, which would hide the name it makes: kernel overlayfs refuses it too
      throw new FsException(Posix.EPERM, "a character device 0/0 is a whiteout: " + path);
    }
    mutate(path, () -> {
      Loc target = prepareNew(rel(path));
      int type = mode & Posix.S_IFMT;
      if (type == Posix.S_IFREG || type == 0) {
        Io.close(Io.open(target, Io.O_CREAT | Io.O_EXCL | Io.O_WRONLY, mode & 0777));
      } else {
        // a device made by the server is no one else's before it is the caller's: 0600 until
        // finishNew, unless a default ACL is to shape its mode (the file system does that from
        // the mode given here)
        int perm = umask >= 0 && defaultAcl(target.parent()) ? mode & 0777 : 0600;
        RawFs.mknod(target.dirfd(), target.rel(), (mode & Posix.S_IFMT) | perm,
            (int) ((rdev >>> 8) & 0xfff), (int) ((rdev & 0xff) | ((rdev >>> 12) & 0xfff00)));
      }
      finishNew(target, mode, umask, uid, gid, false);
    });
  }

  public void mkdir(String path, int mode, int uid, int gid) throws FsException {
    mkdir(path, mode, -1, uid, gid);
  }

  /** mkdir(2); {@code umask} as for {@link #create(String, int, int, int, int, int)}. */
  public void mkdir(String path, int mode, int umask, int uid, int gid) throws FsException {
    mutate(path, () -> {
      String rel = rel(path);
      NewName created = prepareNew(rel, false);
      Loc target = created.path();
      RawFs.mkdir(target.dirfd(), target.rel(), mode & 0777);
      finishNew(target, mode, umask, uid, gid, false);
      if (created.hadWhiteout()) {
        // Something of that name was deleted from a lower layer: keep it hidden.
        Markers.markOpaque(target, opts.whiteoutForm());
        lookup.opaque(rel, true);
      } else {
        lookup.opaque(rel, false);
      }
    });
  }

  public void symlink(String target, String path, int uid, int gid) throws FsException {
    mutate(path, () -> {
      Loc link = prepareNew(rel(path));
      RawFs.symlink(target, link.dirfd(), link.rel());
      finishNew(link, 0777, -1, uid, gid, true);
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

  /**
   * open(O_TMPFILE) in the directory {@code dir}: an unnamed regular file in its upper
   * directory (copied up first), owned by the caller; returns its handle. Its attributes come
   * by handle (st_nlink 0) until {@link #linkOpen} names it.
   */
  public long tmpfile(String dir, int mode, int flags, int uid, int gid) throws FsException {
    return tmpfile(dir, mode, -1, flags, uid, gid);
  }

  /** open(O_TMPFILE); {@code umask} as for {@link #create(String, int, int, int, int, int)}. */
  public long tmpfile(String dir, int mode, int umask, int flags, int uid, int gid)
      throws FsException {
    requireWritable(dir);
    lockWrite();
    try {
      Node d = resolve(dir);
      if (!d.isDir()) {
        throw FsException.of(Posix.ENOTDIR, dir);
      }
      Loc up = copyUp(d, false);
      int access = (flags & Io.O_ACCMODE) == Io.O_RDONLY ? Io.O_RDWR : flags & Io.O_ACCMODE;
      int fd = Io.open(up, Io.O_TMPFILE | access, mode & 0777);
      try {
        RawFs.Statx made = RawFs.lstat(fd, "");
        Io.check(Io.LIBC.fchown(fd, opts.uids().toHost(uid),
            newGroup(made.gid(), opts.gids().toHost(gid), up)), "fchown tmpfile in " + dir);
        Io.check(Io.LIBC.fchmod(fd, newMode(made.mode(), mode, umask, up)),
            "fchmod tmpfile in " + dir);
        RawFs.Statx st = RawFs.lstat(fd, "");
        long fh = register(fd, "", (flags & Io.O_ACCMODE) != Io.O_RDONLY, true);
        files.get(fh).unlinked = mapIds(new Attr(compose(0, st.ino()), st.mode(), 0, st.uid(),
            st.gid(), st.rdev(), st.size(), st.blocks(), st.atimeNanos(), st.mtimeNanos(),
            st.ctimeNanos(), false, st.btimeNanos()));
        return fh;
      } catch (FsException | IOException | RuntimeException e) {
        Io.close(fd);
        throw e;
      }
    } catch (IOException e) {
      throw FsException.from(e);
    } finally {
      namespace.writeLock().unlock();
    }
  }

  /** Names an open file that has no name (O_TMPFILE): linkat(2) of its descriptor to {@code to}. */
  public void linkOpen(long fh, String to) throws FsException {
    mutate(to, () -> {
      OpenFiles.OpenFile f = files.get(fh);
      String rel = rel(to);
      Loc link = prepareNew(rel);
      RawFs.linkOpenFile(f.fd, link.dirfd(), link.rel());
      if (f.path.isEmpty()) {
        f.path = rel;
        f.unlinked = null;
      }
    });
  }

  public void unlink(String path) throws FsException {
    mutate(path, () -> {
      Node n = resolve(path);
      if (n.isDir()) {
        throw FsException.of(Posix.EISDIR, path);
      }
      List<OpenFiles.OpenFile> orphaned = losingTheirName(n);
      Attr before = orphaned.isEmpty() ? null : attrOf(n);
      removeNode(n);
      nameGone(orphaned, n, before);
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
      List<OpenFiles.OpenFile> held = files.named(n.path());
      Attr before = held.isEmpty() ? null : attrOf(n);
      removeNode(n);
      nameGone(held, n, before);
    });
  }

  /**
   * A handle on the real directory of {@code path} (its upper one, else the lower), taken
   * before an rmdir while the kernel has it open: a removed directory still answers fstat,
   * fchmod and the like through its descriptors, as on kernel overlayfs. Released with
   * {@link #release}.
   */
  public long holdDirectory(String path) throws FsException {
    lockRead();
    try {
      Node n = resolve(path);
      if (!n.isDir()) {
        throw FsException.of(Posix.ENOTDIR, path);
      }
      int fd = Io.open(n.real(), Io.O_RDONLY | Io.O_DIRECTORY, 0);
      return register(fd, n.path(), false, n.upper() != null);
    } finally {
      namespace.readLock().unlock();
    }
  }

  /**
   * Renames within the view. A directory that a lower layer contributes to moves with a
   * redirect (see {@link Markers}), as on kernel overlayfs with redirect_dir=on; with
   * {@code redirectDir} off it cannot move (EXDEV, as on fuse-overlayfs), and mv then copies.
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
   * two names in the upper layer after copying both up; a directory that a lower layer
   * contributes to gets a redirect, as in a plain rename. RENAME_WHITEOUT is refused (EINVAL).
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
      // A directory a lower layer contributes to moves with a redirect to where its lower
      // part stays (kernel overlayfs's redirect_dir=on); without, EXDEV and mv copies.
      boolean redirect = src.isDir() && src.lowerDirVisible();
      if (redirect && !opts.redirectDir()) {
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
      if (redirect) {
        // set before the move: a crash in between leaves a directory redirected to itself
        Markers.setRedirect(srcUpper, "/" + src.lowerDirPath(), opts.whiteoutForm());
      }
      boolean intoMerged = src.isDir() && !redirect && mergedParent(toRel);
      // files open by the replaced name keep its attributes, as after an unlink
      List<OpenFiles.OpenFile> orphaned = dst == null ? List.of() : losingTheirName(dst);
      Attr replaced = orphaned.isEmpty() ? null : attrOf(dst);
      NewName moved = prepareNew(toRel, dst != null);
      Loc target = moved.path();
      if (dst != null && dst.upper() != null && dst.isDir()) {
        clearMarkers(dst.upper());
      }
      RawFs.rename(srcUpper.dirfd(), srcUpper.rel(), target.dirfd(), target.rel(), 0);
      if (src.lower() != null) {
        Markers.writeWhiteout(srcUpper.parent(), name(src.path()), opts.whiteoutForm());
      }
      if (intoMerged) {
        // A directory with nothing below, moved into a merged one, is made opaque: a lower
        // directory of its new name (visible, or hidden by what the rename replaced) must not
        // show through it, as kernel overlayfs marks it (a redirected one needs no marker).
        Markers.markOpaque(target, opts.whiteoutForm());
      }
      nameGone(orphaned, dst, replaced);
      files.renamed(src.path(), toRel);
      lookup.forgetDirectories(); // the moved directory's steps and everything below it
    });
  }

  /** Whether the directory that holds {@code rel} has a lower part (kernel overlayfs: merged). */
  private boolean mergedParent(String rel) throws FsException {
    int slash = rel.lastIndexOf('/');
    return resolveRel(slash < 0 ? "" : rel.substring(0, slash)).lowerDirVisible();
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
      // A directory a lower layer contributes to keeps it through a redirect, as in rename.
      boolean ra = na.isDir() && na.lowerDirVisible();
      boolean rb = nb.isDir() && nb.lowerDirVisible();
      if ((ra || rb) && !opts.redirectDir()) {
        throw FsException.of(Posix.EXDEV, ra ? a : b);
      }
      Loc ua = copyUp(na, true);
      Loc ub = copyUp(nb, true);
      if (ra) {
        Markers.setRedirect(ua, "/" + na.lowerDirPath(), opts.whiteoutForm());
      }
      if (rb) {
        Markers.setRedirect(ub, "/" + nb.lowerDirPath(), opts.whiteoutForm());
      }
      boolean bIntoMerged = nb.isDir() && !rb && mergedParent(na.path());
      boolean aIntoMerged = na.isDir() && !ra && mergedParent(nb.path());
      RawFs.rename(ua.dirfd(), ua.rel(), ub.dirfd(), ub.rel(), RENAME_EXCHANGE);
      // A directory with nothing below arriving in a merged directory is made opaque, as
      // in rename; a redirected one shows the lower directory its redirect names.
      if (bIntoMerged) {
        Markers.markOpaque(ua, opts.whiteoutForm());
      }
      if (aIntoMerged) {
        Markers.markOpaque(ub, opts.whiteoutForm());
      }
      files.exchanged(na.path(), nb.path());
      lookup.forgetDirectories();
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

  /**
   * Takes the set-user-ID bit off a regular file, and the set-group-ID bit where group execution
   * is on (without it the bit marks mandatory locking, not a privilege), as the kernel does when
   * a file is written, truncated or given away by a caller without CAP_FSETID. With
   * FUSE_HANDLE_KILLPRIV_V2 the kernel leaves this to strata: writes pass through to the upper
   * file under strata's own credentials, which would keep the bits. Nothing to take off copies
   * nothing up.
   */
  public void killSuidSgid(String path) throws FsException {
    mutate(path, () -> {
      Node n = resolve(path);
      Attr a = n.upper() != null ? n.upperAttr() : n.lower().attr();
      int kept = withoutPrivileges(a);
      if (kept != (a.mode() & 07777)) {
        Loc p = copyUp(n, !opts.metacopy());
        RawFs.chmod(p.dirfd(), p.rel(), kept);
      }
    });
  }

  /** {@link #killSuidSgid} for an open file whose names are all gone. */
  public void fkillSuidSgid(long fh) throws FsException {
    nameless(fh);
    Attr a = fgetattr(null, fh);
    int kept = withoutPrivileges(a);
    if (kept != (a.mode() & 07777)) {
      fchmod(fh, kept);
    }
  }

  /** The permission bits {@code a} keeps once set-user-ID and set-group-ID are taken off. */
  static int withoutPrivileges(Attr a) {
    int mode = a.mode() & 07777;
    if (a.type() != Posix.S_IFREG) {
      return mode;
    }
    mode &= ~04000; // S_ISUID
    if ((mode & 02010) == 02010) { // S_ISGID and S_IXGRP
      mode &= ~02000;
    }
    return mode;
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

  /**
   * With {@code noxattrs}, ENOSYS, as fuse-overlayfs answers: FUSE takes it as "never ask
   * again" for that request (the kernel's no_getxattr, no_listxattr, ...) and tells callers
   * EOPNOTSUPP from then on without an upcall, so `ls -l`'s lgetxattr per file costs nothing.
   * File capabilities and ACLs are gone on such a mount, which is why it is only an option.
   */
  private void requireXattrs() throws FsException {
    if (!opts.xattrs()) {
      throw new FsException(Posix.ENOSYS, "xattrs are disabled (noxattrs)");
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

  private static final int S_ISGID = 02000;

  /**
   * The group of a node the file system made with group {@code made} in the upper directory
   * {@code dir} for a caller of group {@code caller}: the directory's (which {@code made} then
   * is) when the directory is set-group-ID, else the caller's. The directory is looked at only
   * when the two differ.
   */
  private static int newGroup(int made, int caller, Loc dir) throws IOException {
    if (made == caller) {
      return caller;
    }
    Attr d = Stat.lstat(dir);
    return d != null && (d.mode() & S_ISGID) != 0 ? made : caller;
  }

  /**
   * The mode of a node the file system made with mode {@code made} in the upper directory
   * {@code dir}, asked for with {@code mode} (see {@link #finishNew} for {@code umask}).
   */
  private static int newMode(int made, int mode, int umask, Loc dir) throws IOException {
    int want = mode & 07777;
    if (umask >= 0) {
      want = defaultAcl(dir) ? (made & 0777) | (mode & 07000) : want & ~umask;
    }
    if ((made & Posix.S_IFMT) == Posix.S_IFDIR) {
      want |= made & S_ISGID; // a directory in a set-group-ID one is one too
    }
    return want;
  }

  /**
   * Gives a new upper node its caller's owner and mode, as kernel overlayfs gives it: in a
   * set-group-ID directory the directory's group (which the file system gave the node, made
   * there by this process), and a directory made there is set-group-ID too. The node was made
   * with at most its permission bits (never setuid/setgid, which chown would clear), so only
   * what differs is changed: each chown or chmod is a journaled inode update, and creating
   * files is what untar and builds do most.
   *
   * <p>The mode: with {@code umask} -1 the kernel applied the caller's umask, and the node gets
   * {@code mode} exactly. Otherwise (FUSE_DONT_MASK) the view does what kernel overlayfs lets
   * the upper filesystem do: in a directory with a default ACL the umask is ignored and the
   * ACL shaped the permission bits the node was made with (they stay, with the set-ID and
   * sticky bits added); elsewhere {@code mode} less the umask.
   */
  private void finishNew(Loc p, int mode, int umask, int uid, int gid, boolean symlink)
      throws FsException {
    try {
      int hostUid = opts.uids().toHost(uid);
      int hostGid = opts.gids().toHost(gid);
      Attr made = Stat.lstat(p);
      if (made == null) { // gone meanwhile: the chown says so (ENOENT)
        RawFs.lchown(p.dirfd(), p.rel(), hostUid, hostGid);
        if (!symlink) {
          RawFs.chmod(p.dirfd(), p.rel(), mode & 07777 & ~Math.max(umask, 0));
        }
        return;
      }
      hostGid = newGroup(made.gid(), hostGid, p.parent());
      if (made.uid() != hostUid || made.gid() != hostGid) {
        RawFs.lchown(p.dirfd(), p.rel(), hostUid, hostGid);
      }
      if (!symlink) {
        int want = newMode(made.mode(), mode, umask, p.parent());
        if ((made.mode() & 07777) != want) {
          RawFs.chmod(p.dirfd(), p.rel(), want);
        }
      }
    } catch (IOException e) {
      throw FsException.from(e);
    }
  }

  /** Whether the upper directory {@code dir} has a default ACL. */
  private static boolean defaultAcl(Loc dir) throws IOException {
    return RawFs.hasXattr(dir.dirfd(), dir.rel(), "system.posix_acl_default");
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
    lookup.forgetOpacity(n.path());
    if (n.isDir()) {
      lookup.forgetDirectories(); // the removed directory's steps and everything below it
    }
  }

  /** Empties an upper directory of the whiteouts and markers that make it look non-empty. */
  private static void clearMarkers(Loc dir) throws IOException {
    for (RawFs.DirEntry e : RawFs.list(dir.dirfd(), dir.rel())) {
      // only whiteouts remain in a directory the view shows as empty
      RawFs.unlink(dir.dirfd(), dir.child(e.name()).rel());
    }
  }

  /**
   * The open files {@code opened} lost the name of {@code n}, whose attributes were
   * {@code before}: from now on they answer by handle. One whose descriptor reaches the upper
   * file asks it (its link count, and what fchmod and the like change); one reading below
   * keeps {@code before}, with no link left where the name had an upper file (metadata copied
   * up without the data) and the lower file's own count where it had none (kernel overlayfs
   * shows that one too).
   */
  private static void nameGone(List<OpenFiles.OpenFile> opened, Node n, Attr before) {
    for (OpenFiles.OpenFile f : opened) {
      f.unlinked = f.onUpper || n.upper() == null ? before : before.withNlink(0);
    }
  }

  /**
   * The open files opened by {@code n}'s name, which loses it now (unlink, or a rename over
   * it): from then on they answer by handle, whether the file has other names or none (their
   * link count comes from the file itself).
   */
  private List<OpenFiles.OpenFile> losingTheirName(Node n) throws FsException {
    List<OpenFiles.OpenFile> opened = files.named(n.path());
    if (n.upper() != null && n.lower() != null && !n.isDir()) {
      for (OpenFiles.OpenFile f : opened) {
        if (!f.onUpper) {
          // Its metadata was copied up without the data, which the handle still reads from
          // below: the data follows now (the handle is moved onto the upper file), so that
          // the handle keeps a file to answer for and to change once the name is gone.
          copyUp(n, true);
          break;
        }
      }
    }
    return opened;
  }

  private boolean isMetacopy(Loc p) throws IOException {
    return copier.isMetacopy(p);
  }

  private Loc copyUp(Node n, boolean withData) throws FsException {
    return copier.copyUp(n, withData);
  }

  /**
   * A file's data was copied up (a full copy-up, or a metadata-only one completed): handles
   * that read it from below read {@code upper} from now on ({@link OpenFiles#retarget}).
   */
  void dataCopiedUp(String rel, Loc upper) throws FsException {
    files.retarget(rel, upper);
  }

  /** The inode number the view reports for an upper file. */
  long upperInode(Loc up) throws IOException {
    return upperIno(up, Stat.lstat(up));
  }

  /** A directory was copied up: it has an upper directory now, not opaque. */
  void directoryCopiedUp(String rel) {
    lookup.directoryCopiedUp(rel);
  }

  static String parentOf(String rel) {
    int slash = rel.lastIndexOf('/');
    return slash < 0 ? "" : rel.substring(0, slash);
  }

  static String name(String rel) {
    return rel.substring(rel.lastIndexOf('/') + 1);
  }

  private void lockRead() {
    if (lookup.unusedDescriptors() > 256 && namespace.writeLock().tryLock()) {
      try {
        lookup.closeUnused(); // a mount that only reads never takes the write lock otherwise
      } finally {
        namespace.writeLock().unlock();
      }
    }
    namespace.readLock().lock();
  }

  private void lockWrite() {
    namespace.writeLock().lock();
    lookup.closeUnused();
  }

  @Override
  public void close() {
    files.closeAll();
    lookup.close();
    LowerTree.release(lowerTree);
    if (upperRoot != null) {
      RawFs.close(upperRoot.dirfd());
    }
    if (stagingRoot != null) {
      RawFs.close(stagingRoot.dirfd());
    }
  }
}
