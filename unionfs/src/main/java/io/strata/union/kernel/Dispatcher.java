package io.strata.union.kernel;

import io.strata.layers.fs.Posix;
import io.strata.union.view.Attr;
import io.strata.union.view.FsException;
import io.strata.union.view.UnionView;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.function.Consumer;
import jnr.ffi.Pointer;

/**
 * Maps each FUSE request onto the {@link UnionView} and writes its reply: the dispatch table of
 * strata's own transport. It knows node ids (through the {@link NodeTable}) and frame layouts;
 * the view knows neither. Every {@link FsException} becomes its errno, a malformed frame
 * EINVAL, and anything else is logged and becomes EIO: no request kills a worker.
 *
 * <p>Thread-safe: several workers call {@link #handle} at once, each with its own buffers.
 */
final class Dispatcher {
  /** What the dispatcher asks of the session that owns the device. */
  interface Session {
    /** Registers {@code fd} as a backing file; the id, or -errno. */
    int backingOpen(int fd);

    void backingClose(int id);

    /** Asks the kernel, later and from another thread, to drop its entry for a name. */
    void invalidateEntry(long parent, String name);

    /**
     * Tells the kernel, before the request being served is answered, to drop what it caches of
     * a node's attributes.
     */
    default void invalidateAttributes(long node) {
    }

    /**
     * Puts the first {@code size} bytes of the file open as {@code fd} into the kernel's page
     * cache of {@code node} (FUSE_NOTIFY_STORE), so that reading them makes no request; false
     * when nothing was stored.
     */
    default boolean store(long node, int fd, int size) {
      return false;
    }
  }

  /** The kernel cache timeouts, in nanoseconds. */
  record Timeouts(long entry, long attr, long negative) {}

  private final UnionView view;
  private final NodeTable nodes;
  private final Timeouts timeouts;
  private final Session session;
  private final Consumer<String> log;
  private final boolean wantPassthrough;
  private volatile boolean passthrough;
  private volatile boolean passthroughFailureLogged;
  /** Whether to accept FUSE over io_uring when INIT offers it, and whether it was. */
  private volatile boolean wantRing;
  private volatile boolean ring;
  /**
   * FUSE_HANDLE_KILLPRIV_V2 taken: strata takes set-user-ID and set-group-ID off files written,
   * truncated or given away, and the kernel, with SB_NOSEC, asks for a file's
   * {@code security.capability} before its first write only, not before every write.
   */
  private volatile boolean killpriv;
  /**
   * FUSE_DONT_MASK was agreed: the kernel sends a create's mode without the caller's umask and
   * the umask beside it, and the view applies it, or a default ACL of the directory instead.
   */
  private volatile boolean dontMask;
  /** What INIT agreed to, for the next server (see {@link #resume}). */
  private volatile long agreed;
  private final AtomicLongArray counts = new AtomicLongArray(Fuse.MAX_OPCODE + 1);
  /** Requests answered with an error, by opcode: a failing program's trail in the stats. */
  private final AtomicLongArray errors = new AtomicLongArray(Fuse.MAX_OPCODE + 1);
  /**
   * How long requests took to serve, by opcode: bucket b counts those under 2^b ns (b < 40:
   * up to 18 minutes), so a percentile is known to within a factor of two, for two
   * System.nanoTime calls a request.
   */
  static final int BUCKETS = 40;
  private final AtomicLongArray latency = new AtomicLongArray((Fuse.MAX_OPCODE + 1) * BUCKETS);
  private final AtomicLong passthroughOpens = new AtomicLong();
  private final AtomicLong servedOpens = new AtomicLong();
  private final AtomicLong retiredNodes = new AtomicLong();
  /**
   * Entries of a listing left out of READDIRPLUS because their attributes could not be had
   * (removed since the listing was taken, or a lookup that disagrees with the listing): a
   * number in the stats, so that a listing that missed a file shows here.
   */
  private final AtomicLong entriesSkipped = new AtomicLong();
  private final AtomicLong dirHandles = new AtomicLong(1);
  private final ConcurrentHashMap<Long, DirOpen> dirs = new ConcurrentHashMap<>();

  /**
   * An open directory: its node, its listing as the kernel reads it, and, once it was removed
   * while open, a view handle on the real directory (taken just before the removal) that
   * fstat, fchmod and the like use then.
   */
  static final class DirOpen {
    final NodeTable.Node node;
    volatile List<UnionView.DirEntry> list = List.of();
    volatile long held;

    DirOpen(NodeTable.Node node) {
      this.node = node;
    }
  }
  /**
   * Directory handles below this came from a server that died (see {@link #restore}): one its
   * checkpoint missed is taken as it comes. 0: none.
   */
  private long inheritedBelow;

  /** Open files by handle: the node and, when passed through, its backing. */
  private final ConcurrentHashMap<Long, Open> opens = new ConcurrentHashMap<>();

  /** An open file of the kernel: its node and the backing it shares, if passed through. */
  private record Open(NodeTable.Node node, Backing backing) {}

  /** A backing file registered with the kernel, shared by the opens of one node. */
  private static final class Backing {
    final int id;
    final long dev;
    final long ino;
    int users;
    /**
     * Taken from the checkpoint of a server that died: the kernel may have dropped it since
     * (that server closed it after the checkpoint), so no new open gets it; a new open of its
     * node retires the node instead, as after a copy-up (see {@link #backing}).
     */
    boolean inherited;

    Backing(int id, long dev, long ino) {
      this.id = id;
      this.dev = dev;
      this.ino = ino;
    }
  }

  private final ConcurrentHashMap<Long, Backing> backings = new ConcurrentHashMap<>();

  /**
   * What an open served from the page cache has instead of a backing: a read-only open of a
   * regular file below of at most {@link #CACHED_AT_MOST} bytes, and every open of its node
   * while such an open lasts (the kernel refuses to mix the two on one inode, ETXTBSY).
   */
  private static final Backing CACHED = new Backing(0, -1, -1);
  static final long CACHED_AT_MOST = 64 << 10;

  Dispatcher(UnionView view, NodeTable nodes, Timeouts timeouts, boolean wantPassthrough,
      Session session, Consumer<String> log) {
    this.view = view;
    this.nodes = nodes;
    this.timeouts = timeouts;
    this.wantPassthrough = wantPassthrough;
    this.session = session;
    this.log = log;
  }

  /** Requests of one opcode: how many, and percentiles of the time they took to serve. */
  record OpStats(String op, long count, long p50Nanos, long p90Nanos, long p99Nanos,
      long maxNanos) {}

  /** Every opcode served so far, in opcode order. */
  java.util.List<OpStats> latencies() {
    java.util.List<OpStats> out = new java.util.ArrayList<>();
    long[] h = new long[BUCKETS];
    for (int op = 0; op <= Fuse.MAX_OPCODE; op++) {
      long n = 0;
      for (int b = 0; b < BUCKETS; b++) {
        h[b] = latency.get(op * BUCKETS + b);
        n += h[b];
      }
      if (n == 0) {
        continue;
      }
      out.add(new OpStats(Fuse.name(op), n, percentile(h, n, 0.50), percentile(h, n, 0.90),
          percentile(h, n, 0.99), percentile(h, n, 1.0)));
    }
    return out;
  }

  /** The upper bound of the bucket the q-th request falls in. */
  static long percentile(long[] h, long n, double q) {
    long rank = Math.max(1, (long) Math.ceil(q * n));
    long seen = 0;
    for (int b = 0; b < h.length; b++) {
      seen += h[b];
      if (seen >= rank) {
        return 1L << b;
      }
    }
    return 1L << (h.length - 1);
  }

  static int bucket(long nanos) {
    return Math.min(BUCKETS - 1, 64 - Long.numberOfLeadingZeros(Math.max(0, nanos)));
  }

  /** Requests served, by opcode name, and opens by kind: for logs, tests and benchmarks. */
  java.util.Map<String, Long> stats() {
    java.util.Map<String, Long> out = new java.util.TreeMap<>();
    for (int i = 0; i <= Fuse.MAX_OPCODE; i++) {
      long c = counts.get(i);
      if (c > 0) {
        out.put(Fuse.name(i), c);
      }
      long e = errors.get(i);
      if (e > 0) {
        out.put(Fuse.name(i) + " errors", e);
      }
    }
    out.put("opens passed through", passthroughOpens.get());
    out.put("opens served", servedOpens.get());
    out.put("nodes retired", retiredNodes.get());
    out.put("listing entries skipped", entriesSkipped.get());
    out.put("nodes", (long) nodes.size());
    return out;
  }

  boolean passthrough() {
    return passthrough;
  }

  /** The flags INIT agreed to (0 before INIT). */
  long agreed() {
    return agreed;
  }

  /**
   * Serves a connection whose INIT a server before this one answered (a daemon restart): what
   * INIT settled then ({@code agreed}: the kernel keeps to it, so this server must too, or
   * set-ID bits would stay on and umasks go unapplied), and directory handles from
   * {@code base} on, none the kernel may still hold.
   */
  void resume(long agreed, long base) {
    this.agreed = agreed;
    passthrough = (agreed & Fuse.PASSTHROUGH) != 0 && wantPassthrough;
    ring = false;
    killpriv = (agreed & Fuse.HANDLE_KILLPRIV_V2) != 0;
    dontMask = (agreed & Fuse.DONT_MASK) != 0;
    dirHandles.set(base);
  }

  // ---------------------------------------------------------------- hand-over

  /** Requests being answered now. */
  private final java.util.concurrent.atomic.AtomicInteger serving =
      new java.util.concurrent.atomic.AtomicInteger();
  /** Handed over: no request is answered from now on. */
  private volatile boolean frozen;

  /**
   * Called by a worker with a request read, before serving it: once handed over, the request
   * is not answered (the worker waits for good; the kernel sends the request again to the next
   * server), else it counts as under way until {@link #served}, its reply written.
   */
  void serving() {
    while (true) {
      serving.incrementAndGet();
      if (!frozen) {
        return;
      }
      serving.decrementAndGet();
      while (frozen) { // until the process ends, or a hand-over that failed thaws it
        java.util.concurrent.locks.LockSupport.parkNanos(10_000_000L);
      }
    }
  }

  /** The request {@link #serving} announced is answered (its reply written, or none). */
  void served() {
    serving.decrementAndGet();
  }

  /**
   * Stops answering (a request read from now on waits for good: the kernel sends it again to
   * the next server) and waits up to {@code millis} for those under way; whether none is left.
   */
  boolean freeze(long millis) throws InterruptedException {
    frozen = true;
    long deadline = System.nanoTime() + millis * 1_000_000L;
    try {
      while (serving.get() > 0) {
        if (System.nanoTime() > deadline) {
          frozen = false; // not handed over: it serves on
          return false;
        }
        Thread.sleep(1);
      }
    } catch (InterruptedException e) {
      frozen = false;
      throw e;
    }
    return true;
  }

  /** Serves again after {@link #freeze} (a hand-over that could not be made). */
  void thaw() {
    frozen = false;
  }

  /**
   * Writes what the kernel holds of this server (nodes, open files with their backings, open
   * directories, the view's open files) for the next one ({@link #restore}): after {@link
   * #freeze} for a hand-over, or while serving for a checkpoint (then as things stand, the
   * descriptors not given). Returns the view's open files' descriptors, in the order written:
   * they go to the next server with a hand-over's state.
   */
  int[] writeState(java.io.DataOutputStream out) throws java.io.IOException {
    nodes.writeTo(out);
    List<Map.Entry<Long, Open>> os = new ArrayList<>(opens.entrySet());
    out.writeInt(os.size());
    for (Map.Entry<Long, Open> e : os) {
      out.writeLong(e.getKey());
      out.writeLong(e.getValue().node().id);
      Backing b = e.getValue().backing();
      out.writeInt(b == null ? -1 : b == CACHED ? -2 : b.id); // -2: served from the page cache
      if (b != null && b != CACHED) {
        out.writeLong(b.dev);
        out.writeLong(b.ino);
        out.writeInt(b.users);
        out.writeBoolean(backings.get(e.getValue().node().id) == b);
      }
    }
    List<Map.Entry<Long, DirOpen>> ds = new ArrayList<>(dirs.entrySet());
    out.writeInt(ds.size());
    for (Map.Entry<Long, DirOpen> e : ds) {
      out.writeLong(e.getKey());
      out.writeLong(e.getValue().node.id);
    }
    List<UnionView.OpenHandle> hs = view.openHandles();
    out.writeInt(hs.size());
    int[] fds = new int[hs.size()];
    for (int i = 0; i < hs.size(); i++) {
      UnionView.OpenHandle h = hs.get(i);
      fds[i] = h.fd();
      out.writeLong(h.fh());
      byte[] b = io.strata.layers.fs.RawFs.bytes(h.path());
      out.writeInt(b.length);
      out.write(b);
      out.writeBoolean(h.writable());
      out.writeBoolean(h.onUpper());
      Attr a = h.unlinked();
      out.writeBoolean(a != null);
      if (a != null) {
        out.writeLong(a.ino());
        out.writeInt(a.mode());
        out.writeLong(a.nlink());
        out.writeInt(a.uid());
        out.writeInt(a.gid());
        out.writeLong(a.rdev());
        out.writeLong(a.size());
        out.writeLong(a.blocks());
        out.writeLong(a.atimeNanos());
        out.writeLong(a.mtimeNanos());
        out.writeLong(a.ctimeNanos());
        out.writeBoolean(a.lowerLink());
        out.writeLong(a.btimeNanos());
      }
    }
    return fds;
  }

  /**
   * Takes over what {@link #writeState} wrote: the nodes, the kernel's open files (their
   * backings stay registered with the kernel, and go at their last RELEASE as before), open
   * directories (listed again at their next READDIR), and the view's open files with their
   * descriptors {@code files} (this view's from here: unlinked and O_TMPFILE files too).
   */
  void restore(java.io.DataInputStream in, long base, int[] files) throws java.io.IOException {
    boolean checkpoint = files == null;
    if (checkpoint) {
      inheritedBelow = base;
    }
    nodes.restore(in, base, checkpoint);
    Map<Integer, Backing> byId = new HashMap<>();
    int nopens = in.readInt();
    for (int i = 0; i < nopens; i++) {
      long fh = in.readLong();
      NodeTable.Node n = nodes.get(in.readLong());
      int bid = in.readInt();
      Backing b = null;
      if (bid == -2) {
        b = CACHED;
        if (n != null) {
          n.cachedOpens++;
        }
      } else if (bid >= 0) {
        long dev = in.readLong();
        long ino = in.readLong();
        int users = in.readInt();
        boolean current = in.readBoolean();
        b = byId.computeIfAbsent(bid, k -> new Backing(bid, dev, ino));
        b.users = users;
        b.inherited = checkpoint;
        if (current && n != null) {
          backings.put(n.id, b);
        }
      }
      if (n != null) {
        opens.put(fh, new Open(n, b));
      }
    }
    int ndirs = in.readInt();
    for (int i = 0; i < ndirs; i++) {
      long fh = in.readLong();
      NodeTable.Node n = nodes.get(in.readLong());
      if (n != null) {
        dirs.put(fh, new DirOpen(n));
      }
    }
    int nhandles = in.readInt();
    int lost = 0;
    String firstLost = null;
    if (!checkpoint && nhandles != files.length) {
      throw new java.io.IOException(nhandles + " open files, " + files.length + " descriptors");
    }
    for (int i = 0; i < nhandles; i++) {
      long fh = in.readLong();
      byte[] b = new byte[in.readInt()];
      in.readFully(b);
      boolean writable = in.readBoolean();
      boolean onUpper = in.readBoolean();
      Attr a = null;
      if (in.readBoolean()) {
        a = new Attr(in.readLong(), in.readInt(), in.readLong(), in.readInt(), in.readInt(),
            in.readLong(), in.readLong(), in.readLong(), in.readLong(), in.readLong(),
            in.readLong(), in.readBoolean(), in.readLong());
      }
      String path = io.strata.layers.fs.RawFs.raw(b);
      if (!checkpoint) {
        view.adopt(new UnionView.OpenHandle(fh, files[i], path, writable, onUpper, a));
        continue;
      }
      // the server that wrote this died with its descriptors: the file is opened again by
      // its name, if that still leads to the file the kernel's open file is of
      Open o = opens.get(fh);
      String why = a != null ? "removed" : path.isEmpty() ? "O_TMPFILE"
          : o == null ? "opened after the checkpoint" : null;
      if (why == null) {
        try {
          verify(o.node());
          view.reopen(fh, path, writable);
        } catch (FsException e) {
          why = e.getMessage();
        }
      }
      if (why != null) {
        lost++; // requests on its handle fail (EBADF)
        if (firstLost == null) {
          firstLost = "/" + path + ": " + why;
        }
      }
    }
    if (checkpoint) {
      log.accept("resumed from the checkpoint of a server that died: " + nodes.size()
          + " nodes, " + opens.size() + " open files, " + dirs.size() + " open directories");
    }
    if (lost > 0) {
      log.accept(lost + (lost == 1 ? " file" : " files") + " open on the server before could"
          + " not be opened again (their descriptors fail), such as " + firstLost);
    }
  }

  /** Accept FUSE over io_uring if the kernel's INIT offers it (before INIT comes). */
  void offerRing(boolean on) {
    wantRing = on;
  }

  /** Whether INIT was answered with FUSE over io_uring: the ring's queues must register. */
  boolean ring() {
    return ring;
  }

  /**
   * Answers the request in {@code in} (already parsed) into {@code out}; returns the length of
   * the reply to write, or 0 when there is none (FORGET, INTERRUPT, a frame without a header).
   * {@code inMem} and {@code outMem} are the same buffers as native memory, for data that goes
   * between the kernel and a real file without a Java copy.
   */
  int handle(Request in, Reply out, Pointer inMem, Pointer outMem) {
    int op = in.opcode;
    long start = System.nanoTime();
    Copied copied = COPIED.get();
    copied.by = this;
    int len;
    try {
      len = answer(in, out, inMem, outMem);
    } finally {
      copied.by = null;
      // files this request copied up: the kernel drops their old attributes (a lower hard
      // link's count, ctime, blocks) before the answer, so that what follows it never sees them
      for (int i = 0; i < copied.n; i++) {
        session.invalidateAttributes(copied.ids[i]);
      }
      copied.n = 0;
    }
    if (op >= 0 && op <= Fuse.MAX_OPCODE) {
      counts.incrementAndGet(op);
      latency.incrementAndGet(op * BUCKETS + bucket(System.nanoTime() - start));
    }
    return len;
  }

  private int answer(Request in, Reply out, Pointer inMem, Pointer outMem) {
    int op = in.opcode;
    out.start();
    COUNTED.get().n = 0;
    int errno;
    try {
      errno = dispatch(in, out, inMem, outMem);
    } catch (FsException e) {
      errno = e.errno();
    } catch (Request.BadFrame e) {
      log.accept("bad request: " + e.getMessage());
      errno = Posix.EINVAL;
    } catch (RuntimeException | Error e) {
      log.accept(Fuse.name(op) + " node " + in.nodeid + ": unexpected " + e);
      errno = Posix.EIO;
    }
    if (errno < 0 || op == Fuse.FORGET || op == Fuse.BATCH_FORGET || op == Fuse.INTERRUPT) {
      return 0; // never answered, not even when malformed
    }
    if (errno != 0) {
      replyLost();
      if (op >= 0 && op <= Fuse.MAX_OPCODE) {
        errors.incrementAndGet(op);
      }
    }
    return out.finish(in.unique, errno);
  }

  /**
   * Undoes the lookups counted by the last reply built on this thread: the kernel refused it
   * (the request was interrupted or aborted meanwhile), so it will never forget them.
   */
  void replyLost() {
    Counted c = COUNTED.get();
    for (int i = 0; i < c.n; i++) {
      nodes.forget(c.ids[i], 1);
    }
    c.n = 0;
  }

  /** Requests served by every mount of this process (see KernelSession#requestsServed). */
  static final java.util.concurrent.atomic.LongAdder REQUESTS =
      new java.util.concurrent.atomic.LongAdder();

  /**
   * Parses and answers a frame of {@code n} bytes: a frame whose header is whole but lies gets
   * EINVAL, one shorter than a header is dropped (0: nothing to write).
   */
  int serve(Request in, int n, Reply out, Pointer inMem, Pointer outMem) {
    REQUESTS.increment();
    try {
      in.parse(n);
    } catch (Request.BadFrame e) {
      log.accept("bad frame: " + e.getMessage());
      if (n < Fuse.IN_HEADER) {
        return 0;
      }
      out.start();
      return out.finish(in.unique, Posix.EINVAL);
    }
    return handle(in, out, inMem, outMem);
  }

  private NodeTable.Node node(long id) throws FsException {
    NodeTable.Node n = nodes.get(id);
    if (n == null) {
      throw new FsException(Posix.ESTALE, "node " + id + " is not known (forgotten?)");
    }
    if (n.unsure) {
      verify(n);
    }
    return n;
  }

  /**
   * Checks a node taken from the checkpoint of a server that died ({@link #restore}): the
   * checkpoint may be behind what that server did after it, so the node's name must still lead
   * to a file of its number and kind. Else ESTALE: the kernel looks a path up again
   * (LOOKUP_REVAL) and gets a node of what is there now; a descriptor of the old one fails, as
   * it would after the file's removal over NFS.
   */
  private void verify(NodeTable.Node n) throws FsException {
    String p = pathOf(n);
    Attr a = null;
    if (p != null) {
      try {
        a = view.getattr(p);
      } catch (FsException gone) {
        // stale below
      }
    }
    if (a == null || a.ino() != n.ino || a.isDirectory() != n.dir) {
      throw new FsException(Posix.ESTALE, "node " + n.id + " (" + p + ") is not what it was"
          + " when the server before died");
    }
    nodes.verified(n);
  }

  /** Opcodes whose requests change what {@link #writeState} writes. */
  private static final int[] CHANGING = {Fuse.LOOKUP, Fuse.FORGET, Fuse.BATCH_FORGET,
      Fuse.MKNOD, Fuse.MKDIR, Fuse.SYMLINK, Fuse.LINK, Fuse.UNLINK, Fuse.RMDIR, Fuse.RENAME,
      Fuse.RENAME2, Fuse.CREATE, Fuse.TMPFILE, Fuse.OPEN, Fuse.RELEASE, Fuse.OPENDIR,
      Fuse.RELEASEDIR, Fuse.READDIRPLUS, Fuse.SETATTR};

  /** A count that moves whenever the state {@link #writeState} writes may have changed. */
  long changes() {
    long sum = 0;
    for (int op : CHANGING) {
      sum += counts.get(op);
    }
    return sum;
  }

  private String path(long id) throws FsException {
    String p = pathOf(node(id));
    if (p == null) {
      throw new FsException(Posix.ENOENT, "node " + id + " has no name left");
    }
    return p;
  }

  private String child(long parent, String name) throws FsException {
    if (name.isEmpty() || name.equals(".") || name.equals("..")) {
      throw new FsException(Posix.EINVAL, "name " + name);
    }
    if (name.length() > 255) {
      throw new FsException(Posix.ENAMETOOLONG, "name of " + name.length() + " bytes");
    }
    String p = nodes.childPath(node(parent), name);
    if (p == null) {
      throw new FsException(Posix.ENOENT, "node " + parent + " has no name left");
    }
    return p;
  }

  /** The lookups the reply being built counted, so that a reply the kernel never took undoes them. */
  static final class Counted {
    long[] ids = new long[16];
    int n;

    void add(long id) {
      if (n == ids.length) {
        ids = java.util.Arrays.copyOf(ids, n * 2);
      }
      ids[n++] = id;
    }

    long last() {
      return n == 0 ? 0 : ids[n - 1];
    }
  }

  private static final ThreadLocal<Counted> COUNTED = ThreadLocal.withInitial(Counted::new);

  private void entry(Reply out, long parent, String name, String path) throws FsException {
    entry(out, parent, name, path, false);
  }

  /** The entry reply for a name looked up, linked, or {@code created} just now (a new node). */
  private void entry(Reply out, long parent, String name, String path, boolean created)
      throws FsException {
    Attr a = view.getattr(path);
    NodeTable.Node n = created ? nodes.created(node(parent), name, a.ino(), a.isDirectory())
        : nodes.lookedUp(node(parent), name, a.ino(), a.isDirectory(), a.lowerLink());
    COUNTED.get().add(n.id);
    out.entry(n.id, a, timeouts.entry(), timeouts.attr());
  }

  /** A create's umask for the view: the caller's with FUSE_DONT_MASK, else -1 (applied). */
  private int umask(int sent) {
    return dontMask ? sent & 0777 : -1;
  }

  private int dispatch(Request in, Reply out, Pointer inMem, Pointer outMem)
      throws FsException, Request.BadFrame {
        long id = in.nodeid;
    switch (in.opcode) {
      case Fuse.INIT:
        return init(in, out);
      case Fuse.LOOKUP: {
        String name = in.name();
        String p = child(id, name);
        try {
          entry(out, id, name, p);
        } catch (FsException e) {
          if (e.errno() == Posix.ENOENT && timeouts.negative() > 0) {
            out.start().entry(0, null, timeouts.negative(), 0);
            return 0;
          }
          throw e;
        }
        return 0;
      }
      case Fuse.FORGET:
        nodes.forget(id, in.u64());
        return -1;
      case Fuse.BATCH_FORGET: {
        int count = in.u32();
        in.u32();
        for (int i = 0; i < count; i++) {
          long nodeid = in.u64();
          nodes.forget(nodeid, in.u64());
        }
        return -1;
      }
      case Fuse.GETATTR:
        out.attrOut(attrOf(in), timeouts.attr());
        return 0;
      case Fuse.STATX: {
        // statx(2) asking for the birth time (stat(1), Rust's metadata): the basic attributes
        // with it, as kernel overlayfs gives the real file's; without an answer here the
        // kernel stops asking and shows none
        out.statxOut(attrOf(in), timeouts.attr());
        return 0;
      }
      case Fuse.SETATTR:
        return setattr(in, out);
      case Fuse.READLINK:
        out.raw(view.readlink(path(id)), false);
        return 0;
      case Fuse.SYMLINK: {
        String name = in.name();
        String target = in.target();
        String p = child(id, name);
        view.symlink(target, p, in.uid, in.gid);
        entry(out, id, name, p, true);
        return 0;
      }
      case Fuse.MKNOD: {
        int mode = in.u32();
        int rdev = in.u32();
        int umask = umask(in.u32());
        in.u32();
        String name = in.name();
        String p = child(id, name);
        view.mknod(p, mode, umask, rdev & 0xffffffffL, in.uid, in.gid);
        entry(out, id, name, p, true);
        return 0;
      }
      case Fuse.MKDIR: {
        int mode = in.u32();
        int umask = umask(in.u32());
        String name = in.name();
        String p = child(id, name);
        view.mkdir(p, mode, umask, in.uid, in.gid);
        entry(out, id, name, p, true);
        return 0;
      }
      case Fuse.UNLINK: {
        String name = in.name();
        NodeTable.Node victim = nodes.named(id, name);
        view.unlink(child(id, name));
        nodes.removed(id, name);
        if (victim != null) {
          changedAttributes(victim); // its link count, for a retired node of the file too
        }
        return 0;
      }
      case Fuse.RMDIR: {
        String name = in.name();
        String p = child(id, name);
        removingDirectory(nodes.named(id, name), p, () -> view.rmdir(p));
        nodes.removed(id, name);
        return 0;
      }
      case Fuse.RENAME:
      case Fuse.RENAME2: {
        long newdir = in.u64();
        int flags = 0;
        if (in.opcode == Fuse.RENAME2) {
          flags = in.u32();
          in.u32();
        }
        String from = in.name();
        String to = in.name();
        String target = child(newdir, to);
        int how = flags;
        if ((flags & Fuse.RENAME_EXCHANGE) != 0) {
          view.rename(child(id, from), target, how);
        } else { // it may replace an empty directory that is open
          removingDirectory(nodes.named(newdir, to), target,
              () -> view.rename(child(id, from), target, how));
        }
        if ((flags & Fuse.RENAME_EXCHANGE) != 0) {
          nodes.exchanged(id, from, newdir, to);
        } else {
          NodeTable.Node replaced = nodes.named(newdir, to);
          nodes.renamed(id, from, newdir, to);
          if (replaced != null) {
            changedAttributes(replaced);
          }
        }
        return 0;
      }
      case Fuse.LINK: {
        long old = in.u64();
        String name = in.name();
        String p = child(id, name);
        NodeTable.Node from = node(old);
        String fromPath = pathOf(from);
        if (fromPath != null) {
          view.link(fromPath, p);
          nodes.linked(from, view.getattr(fromPath).ino());
          changedAttributes(from);
        } else {
          long open = openHandle(from); // linkat of an O_TMPFILE file
          if (open == 0) {
            throw new FsException(Posix.ENOENT, "node " + old + " has no name and is not open");
          }
          view.linkOpen(open, p);
        }
        entry(out, id, name, p);
        return 0;
      }
      case Fuse.TMPFILE: {
        int flags = in.u32();
        int mode = in.u32();
        int umask = umask(in.u32());
        in.u32();
        long fh = view.tmpfile(path(id), mode, umask, flags, in.uid, in.gid);
        try {
          Attr a = view.fgetattr(null, fh);
          NodeTable.Node n = nodes.unnamed(a.ino());
          COUNTED.get().add(n.id);
          out.entry(n.id, a, timeouts.entry(), timeouts.attr());
          openReply(out, n, fh, false);
        } catch (FsException | RuntimeException e) {
          view.release(fh);
          throw e;
        }
        return 0;
      }
      case Fuse.OPEN: {
        int flags = in.u32();
        int openFlags = in.u32();
        NodeTable.Node n = node(id);
        long fh = view.open(path(id), flags);
        try {
          if ((openFlags & Fuse.OPEN_KILL_SUIDGID) != 0 && killpriv) {
            killPrivileges(n, fh); // open(O_TRUNC) by a caller without CAP_FSETID
          }
          openReply(out, n, fh, (flags & 3) == 0 && (flags & 01000) == 0); // O_RDONLY, no O_TRUNC
        } catch (FsException | RuntimeException e) {
          view.release(fh);
          throw e;
        }
        return 0;
      }
      case Fuse.CREATE: {
        int flags = in.u32();
        int mode = in.u32();
        int umask = umask(in.u32());
        int openFlags = in.u32();
        String name = in.name();
        String p = child(id, name);
        long fh = view.create(p, mode, umask, flags, in.uid, in.gid);
        try {
          if ((openFlags & Fuse.OPEN_KILL_SUIDGID) != 0 && killpriv) {
            view.killSuidSgid(p); // O_TRUNC of a file that another name made meanwhile
          }
          entry(out, id, name, p, true);
          NodeTable.Node n = nodes.get(COUNTED.get().last());
          openReply(out, n, fh, false);
        } catch (FsException | RuntimeException e) {
          view.release(fh);
          throw e;
        }
        return 0;
      }
      case Fuse.READ: {
        long fh = in.u64();
        long offset = in.u64();
        int size = in.u32();
        int room = out.room();
        int n = view.read(fh, outMem.slice(out.size()), Math.min(size, room), offset);
        out.advance(n);
        return 0;
      }
      case Fuse.WRITE: {
        long fh = in.u64();
        long offset = in.u64();
        int size = in.u32();
        int writeFlags = in.u32();
        in.skip(8 + 4 + 4);
        if (size < 0 || size > in.remaining()) {
          throw new Request.BadFrame("WRITE of " + Integer.toUnsignedString(size)
              + " bytes in a frame with " + in.remaining());
        }
        if ((writeFlags & Fuse.WRITE_KILL_SUIDGID) != 0 && killpriv) {
          killPrivileges(node(id), fh);
        }
        int n = view.write(fh, inMem.slice(in.position()), size, offset);
        out.u32(n).u32(0);
        return 0;
      }
      case Fuse.STATFS: {
        UnionView.FsStats s = view.statfs();
        out.u64(s.blocks()).u64(s.blocksFree()).u64(s.blocksAvailable()).u64(s.files())
            .u64(s.filesFree()).u32((int) s.blockSize()).u32((int) s.nameMax())
            .u32((int) s.fragmentSize()).u32(0).zeros(24);
        return 0;
      }
      case Fuse.RELEASE: {
        long fh = in.u64();
        release(fh);
        return 0;
      }
      case Fuse.FLUSH:
        // Nothing is buffered here (writes go to the real file, or the kernel passes them
        // through): ENOSYS tells the kernel never to send FLUSH again, which saves an upcall on
        // every close(2).
        throw new FsException(Posix.ENOSYS, "FLUSH");
      case Fuse.FSYNCDIR:
        return 0;
      case Fuse.FSYNC: {
        long fh = in.u64();
        int flags = in.u32();
        view.fsync(fh, (flags & Fuse.FSYNC_FDATASYNC) != 0);
        return 0;
      }
      case Fuse.SETXATTR: {
        int size = in.u32();
        int flags = in.u32();
        String name = in.name();
        byte[] value = in.bytes(size);
        NodeTable.Node n = node(id);
        view.setxattr(path(id), name, value, flags);
        n.noXattrs = false;
        return 0;
      }
      case Fuse.GETXATTR: {
        int size = in.u32();
        in.u32();
        String name = in.name();
        NodeTable.Node n = node(id);
        if (Boolean.TRUE.equals(n.noXattrs)) {
          // known to have none: no disk access, and no exception (unwinding a thrown one
          // through compiled frames showed in profiles of `ls -l`, one query per file)
          return UnionView.missingXattr(name);
        }
        byte[] v;
        try {
          v = view.getxattr(path(id), name);
        } catch (FsException e) {
          // At the second miss, learn whether the node has any xattr at all: a listing such
          // as ls -l asks each file once, so the first miss costs only the one lookup.
          if (e.errno() == UnionView.missingXattr(name) && n.noXattrs == null
              && n.xattrMisses++ > 0) {
            n.noXattrs = view.listxattr(path(id)).isEmpty();
          }
          throw e;
        }
        sized(out, v, size);
        return 0;
      }
      case Fuse.LISTXATTR: {
        int size = in.u32();
        in.u32();
        NodeTable.Node n = node(id);
        List<String> names = Boolean.TRUE.equals(n.noXattrs) ? List.of()
            : view.listxattr(path(id));
        n.noXattrs = names.isEmpty();
        StringBuilder sb = new StringBuilder();
        for (String x : names) {
          sb.append(x).append('\0');
        }
        sized(out, io.strata.layers.fs.RawFs.bytes(sb.toString()), size);
        return 0;
      }
      case Fuse.REMOVEXATTR: {
        String name = in.name();
        NodeTable.Node n = node(id);
        view.removexattr(path(id), name);
        n.noXattrs = null;
        return 0;
      }
      case Fuse.OPENDIR: {
        in.u32();
        in.u32();
        if (!view.getattr(path(id)).isDirectory()) {
          throw new FsException(Posix.ENOTDIR, path(id));
        }
        long fh = dirHandles.getAndIncrement();
        dirs.put(fh, new DirOpen(node(id)));
        // The kernel may keep a listing across opens: every change of it goes through here,
        // and the kernel drops its copy when it sees the directory change.
        out.u64(fh).u32(Fuse.FOPEN_CACHE_DIR | Fuse.FOPEN_KEEP_CACHE).u32(0);
        return 0;
      }
      case Fuse.READDIR:
      case Fuse.READDIRPLUS:
        return readdir(in, out, in.opcode == Fuse.READDIRPLUS);
      case Fuse.RELEASEDIR: {
        DirOpen d = dirs.remove(in.u64());
        if (d != null && d.held != 0) {
          view.release(d.held);
        }
        return 0;
      }
      case Fuse.ACCESS:
        view.access(path(id));
        return 0;
      case Fuse.INTERRUPT:
        // Nothing here blocks (no request waits on another or on the network), so the
        // interrupted request is simply answered as it completes, which the protocol allows.
        // Answering EINTR instead broke Go programs: their runtime signals threads all the
        // time (SIGURG preemption), the kernel turns each signal into an INTERRUPT, and Go's
        // lgetxattr does not retry EINTR (buildah failed so).
        in.u64();
        return -1; // an interrupt is never answered itself
      case Fuse.DESTROY:
        return 0;
      case Fuse.FALLOCATE: {
        long fh = in.u64();
        long offset = in.u64();
        long length = in.u64();
        int mode = in.u32();
        view.fallocate(fh, mode, offset, length);
        return 0;
      }
      case Fuse.LSEEK: {
        long fh = in.u64();
        long offset = in.u64();
        int whence = in.u32();
        out.u64(view.lseek(fh, offset, whence));
        return 0;
      }
      case Fuse.COPY_FILE_RANGE: {
        long fhIn = in.u64();
        long offIn = in.u64();
        in.u64(); // nodeid_out: the handle says it
        long fhOut = in.u64();
        long offOut = in.u64();
        long len = in.u64();
        long n = view.copyFileRange(fhIn, offIn, fhOut, offOut, Math.min(len, Integer.MAX_VALUE));
        out.u32((int) n).u32(0);
        return 0;
      }
      default:
        throw new FsException(Posix.ENOSYS, Fuse.name(in.opcode));
    }
  }

  /**
   * The attributes GETATTR and STATX ask for: their requests begin alike (getattr_flags, a
   * reserved word, fh).
   */
  private Attr attrOf(Request in) throws FsException, Request.BadFrame {
    int flags = in.u32();
    in.u32();
    long fh = in.u64();
    NodeTable.Node n = node(in.nodeid);
    String p = pathOf(n);
    if ((flags & Fuse.GETATTR_FH) != 0) {
      return view.fgetattr(p, fh);
    } else if (p == null) {
      long open = openHandle(n); // fstat of an open file with no name left
      if (open == 0) {
        throw new FsException(Posix.ENOENT, "node " + n.id + " has no name left and is not open");
      }
      return view.fgetattr(null, open);
    }
    return view.getattr(p);
  }

  /**
   * The view's path of {@code n}, null when it has no name left. A retired node's kept first
   * name may be another file's by now (its file renamed, the name reused): its descriptors ask
   * by the name of its open handle, which follows its file through renames.
   */
  private String pathOf(NodeTable.Node n) {
    if (n.retired) {
      long open = openHandle(n);
      if (open != 0) {
        return view.openPath(open);
      }
    }
    return nodes.path(n);
  }

  /**
   * A view handle of an open file of {@code n}, or of an open directory of it that was removed
   * (one with no name left), or 0 (handles start at 1).
   */
  private long openHandle(NodeTable.Node n) {
    for (var e : opens.entrySet()) {
      if (e.getValue().node() == n) {
        return e.getKey();
      }
    }
    if (n.dir) {
      for (DirOpen d : dirs.values()) {
        if (d.node == n && d.held != 0) {
          return d.held;
        }
      }
    }
    return 0;
  }

  /** A change of the view that throws as the view does. */
  private interface ViewChange {
    void run() throws FsException;
  }

  /**
   * Runs {@code change}, which removes the directory {@code victim} at {@code path} if it is one
   * (rmdir, or a rename over it). Its open handles first take a view handle on the real
   * directory, so that their descriptors keep answering fstat, fchmod and the like after it
   * is gone, as on kernel overlayfs; given back if the change fails.
   */
  private void removingDirectory(NodeTable.Node victim, String path, ViewChange change)
      throws FsException {
    List<DirOpen> open = openDirs(victim);
    for (DirOpen d : open) {
      d.held = view.holdDirectory(path);
    }
    try {
      change.run();
    } catch (FsException | RuntimeException e) {
      for (DirOpen d : open) {
        view.release(d.held);
        d.held = 0;
      }
      throw e;
    }
  }

  /** The open directories of {@code n} (none for null). */
  private List<DirOpen> openDirs(NodeTable.Node n) {
    if (n == null || !n.dir || dirs.isEmpty()) {
      return List.of();
    }
    List<DirOpen> out = new ArrayList<>();
    for (DirOpen d : dirs.values()) {
      if (d.node == n) {
        out.add(d);
      }
    }
    return out;
  }

  private static void sized(Reply out, byte[] v, int size) throws FsException {
    if (size == 0) {
      out.u32(v.length).u32(0);
    } else if (v.length > size) {
      throw new FsException(Posix.ERANGE, "value of " + v.length + " bytes");
    } else {
      out.bytes(v);
    }
  }

  private int init(Request in, Reply out) throws Request.BadFrame {
    int major = in.u32();
    int minor = in.u32();
    int maxReadahead = in.u32();
    long flags = in.u32() & 0xffffffffL;
    if (major < Fuse.KERNEL_MAJOR) {
      log.accept("the kernel speaks FUSE " + major + "." + minor + ": too old");
      throw new Request.BadFrame("FUSE major " + major);
    }
    if (major > Fuse.KERNEL_MAJOR) {
      out.u32(Fuse.KERNEL_MAJOR).u32(Fuse.KERNEL_MINOR).zeros(Fuse.INIT_OUT - 8);
      return 0; // the kernel asks again with our major
    }
    if ((flags & Fuse.INIT_EXT) != 0) {
      flags |= (in.u32() & 0xffffffffL) << 32;
    }
    // READDIRPLUS for every chunk of a listing, not READDIRPLUS_AUTO (libfuse's default): the
    // kernel's heuristic asks PLUS for a listing's first chunk only, unless lookups came in
    // between, and find, ls -l, du and tar read a whole directory before they stat its
    // entries, so all but the first ~170 names of a directory cost a LOOKUP each after the
    // kernel's caches are dropped (a cold find of 100,000 files: 80,000 LOOKUPs, 4.6 s; 4
    // LOOKUPs and 2.3 s with PLUS throughout). Strata has every entry's attributes at hand.
    long want = Fuse.ASYNC_READ | Fuse.ATOMIC_O_TRUNC | Fuse.BIG_WRITES | Fuse.AUTO_INVAL_DATA
        | Fuse.DO_READDIRPLUS | Fuse.ASYNC_DIO | Fuse.PARALLEL_DIROPS
        | Fuse.POSIX_ACL | Fuse.MAX_PAGES | Fuse.CACHE_SYMLINKS | Fuse.HANDLE_KILLPRIV_V2
        | Fuse.DONT_MASK | Fuse.INIT_EXT;
    if (wantPassthrough) {
      want |= Fuse.PASSTHROUGH;
    }
    if (wantRing) {
      want |= Ring.OVER_IO_URING;
    }
    long got = flags & want;
    passthrough = (got & Fuse.PASSTHROUGH) != 0;
    ring = (got & Ring.OVER_IO_URING) != 0;
    killpriv = (got & Fuse.HANDLE_KILLPRIV_V2) != 0;
    dontMask = (got & Fuse.DONT_MASK) != 0;
    agreed = got;
    out.u32(Fuse.KERNEL_MAJOR).u32(Math.min(minor, Fuse.KERNEL_MINOR)).u32(maxReadahead)
        .u32((int) got).u16(64).u16(48).u32(Fuse.MAX_WRITE).u32(1).u16(Fuse.MAX_PAGES_COUNT)
        .u16(0).u32((int) (got >>> 32))
        // backing files must be on a filesystem that stacks on nothing (ext4, xfs, tmpfs), so
        // that this mount may itself be a lower layer of kernel overlayfs
        .u32(passthrough ? 1 : 0).u16(0).zeros(22);
    return 0;
  }

  private int setattr(Request in, Reply out) throws FsException, Request.BadFrame {
    int valid = in.u32();
    in.u32();
    long fh = in.u64();
    long size = in.u64();
    in.u64(); // lock owner
    long atime = in.u64();
    long mtime = in.u64();
    in.u64(); // ctime
    int atimensec = in.u32();
    int mtimensec = in.u32();
    in.u32();
    int mode = in.u32();
    in.u32();
    int uid = in.u32();
    int gid = in.u32();
    NodeTable.Node n = node(in.nodeid);
    String p = pathOf(n);
    boolean byHandle = (valid & Fuse.FATTR_FH) != 0;
    // With HANDLE_KILLPRIV_V2 the kernel marks a chown, and a truncate by a caller without
    // CAP_FSETID, with KILL_SUIDGID. Before a write through passthrough by such a caller it
    // takes the bits off with a SETATTR that sets nothing (the kernel's privilege removal with
    // the mode left to strata, fuse_setattr), as before chown(f, -1, -1): strata takes the bits
    // off then too. The one case where the kernel would keep them is a write by a caller with
    // CAP_FSETID to a file that has both a set-ID bit and file capabilities (their removal
    // sends the same empty SETATTR). A chown needs nothing more: chown(2) of the real file takes
    // the bits off by the same rule (and an untar chowns every file it makes).
    boolean chown = (valid & (Fuse.FATTR_UID | Fuse.FATTR_GID)) != 0;
    boolean kill = killpriv && !chown
        && ((valid & Fuse.FATTR_KILL_SUIDGID) != 0 || (valid & Fuse.FATTR_CHANGES) == 0);
    long a = (valid & Fuse.FATTR_ATIME) == 0 ? -1
        : (valid & Fuse.FATTR_ATIME_NOW) != 0 ? -2 : atime * 1_000_000_000L + atimensec;
    long m = (valid & Fuse.FATTR_MTIME) == 0 ? -1
        : (valid & Fuse.FATTR_MTIME_NOW) != 0 ? -2 : mtime * 1_000_000_000L + mtimensec;
    if (p == null) {
      // fchmod, fchown, futimens, ftruncate of an open file whose names are all gone
      long h = byHandle ? fh : openHandle(n);
      if (h == 0) {
        throw new FsException(Posix.ENOENT, "node " + n.id + " has no name left");
      }
      if ((valid & Fuse.FATTR_MODE) != 0) {
        view.fchmod(h, mode);
        n.noXattrs = null;
      }
      if ((valid & (Fuse.FATTR_UID | Fuse.FATTR_GID)) != 0) {
        view.fchown(h, (valid & Fuse.FATTR_UID) != 0 ? uid : -1,
            (valid & Fuse.FATTR_GID) != 0 ? gid : -1);
      }
      if ((valid & Fuse.FATTR_SIZE) != 0) {
        view.ftruncate(h, size);
      }
      if ((valid & (Fuse.FATTR_ATIME | Fuse.FATTR_MTIME)) != 0) {
        view.futimens(h, a, m);
      }
      if (kill) {
        view.fkillSuidSgid(h);
      }
      changedAttributes(n);
      out.attrOut(view.fgetattr(null, h), timeouts.attr());
      return 0;
    }
    if ((valid & Fuse.FATTR_MODE) != 0) {
      view.chmod(p, mode);
    }
    if ((valid & (Fuse.FATTR_UID | Fuse.FATTR_GID)) != 0) {
      view.chown(p, (valid & Fuse.FATTR_UID) != 0 ? uid : -1,
          (valid & Fuse.FATTR_GID) != 0 ? gid : -1);
    }
    if ((valid & Fuse.FATTR_SIZE) != 0) {
      if (byHandle) {
        view.ftruncate(fh, size);
      } else {
        view.truncate(p, size);
      }
    }
    if ((valid & (Fuse.FATTR_ATIME | Fuse.FATTR_MTIME)) != 0) {
      view.utimens(p, a, m);
    }
    if (kill) {
      view.killSuidSgid(p);
    }
    if ((valid & Fuse.FATTR_MODE) != 0) {
      n.noXattrs = null; // chmod may have rewritten an ACL
    }
    changedAttributes(n);
    out.attrOut(byHandle ? view.fgetattr(p, fh) : view.getattr(p), timeouts.attr());
    return 0;
  }

  /**
   * Takes set-user-ID and set-group-ID off {@code n}'s file for a WRITE or an OPEN marked
   * KILL_SUIDGID, and tells the kernel, whose inode still has the old mode: neither reply
   * carries attributes.
   */
  private void killPrivileges(NodeTable.Node n, long fh) throws FsException {
    String p = pathOf(n);
    if (p == null) {
      view.fkillSuidSgid(fh);
    } else {
      view.killSuidSgid(p);
    }
    session.invalidateAttributes(n.id);
    changedAttributes(n);
  }

  /** The nodes whose files the request a thread serves copied up. */
  private static final class Copied {
    Dispatcher by; // the dispatcher serving a request on this thread now, or null
    long[] ids = new long[4];
    int n;
  }

  private static final ThreadLocal<Copied> COPIED = ThreadLocal.withInitial(Copied::new);

  /**
   * A copy-up changed node {@code id}'s attributes: when a request of this dispatcher made it on
   * this thread, the kernel is told before that request is answered (true); otherwise the
   * caller tells it later (false).
   */
  boolean copiedUpHere(long id) {
    Copied c = COPIED.get();
    if (c.by != this) {
      return false;
    }
    if (c.n == c.ids.length) {
      c.ids = java.util.Arrays.copyOf(c.ids, c.n * 2);
    }
    c.ids[c.n++] = id;
    return true;
  }

  /**
   * {@code n}'s file has new attributes: the kernel's other inodes of it (a retired node, the
   * node that took its names) must not keep the old ones.
   */
  private void changedAttributes(NodeTable.Node n) {
    for (NodeTable.Node other : nodes.sameFile(n)) {
      session.invalidateAttributes(other.id);
    }
  }

  /**
   * The open reply. With passthrough, the real file is registered as the node's backing file
   * (one per node, shared by its opens: the kernel takes no second one, and wants every open
   * of a node that has one passed through), and the kernel reads, writes and maps it without
   * asking. A file whose filesystem the kernel refuses as a backing is served with the page
   * cache kept, as every open is without passthrough (every write goes through here).
   *
   * <p>A node whose kernel inode still holds the backing of its lower file (a descriptor
   * opened before the copy-up is still open) must give no open the upper: the kernel would
   * refuse a second backing, and a mapping of that open would reach the lower file, which
   * passthrough opens with the open's own flags, writable ones included. So the node is
   * retired: its names go to a new node, its kernel entries are dropped, and this open is
   * answered ESTALE, which makes the kernel look the name up again (LOOKUP_REVAL) and open
   * the new node, with the upper as its backing. The descriptors open on the old kernel inode
   * keep reading the lower file through the kernel (kernel overlayfs would read the upper
   * through them; passthrough leaves strata no way to). An open of a retired node is ESTALE too,
   * which only a reopen through /proc/PID/fd of such an old descriptor meets.
   *
   * <p>A read-only open of a small regular file below ({@link #CACHED_AT_MOST}) is served from
   * the page cache instead (FOPEN_KEEP_CACHE, the file's bytes stored into it before the first
   * such open is answered, so that no read makes a request), and so is every other open of its
   * node while one lasts, writable ones too (their writes are WRITE requests; the kernel
   * refuses to mix the two kinds on one inode). After a read through passthrough the kernel
   * takes the inode's access time for stale, and so does it after a READ, so the fstat that cat
   * and most readers make cost a GETATTR: reading many small files was three requests a file
   * (an OPEN, a GETATTR, a RELEASE) and is two now. The file below never changes, so its pages
   * stay right across opens; a copy-up while such opens last puts the upper behind their
   * descriptors, and the writes that follow go through the same page cache, so every
   * descriptor and mapping of the node sees them (kernel overlayfs, and a passed-through file,
   * keep showing the lower file to a mapping made before).
   */
  private void openReply(Reply out, NodeTable.Node n, long fh, boolean readOnly)
      throws FsException {
    Backing b = null;
    if (passthrough && !n.noBacking) {
      b = backing(n, fh, readOnly);
    }
    int flags;
    int backingId = 0;
    if (b == CACHED) {
      flags = Fuse.FOPEN_KEEP_CACHE;
      servedOpens.incrementAndGet();
    } else if (b != null) {
      flags = Fuse.FOPEN_PASSTHROUGH;
      backingId = b.id;
      passthroughOpens.incrementAndGet();
    } else {
      flags = Fuse.FOPEN_KEEP_CACHE;
      servedOpens.incrementAndGet();
    }
    opens.put(fh, new Open(n, b));
    out.u64(fh).u32(flags).u32(backingId);
  }

  /**
   * The backing for an open of {@code n} (its handle {@code fh}): the node's own, shared, or a
   * new one; {@link #CACHED} for an open served from the page cache; null when the file cannot
   * have one. ESTALE (the handle released, the node retired) when the node's backing is
   * another file than the one this open reaches.
   */
  private Backing backing(NodeTable.Node n, long fh, boolean readOnly) throws FsException {
    int fd = view.descriptor(fh);
    io.strata.layers.fs.RawFs.Statx st;
    try {
      st = io.strata.layers.fs.RawFs.lstat(fd, "");
    } catch (java.io.IOException e) {
      view.release(fh);
      throw FsException.from(e);
    }
    if (st == null || (st.mode() & Posix.S_IFMT) != Posix.S_IFREG) {
      return null;
    }
    boolean small = readOnly && st.size() <= CACHED_AT_MOST && view.below(fh);
    List<NodeTable.Name> dropped = null;
    synchronized (n) {
      Backing b = backings.get(n.id);
      if (n.cachedOpens > 0 || (small && b == null && !n.retired)) {
        if (n.cachedOpens++ == 0 && !n.stored && st.size() > 0) {
          // No other open of the node, so no read of it in flight that holds a page this
          // would wait for; the next opens wait on the node's lock until it is done.
          n.stored = session.store(n.id, fd, (int) st.size());
        }
        return CACHED;
      }
      if (!n.retired && b != null && !b.inherited && b.dev == st.dev() && b.ino == st.ino()) {
        b.users++;
        return b;
      }
      if (!n.retired && b == null) {
        int id = session.backingOpen(fd);
        if (id <= 0) {
          n.noBacking = true;
          if (!passthroughFailureLogged) {
            passthroughFailureLogged = true;
            log.accept("passthrough refused for a file (" + Posix.strerror(-id)
                + "); opens of such files are served by strata instead");
          }
          return null;
        }
        b = new Backing(id, st.dev(), st.ino());
        b.users = 1;
        backings.put(n.id, b);
        return b;
      }
      if (!n.retired) {
        dropped = nodes.retire(n, fileNumber(n));
        retiredNodes.incrementAndGet();
      }
    }
    view.release(fh);
    if (dropped != null) {
      for (NodeTable.Name name : dropped) {
        session.invalidateEntry(name.parent(), name.name());
      }
    }
    throw new FsException(Posix.ESTALE, "node " + n.id + " holds the backing of a file copied"
        + " up since: look it up again");
  }

  /** The view's number for {@code n}'s file now (a lower hard link's changes at its copy-up). */
  private long fileNumber(NodeTable.Node n) {
    String p = nodes.path(n);
    try {
      return p == null ? n.ino : view.getattr(p).ino();
    } catch (FsException e) {
      return n.ino;
    }
  }

  private void release(long fh) {
    Open o = opens.remove(fh);
    view.release(fh);
    if (o != null && o.backing() != null) {
      synchronized (o.node()) {
        Backing b = o.backing();
        if (b == CACHED) {
          o.node().cachedOpens--;
        } else if (--b.users == 0) {
          backings.remove(o.node().id, b);
          session.backingClose(b.id);
        }
      }
    }
  }

  private int readdir(Request in, Reply out, boolean plus) throws FsException, Request.BadFrame {
    long fh = in.u64();
    long offset = in.u64();
    int size = in.u32();
    NodeTable.Node dir = node(in.nodeid);
    String dirPath = nodes.path(dir);
    if (dirPath == null) {
      throw new FsException(Posix.ENOENT, "directory " + dir.id + " has no name left");
    }
    DirOpen open = dirs.get(fh);
    if (open == null && fh < inheritedBelow) {
      // opened by a server that died after its last checkpoint (an `ls` under way at the
      // crash): listed afresh from here, as the directories the checkpoint had open are
      open = dirs.computeIfAbsent(fh, k -> new DirOpen(dir));
    }
    if (open == null) {
      throw new FsException(Posix.EBADF, "no open directory " + fh);
    }
    List<UnionView.DirEntry> list = open.list;
    if (offset == 0 || list.isEmpty()) {
      List<UnionView.DirEntry> fresh = new ArrayList<>();
      Attr self = view.getattr(dirPath);
      fresh.add(new UnionView.DirEntry(".", self.ino(), Posix.S_IFDIR));
      fresh.add(new UnionView.DirEntry("..", 1, Posix.S_IFDIR));
      fresh.addAll(view.readdir(dirPath));
      list = fresh;
      open.list = list;
    }
    int limit = Math.min(size, out.room());
    int start = out.size();
    for (int i = (int) Math.min(offset, list.size()); i < list.size(); i++) {
      UnionView.DirEntry e = list.get(i);
      int need = Reply.direntSize(e.name()) + (plus ? Fuse.ENTRY_OUT : 0);
      if (out.size() - start + need > limit) {
        break;
      }
      if (plus) {
        if (e.name().equals(".") || e.name().equals("..")) {
          out.entry(0, null, 0, 0);
        } else {
          Attr a;
          try {
            a = view.getattr(dirPath, e.name());
          } catch (FsException gone) {
            entriesSkipped.incrementAndGet();
            continue; // removed since the listing was taken
          }
          NodeTable.Node n = nodes.lookedUp(dir, e.name(), a.ino(), a.isDirectory(), a.lowerLink());
          COUNTED.get().add(n.id);
          out.entry(n.id, a, timeouts.entry(), timeouts.attr());
        }
      }
      out.dirent(e.ino(), i + 1, e.type(), e.name());
    }
    return 0;
  }
}
