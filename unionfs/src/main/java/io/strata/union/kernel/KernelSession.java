package io.strata.union.kernel;

import io.strata.layers.fs.Posix;
import io.strata.layers.fs.RawFs;
import io.strata.union.view.FsException;
import io.strata.union.view.UnionView;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.function.Consumer;
import jnr.ffi.Pointer;

/**
 * strata's own FUSE transport: a {@link UnionView} served on /dev/fuse by mount(2) and the
 * kernel's protocol, in Java. One worker reads the first descriptor; once INIT is answered,
 * more workers start as they are needed (when a request arrives and no other worker waits for
 * the next one, as libfuse's loop does), up to {@link Options#workers}, each reading a clone of
 * the descriptor (FUSE_DEV_IOC_CLONE), so no lock orders the reads. A mount that is walked by
 * one process at a time keeps one worker; a daemon serving fifty such mounts keeps fifty, not
 * two hundred. A worker's buffers are malloc'd, not zeroed: only the pages requests touch are
 * resident. A
 * notifier thread writes the invalidations the view asks for, so that no request's thread ever
 * waits on the kernel. The session ends when the kernel says the mount is gone (ENODEV).
 */
public final class KernelSession {
  /**
   * How to serve: kernel cache timeouts in seconds, workers, and whether to pass files through.
   *
   * @param mountedFd a /dev/fuse descriptor already mounted by someone else (the client in
   *     rootless podman's namespace, {@link #adopt}), or -1 to mount here
   */
  public record Options(String source, boolean allowOther, double entryTimeout,
      double attrTimeout, double negativeTimeout, int workers, boolean passthrough,
      int mountedFd, RingUse ring) {}

  /**
   * A connection that a server before this one served (a daemon that was restarted or died,
   * its descriptor kept by {@link Holder}): the generation of servers it has had (ids and
   * handles of this one start at {@code generation << 40}, above any the kernel holds from
   * the ones before), the flags its INIT agreed to (passthrough, who takes set-ID bits off,
   * who applies the umask: the kernel goes on as agreed), and the protocol's minor.
   */
  public record Resumed(long generation, long agreed, int minor) {
    long base() {
      return generation << 40;
    }

    boolean passthrough() {
      return (agreed & Fuse.PASSTHROUGH) != 0;
    }

    /**
     * A connection handed over by a build whose record said only whether passthrough was
     * agreed (hand-over records of version 2). Those builds asked for FUSE_HANDLE_KILLPRIV_V2
     * (since ff6ddee) and not FUSE_DONT_MASK: KILLPRIV_V2 is taken as agreed, the safe side,
     * since without it a write by a user would leave set-ID bits on where the kernel left
     * taking them off to the server.
     */
    public static Resumed withoutFlags(long generation, boolean passthrough, int minor) {
      return new Resumed(generation,
          (passthrough ? Fuse.PASSTHROUGH : 0) | Fuse.HANDLE_KILLPRIV_V2, minor);
    }
  }

  /**
   * Whether requests come through FUSE over io_uring ({@link Ring}): when the host offers it
   * (the default), always (the mount fails where it cannot), or never (/dev/fuse only).
   */
  public enum RingUse { AUTO, ON, OFF }

  /**
   * Receives the /dev/fuse descriptor that a client mounted in its own namespaces, where this
   * process cannot, over the unix socket the client listens on; to serve with {@link
   * Options#mountedFd}.
   */
  public static int adopt(Path socket) throws IOException {
    return Handoff.receive(socket);
  }

  /** Closes a descriptor {@link #adopt} received and no session came to serve. */
  public static void closeDescriptor(int fd) {
    Device.LIBC.close(fd);
  }

  private final UnionView view;
  private final Path mountpoint;
  private final Options options;
  private final Consumer<String> log;
  private final NodeTable nodes;
  private final Dispatcher dispatcher;
  private final int fd;
  /** Workers started (changed under this; read without it by {@link #grow} as a hint). */
  private volatile int workers;
  private final List<Integer> clones = new ArrayList<>();
  private final CountDownLatch ended = new CountDownLatch(1);
  /** What the notifier tells the kernel: a node's attributes, or a name's entry, to drop. */
  private record Invalidation(long node, String name) {}

  private final LinkedBlockingQueue<Invalidation> invalidations = new LinkedBlockingQueue<>();
  /** Started with the first invalidation: a mount that is only read never needs one. */
  private Thread notifier;
  /** Run once the session has ended (by the last worker, on a thread of their own). */
  private final List<Runnable> onEnd = new ArrayList<>();
  private volatile Throwable failure;
  private int running;
  /** Workers waiting in read(2) for a request. */
  private final java.util.concurrent.atomic.AtomicInteger idle =
      new java.util.concurrent.atomic.AtomicInteger();
  /** INIT is answered: workers may be added. */
  private volatile boolean initialized;
  private final CountDownLatch initAnswered = new CountDownLatch(1);

  private KernelSession(UnionView view, Path mountpoint, Options options, Consumer<String> log,
      int fd) throws FsException {
    this.invocation = io.strata.layers.base.Invocation.current();
    this.view = view;
    this.mountpoint = mountpoint;
    this.options = options;
    this.log = log;
    this.fd = fd;
    this.nodes = new NodeTable(view.getattr("/").ino());
    this.dispatcher = new Dispatcher(view, nodes, new Dispatcher.Timeouts(
        nanos(options.entryTimeout()), nanos(options.attrTimeout()),
        nanos(options.negativeTimeout())),
        options.passthrough() && io.strata.layers.fs.Places.isHostRoot(),
        new Bridge(), log);
  }

  private static long nanos(double seconds) {
    return (long) (seconds * 1e9);
  }

  /**
   * fusermount3's options for a user's mount of {@code source} (it adds user_id, group_id and
   * rootmode itself); allow_other only where /etc/fuse.conf lets users ask for it.
   */
  public static String userMountOptions(String source, boolean allowOther) {
    return "fsname=" + source.replace(",", "_") + ",subtype=strata,default_permissions"
        + (allowOther && Fusermount.userAllowOther() ? ",allow_other" : "");
  }

  /**
   * Mounts {@code view} on {@code mountpoint} (which the caller has checked and locked) and
   * starts serving it: as root with mount(2) and the device's descriptor, as a user through
   * fusermount3. Passthrough is asked for only as root (backing files need CAP_SYS_ADMIN).
   */
  public static KernelSession start(UnionView view, Path mountpoint, Options options,
      Consumer<String> log) throws IOException {
    boolean ringWanted = false;
    if (options.ring() != RingUse.OFF) {
      String why = Ring.unavailable();
      if (why != null && options.ring() == RingUse.ON) {
        throw new IOException("FUSE over io_uring was asked for, but " + why);
      }
      if (why == null) {
        toldNoRing.set(null);
      } else if (!why.equals(toldNoRing.getAndSet(why))) {
        io.strata.layers.base.Log.info("serving /dev/fuse: FUSE over io_uring is not available ("
            + why + ")");
      }
      ringWanted = why == null;
    }
    boolean root = Posix.isRoot();
    String common = "default_permissions" + (options.allowOther()
        && (root || Fusermount.userAllowOther()) ? ",allow_other" : "");
    int fd;
    if (options.mountedFd() >= 0) {
      fd = options.mountedFd(); // mounted by the client, in its namespaces
    } else if (root) {
      fd = Device.open();
      if (fd < 0) {
        throw new IOException("cannot open /dev/fuse: " + Posix.strerror(-fd));
      }
      String data = "fd=" + fd + ",rootmode=40000,user_id=0,group_id=0," + common;
      byte[] source = options.source().replace(",", "_").getBytes(StandardCharsets.UTF_8);
      if (Device.LIBC.mount(Device.z(source), Device.z(RawFs.bytes(RawFs.raw(mountpoint))),
          Device.z("fuse.strata".getBytes(StandardCharsets.US_ASCII)),
          Device.MS_NOSUID | Device.MS_NODEV,
          Device.z(data.getBytes(StandardCharsets.US_ASCII))) < 0) {
        int e = Device.errno();
        Device.LIBC.close(fd);
        throw new IOException("mount(2) of " + mountpoint + " failed: " + Posix.strerror(e));
      }
    } else {
      fd = Fusermount.mount(mountpoint, userMountOptions(options.source(),
          options.allowOther()));
    }
    KernelSession s;
    try {
      s = new KernelSession(view, mountpoint, options, log, fd);
    } catch (FsException e) {
      Device.LIBC.close(fd);
      throw new IOException("the view's root: " + e.getMessage());
    }
    if (ringWanted) {
      // the queues' io_urings are made before INIT is answered: once the kernel is told yes,
      // it holds every request until each queue has registered
      try {
        for (int q = 0; q < Ring.queues(); q++) {
          s.queues.add(new Ring.Queue(fd, q, s.dispatcher, log, s.ringServed));
        }
      } catch (IOException e) {
        String line = "serving /dev/fuse: an io_uring for FUSE: " + e.getMessage();
        if (options.ring() == RingUse.ON) {
          io.strata.layers.base.Log.warn(line); // asked for, and the mount is made already
        } else {
          io.strata.layers.base.Log.info(line);
        }
        s.queues.forEach(Ring.Queue::discard);
        s.queues.clear();
        ringWanted = false;
      }
    }
    s.dispatcher.offerRing(ringWanted);
    view.onCopyUp(ino -> {
      for (NodeTable.Node n : s.nodes.byIno(ino)) {
        if (!s.dispatcher.copiedUpHere(n.id)) { // else told before the request's answer
          s.invalidate(new Invalidation(n.id, null));
        }
      }
    });
    s.startWorker(fd); // answers INIT; the others start once it is answered
    return s;
  }

  /**
   * Why the last mount could not be served over io_uring, as logged: said again only when the
   * reason changes (a snapshotter's log had the line once per container).
   */
  private static final java.util.concurrent.atomic.AtomicReference<String> toldNoRing =
      new java.util.concurrent.atomic.AtomicReference<>();

  /**
   * As {@link #start}, or, with {@code resumed}, serves on a connection another server made and
   * handed over ({@link #handOver}; its descriptors kept by {@link Holder} while no daemon ran):
   * {@link Options#mountedFd} is its descriptor, {@code state} what the server before wrote,
   * {@code oldClones} its clones of the descriptor, {@code files} the descriptors of the files
   * its view had open (in the state's order), or null when {@code state} is a {@link
   * #checkpoint} of a server that died (its files are opened again by name). The kernel sends
   * no INIT again, so what the first server agreed to is taken as it was, and the nodes, open
   * files and directories
   * the kernel holds are the ones the old server had; the requests it had read and not
   * answered are asked for again (FUSE_NOTIFY_RESEND), then its clones are closed.
   */
  public static KernelSession start(UnionView view, Path mountpoint, Options options,
      Consumer<String> log, Resumed resumed, byte[] state, int[] oldClones, int[] files)
      throws IOException {
    if (resumed == null) {
      return start(view, mountpoint, options, log);
    }
    int fd = options.mountedFd();
    KernelSession s;
    try {
      s = new KernelSession(view, mountpoint, options, log, fd);
      s.generation = resumed.generation();
      s.nodes.startIdsAt(resumed.base());
      view.startHandlesAt(resumed.base());
      s.dispatcher.resume(resumed.agreed(), resumed.base());
      s.dispatcher.restore(new java.io.DataInputStream(new java.io.ByteArrayInputStream(state)),
          resumed.base(), files);
    } catch (FsException | IOException | RuntimeException e) {
      Device.LIBC.close(fd);
      for (int c : oldClones) {
        Device.LIBC.close(c);
      }
      for (int f : files == null ? new int[0] : files) {
        Device.LIBC.close(f); // the view they went to is dropped without closing them
      }
      throw new IOException("taking over " + mountpoint + ": " + e.getMessage(), e);
    }
    view.onCopyUp(ino -> {
      for (NodeTable.Node n : s.nodes.byIno(ino)) {
        if (!s.dispatcher.copiedUpHere(n.id)) { // else told before the request's answer
          s.invalidate(new Invalidation(n.id, null));
        }
      }
    });
    s.afterInit(s.dispatcher.passthrough(), resumed.minor());
    s.startWorker(fd);
    ByteBuffer buf = ByteBuffer.allocateDirect(16);
    int len = new Reply(buf).start().finishNotify(Fuse.NOTIFY_RESEND);
    if (Device.LIBC.write(fd, Pointer.wrap(Device.RUNTIME, buf), len) < 0) {
      log.accept("taking over " + mountpoint + ": asking the kernel to send again what the"
          + " server before had read: " + Posix.strerror(Device.errno()));
    }
    for (int c : oldClones) {
      Device.LIBC.close(c); // after the resend: a clone closed before would fail its requests
    }
    return s;
  }

  /**
   * What a session hands to the next server: its descriptors (the first, then clones), its
   * view's open files' descriptors (in the state's order), the state.
   */
  public record Handed(int[] descriptors, int[] files, byte[] state, Resumed resumed) {}

  /**
   * Hands this session over to the next server: stops answering (a request read from now on is
   * sent again to the next one), waits up to {@code millis} for the requests under way, and
   * writes the state. Null, and the session goes on, when it cannot be: served over io_uring,
   * a kernel without FUSE_NOTIFY_RESEND, or requests still under way.
   */
  public Handed handOver(long millis) throws InterruptedException, IOException {
    Resumed r = resumable();
    if (r == null || !dispatcher.freeze(millis)) {
      return null;
    }
    java.io.ByteArrayOutputStream b = new java.io.ByteArrayOutputStream();
    java.io.DataOutputStream out = new java.io.DataOutputStream(b);
    int[] files;
    try {
      files = dispatcher.writeState(out);
      out.flush();
    } catch (IOException | RuntimeException e) {
      dispatcher.thaw();
      throw e;
    }
    int[] fds;
    synchronized (this) {
      if (running == 0) {
        dispatcher.thaw();
        return null; // unmounted meanwhile: its descriptors are being closed
      }
      handingOver = true; // the descriptors stay open from here, for the holder
      initialized = false; // no worker (and clone) is added from here: every one goes along
      fds = new int[1 + clones.size()];
      fds[0] = fd;
      for (int i = 0; i < clones.size(); i++) {
        fds[i + 1] = clones.get(i);
      }
    }
    return new Handed(fds, files, b.toByteArray(), r);
  }

  /**
   * What a crash of this process would leave to the next server: copies of its descriptors
   * (the connection's, then its clones; the caller closes them) and how to resume it; its state
   * follows from {@link #writeState}. Null when the session cannot be served elsewhere (see
   * {@link #resumable}) or has ended.
   */
  public record Checkpoint(int[] descriptors, Resumed resumed) {}

  /** See {@link Checkpoint}. */
  public Checkpoint checkpoint() throws IOException {
    Resumed r = resumable();
    if (r == null) {
      return null;
    }
    int[] fds;
    synchronized (this) {
      if (running == 0 || handingOver) {
        return null; // ended, or being handed over: its descriptors are closed or given
      }
      // copies, taken while the numbers are the session's: one that ends may close them
      fds = new int[1 + clones.size()];
      for (int i = 0; i < fds.length; i++) {
        int from = i == 0 ? fd : clones.get(i - 1);
        fds[i] = Device.LIBC.fcntl(from, Device.F_DUPFD_CLOEXEC, 0);
        if (fds[i] < 0) {
          int errno = Device.errno();
          for (int k = 0; k < i; k++) {
            Device.LIBC.close(fds[k]);
          }
          throw new IOException("dup: " + Posix.strerror(errno));
        }
      }
    }
    return new Checkpoint(fds, r);
  }

  /**
   * Writes the session's state (nodes, the kernel's open files and directories, the view's
   * open files by name) while it serves on: no request waits for it, so it may miss what the
   * requests under way change, and the next server checks each node it takes from it before
   * use ({@link Dispatcher#restore}).
   */
  public void writeState(java.io.DataOutputStream out) throws IOException {
    dispatcher.writeState(out); // the view's descriptors are not given: opened again by name
  }

  /** How many clones of its descriptor the session reads now. */
  public synchronized int clones() {
    return clones.size();
  }

  /** A count that moves whenever the state {@link #writeState} writes may have changed. */
  public long changes() {
    return dispatcher.changes();
  }

  /** Serves on after a {@link #handOver} whose result could not be given to anyone. */
  public void keepServing() {
    synchronized (this) {
      handingOver = false; // (a session that ended meanwhile keeps its descriptors until exit)
      initialized = ended.getCount() > 0;
    }
    dispatcher.thaw();
  }

  /** Being handed over: the descriptors are not closed when the session ends (guarded by this). */
  private boolean handingOver;
  /** Servers this connection had before this one (0: this one made it). */
  private long generation;
  /** The protocol's minor version the kernel spoke at INIT. */
  private volatile int minor;

  /**
   * How to serve this connection again from another process, or null when it cannot be: over
   * io_uring (the queues belong to this process's rings) or on a kernel older than FUSE 7.40
   * (no FUSE_NOTIFY_RESEND: requests this server read would wait for ever).
   */
  private Resumed resumable() {
    if (!initialized || ringQueues > 0 || minor < 40) {
      return null;
    }
    return new Resumed(generation + 1, dispatcher.agreed(), minor);
  }

  private synchronized void startWorker(int wfd) {
    String name = "fuse-worker-" + workers++ + " " + mountpoint;
    running++;
    WORKER_THREADS.execute(name, () -> {
      try {
        // as the command that made the mount (its log and streams), as a thread it started would
        io.strata.layers.base.Invocation.run(invocation, () -> {
          serve(wfd);
          return null;
        });
      } catch (Exception e) {
        log.accept("FUSE worker failed: " + e); // serve's own failures are caught there
      }
    });
  }

  /** For tests: runs in a worker about to read a request while INIT is not answered. */
  static volatile Runnable beforeInit;

  /**
   * The threads that serve mounts, kept a while once their mount has ended: a thread started
   * per worker made every mount's INIT wait until it ran (0.25-0.35 ms of a daemon's mount,
   * timed by marks in the daemon), and podman mounts and unmounts a root per container. Their
   * stacks are deep: the view copies up parents recursively, 2,000 levels in a PATH_MAX path.
   */
  private static final io.strata.layers.base.KeptThreads WORKER_THREADS =
      new io.strata.layers.base.KeptThreads("fuse-worker (idle)", 64L << 20, true);

  /** Called by the dispatcher once INIT is answered: from now on workers may be added. */
  private void afterInit(boolean passthrough, int minor) {
    this.minor = Math.min(minor, Fuse.KERNEL_MINOR);
    io.strata.layers.base.Log.debug("FUSE protocol 7." + Math.min(minor, Fuse.KERNEL_MINOR)
        + ", up to " + options.workers() + " workers, passthrough "
        + (passthrough ? "on" : !options.passthrough() ? "off"
            : !io.strata.layers.fs.Places.isHostRoot()
              ? "off (backing files need the host's root): reads and writes are served"
            : "not offered by this kernel: reads and writes are served"));
    startRing(dispatcher.ring());
    initialized = true;
    initAnswered.countDown();
  }

  /** Queues of FUSE over io_uring serving now (0: /dev/fuse serves every request). */
  private volatile int ringQueues;
  /** Requests the io_uring queues answered. */
  private final java.util.concurrent.atomic.AtomicLong ringServed =
      new java.util.concurrent.atomic.AtomicLong();

  /** The io_uring queues made for this mount, until INIT says whether they serve. */
  private final List<Ring.Queue> queues = new ArrayList<>();

  /** INIT was answered: with FUSE over io_uring a thread per queue, else the queues go. */
  private synchronized void startRing(boolean accepted) {
    if (!accepted) {
      queues.forEach(Ring.Queue::discard);
      queues.clear();
      return;
    }
    int n = queues.size();
    for (int q = 0; q < n; q++) {
      Ring.Queue queue = queues.get(q);
      Thread t = new Thread(null, () -> {
        try {
          queue.serve();
        } catch (Throwable e) {
          failure = e;
          log.accept("FUSE io_uring queue failed: " + e);
        } finally {
          workerEnded();
        }
      }, "fuse-ring-" + q + " " + mountpoint, 64L << 20);
      t.setDaemon(true);
      running++;
      t.start();
    }
    queues.clear();
    ringQueues = n;
    io.strata.layers.base.Log.debug("FUSE over io_uring: " + n + " queues of " + Ring.DEPTH
        + " entries");
  }

  /** How many io_uring queues serve this mount (0: none, /dev/fuse serves). */
  public int ringQueues() {
    return ringQueues;
  }

  /** How many requests came through the io_uring queues. */
  public long ringRequests() {
    return ringServed.get();
  }

  /**
   * Waits until the kernel's INIT is answered, after which the mount answers requests; false
   * if the session ended first or {@code nanos} passed. Nothing here touches the mount.
   */
  public boolean awaitInit(long nanos) throws InterruptedException {
    long deadline = System.nanoTime() + nanos;
    while (!initAnswered.await(5, java.util.concurrent.TimeUnit.MILLISECONDS)) {
      if (ended() || System.nanoTime() > deadline) {
        return false;
      }
    }
    return true;
  }

  /** The command that made this mount: its workers run as it (log level, streams). */
  private final io.strata.layers.base.Invocation invocation;
  /** A worker is being added (one at a time). */
  private final java.util.concurrent.atomic.AtomicBoolean growing =
      new java.util.concurrent.atomic.AtomicBoolean();

  /**
   * Starts the workers that mounts add as they grow: starting a thread waits until it runs, a
   * quarter of a millisecond that a fresh mount's first requests (a container's start) would
   * otherwise wait for, one after another. Its one thread is made at class load, in no
   * command's invocation.
   */
  private static final java.util.concurrent.ExecutorService GROWER;

  static {
    java.util.concurrent.ThreadPoolExecutor e = new java.util.concurrent.ThreadPoolExecutor(1, 1,
        0, java.util.concurrent.TimeUnit.SECONDS, new java.util.concurrent.LinkedBlockingQueue<>(),
        r -> {
          Thread t = new Thread(r, "fuse-worker-starter");
          t.setDaemon(true);
          return t;
        });
    e.prestartCoreThread();
    GROWER = e;
  }

  /** When {@link #grow} last handed the starter a look, in System.nanoTime. */
  private volatile long lastGrowLook;

  /**
   * A request came and no worker waits for the next: one more, if the limit allows. The
   * starter looks at most once a millisecond: with one caller at a time the workers take turns,
   * each read finds the other not yet back in read(2), and a look per request woke the
   * starter's thread for nothing (a cold stat walk of 100,000 files: a wake-up and a task's
   * allocations per request, on a machine of two cores that the walk keeps busy).
   */
  private void grow() {
    if (workers >= options.workers()) {
      return;
    }
    long now = System.nanoTime();
    if (now - lastGrowLook < 1_000_000L) {
      return;
    }
    lastGrowLook = now;
    if (!growing.compareAndSet(false, true)) {
      return;
    }
    GROWER.execute(() -> {
      try {
        io.strata.layers.base.Invocation.run(invocation, () -> {
          growNow();
          return null;
        });
      } catch (Exception | Error e) {
        log.accept("cannot add a FUSE worker: " + e);
      } finally {
        growing.set(false);
      }
    });
  }

  private void growNow() {
    int c;
    synchronized (this) {
      if (!initialized || workers >= options.workers() || idle.get() > 0 || running == 0) {
        return;
      }
      c = Device.cloneOf(fd);
      if (c < 0) {
        log.accept("cannot clone the FUSE device (" + Posix.strerror(-c) + "): "
            + workers + " workers");
        initialized = false; // do not try again
        return;
      }
      clones.add(c);
      startWorker(c);
    }
  }

  /**
   * FUSE requests served so far by all mounts of this process, over /dev/fuse and io_uring: a
   * daemon gives memory back only once this stops moving (see DaemonServer#trimWhenIdle).
   */
  public static long requestsServed() {
    return Dispatcher.REQUESTS.sum();
  }

  /** How many workers serve now. */
  public synchronized int workerCount() {
    return workers;
  }

  private static final com.kenai.jffi.MemoryIO MEMORY = com.kenai.jffi.MemoryIO.getInstance();

  private void serve(int wfd) {
    // malloc'd, not zeroed: a megabyte each, of which small requests touch a page
    long inAddr = MEMORY.allocateMemory(Fuse.BUFFER, false);
    long outAddr = MEMORY.allocateMemory(Fuse.BUFFER, false);
    try {
      serve(wfd, MEMORY.newDirectByteBuffer(inAddr, Fuse.BUFFER),
          MEMORY.newDirectByteBuffer(outAddr, Fuse.BUFFER));
    } finally {
      MEMORY.freeMemory(inAddr);
      MEMORY.freeMemory(outAddr);
    }
  }

  private void serve(int wfd, ByteBuffer inBuf, ByteBuffer outBuf) {
    Pointer inMem = Pointer.wrap(Device.RUNTIME, inBuf);
    Pointer outMem = Pointer.wrap(Device.RUNTIME, outBuf);
    Request req = new Request(inBuf);
    Reply rep = new Reply(outBuf);
    try {
      while (true) {
        if (!initialized && beforeInit != null) {
          beforeInit.run();
        }
        idle.incrementAndGet();
        long n = Device.LIBC.read(wfd, inMem, Fuse.BUFFER);
        if (idle.decrementAndGet() == 0 && n >= 0 && initialized) {
          grow();
        }
        if (n < 0) {
          int e = Device.errno();
          if (e == Posix.EINTR || e == Posix.EAGAIN || e == Posix.ENOENT) {
            continue; // ENOENT: the request was interrupted before we read it
          }
          if (e != Posix.ENODEV) {
            log.accept("reading /dev/fuse: " + Posix.strerror(e));
          }
          return; // ENODEV: unmounted
        }
        dispatcher.serving(); // waits for good once the mount is handed over
        int len;
        try {
          len = dispatcher.serve(req, (int) n, rep, inMem, outMem);
          if (len > 0 && Device.LIBC.write(wfd, outMem, len) < 0) {
            int e = Device.errno();
            if (e == Posix.ENOENT) {
              dispatcher.replyLost(); // interrupted meanwhile: the kernel took no reply
            } else if (e == Posix.ENODEV) {
              return;
            } else {
              log.accept("replying to " + Fuse.name(req.opcode) + ": " + Posix.strerror(e));
            }
          }
        } finally {
          dispatcher.served();
        }
        if (req.opcode == Fuse.INIT && len > 0 && !initialized) {
          afterInit(dispatcher.passthrough(), req.buf.getInt(Fuse.IN_HEADER + 4));
        }
      }
    } catch (Throwable t) {
      failure = t;
      log.accept("FUSE worker failed: " + t);
    } finally {
      workerEnded();
    }
  }

  private void workerEnded() {
    boolean last;
    synchronized (this) {
      last = --running == 0;
    }
    if (last) {
      Thread n;
      synchronized (this) {
        n = notifier;
        notifier = DONE; // no notifier starts after this
      }
      if (n != null) {
        n.interrupt();
        try {
          n.join(5_000); // it writes to fd: never after fd is closed and its number reused
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
      }
      boolean keep;
      synchronized (this) {
        // handed over: the holder gets these numbers; closed, another file could take them
        keep = handingOver;
        if (!keep) {
          for (int c : clones) {
            Device.LIBC.close(c);
          }
          clones.clear();
        }
        queues.forEach(Ring.Queue::discard); // made, but INIT never came
        queues.clear();
      }
      if (!keep) {
        Device.LIBC.close(fd);
      }
      ended.countDown();
      List<Runnable> todo;
      synchronized (this) {
        todo = List.copyOf(onEnd);
        onEnd.clear();
      }
      for (Runnable r : todo) {
        ENDINGS.execute(r);
      }
    }
  }

  private static final Thread DONE = new Thread(() -> { }, "fuse-notify ended");
  private static final java.util.concurrent.ExecutorService ENDINGS =
      java.util.concurrent.Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r, "fuse-session-ended");
        t.setDaemon(true);
        return t;
      });

  /**
   * Runs {@code r} once the session has ended (at once if it has), on a pooled thread: what
   * would otherwise take a thread per mount that waits for its end.
   */
  public void onEnd(Runnable r) {
    synchronized (this) {
      if (ended.getCount() > 0) {
        onEnd.add(r);
        return;
      }
    }
    ENDINGS.execute(r);
  }

  /** Queues an invalidation, starting the notifier with the first. */
  private void invalidate(Invalidation i) {
    synchronized (this) {
      if (notifier == DONE) {
        return; // the session has ended: nothing to tell
      }
      if (notifier == null) {
        notifier = new Thread(this::notifyLoop, "fuse-notify " + mountpoint);
        notifier.setDaemon(true);
        notifier.start();
      }
    }
    invalidations.add(i);
  }

  private void notifyLoop() {
    ByteBuffer buf = ByteBuffer.allocateDirect(64 + 256);
    Pointer mem = Pointer.wrap(Device.RUNTIME, buf);
    Reply out = new Reply(buf);
    try {
      while (true) {
        Invalidation i = invalidations.take();
        int len;
        if (i.name() == null) {
          // offset -1: attributes only, pages stay (a copy-up changes no byte of the data)
          out.start().u64(i.node()).u64(-1).u64(0);
          len = out.finishNotify(Fuse.NOTIFY_INVAL_INODE);
        } else {
          byte[] name = io.strata.layers.fs.RawFs.bytes(i.name());
          out.start().u64(i.node()).u32(name.length).u32(0).bytes(name).zeros(1);
          len = out.finishNotify(Fuse.NOTIFY_INVAL_ENTRY);
        }
        if (Device.LIBC.write(fd, mem, len) < 0) {
          int e = Device.errno();
          if (e == Posix.ENODEV || e == Posix.EBADF) {
            return;
          } // ENOENT: the kernel no longer has the inode; nothing to drop
        }
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** Whether a user can mount this transport here: fusermount3 is installed. */
  public static boolean canMountAsUser() {
    return Fusermount.program() != null;
  }

  /** Blocks until the kernel ends the session (the mount is gone). */
  public void awaitEnd() throws InterruptedException {
    ended.await();
  }

  /** Waits up to {@code millis} for the end; whether it came. */
  public boolean awaitEnd(long millis) throws InterruptedException {
    return ended.await(millis, java.util.concurrent.TimeUnit.MILLISECONDS);
  }

  public boolean ended() {
    return ended.getCount() == 0;
  }

  public Throwable failure() {
    return failure;
  }

  /** Whether the kernel agreed to pass open files through to their real files. */
  public boolean passthrough() {
    return dispatcher.passthrough();
  }

  /** Requests served by opcode, opens passed through and served, nodes known. */
  /**
   * What `strata stats` shows of this session: requests by opcode with percentiles of the
   * time they took to serve (microseconds, bounds of power-of-two buckets), nodes known to
   * the kernel, workers, opens by kind.
   */
  public Map<String, Object> report() {
    Map<String, Object> out = new java.util.LinkedHashMap<>();
    Map<String, Long> counts = dispatcher.stats();
    Map<String, Object> requests = new java.util.LinkedHashMap<>();
    for (Dispatcher.OpStats o : dispatcher.latencies()) {
      Map<String, Object> r = new java.util.LinkedHashMap<>();
      r.put("count", o.count());
      r.put("p50Micros", o.p50Nanos() / 1000.0);
      r.put("p90Micros", o.p90Nanos() / 1000.0);
      r.put("p99Micros", o.p99Nanos() / 1000.0);
      r.put("maxMicros", o.maxNanos() / 1000.0);
      requests.put(o.op(), r);
    }
    out.put("requests", requests);
    out.put("nodes", counts.get("nodes"));
    out.put("nodesRetired", counts.get("nodes retired"));
    out.put("listingEntriesSkipped", counts.get("listing entries skipped"));
    out.put("opensPassedThrough", counts.get("opens passed through"));
    out.put("opensServed", counts.get("opens served"));
    out.put("workers", workerCount());
    out.put("ioUringQueues", ringQueues);
    out.put("ioUringRequests", ringServed.get());
    return out;
  }

  public Map<String, Long> stats() {
    return dispatcher.stats();
  }

  /**
   * A notification of a small file's bytes with its headers, per thread (the threads that serve
   * requests are shared by a daemon's mounts), grown to the largest file it has carried.
   */
  private static final ThreadLocal<ByteBuffer> STORES = new ThreadLocal<>();

  /** What the dispatcher needs of the device. */
  private final class Bridge implements Dispatcher.Session {
    @Override
    public int backingOpen(int backing) {
      return Device.backingOpen(fd, backing);
    }

    @Override
    public void backingClose(int id) {
      Device.backingClose(fd, id);
    }

    @Override
    public void invalidateEntry(long parent, String name) {
      invalidate(new Invalidation(parent, name));
    }

    @Override
    public boolean store(long node, int file, int size) {
      int head = Fuse.OUT_HEADER + Fuse.NOTIFY_STORE_OUT;
      int want = head + Math.min(size, (int) Dispatcher.CACHED_AT_MOST);
      ByteBuffer buf = STORES.get();
      if (buf == null || buf.capacity() < want) {
        buf = ByteBuffer.allocateDirect(Math.max(want, 8192));
        STORES.set(buf);
      }
      Pointer p = Pointer.wrap(Device.RUNTIME, buf);
      long n = Device.LIBC.pread(file, p.slice(head), want - head, 0);
      if (n <= 0) {
        return false;
      }
      Reply out = new Reply(buf);
      out.start().u64(node).u64(0).u32((int) n).u32(0).advance((int) n);
      int len = out.finishNotify(Fuse.NOTIFY_STORE);
      return Device.LIBC.write(fd, p, len) == len; // ENOENT: the inode is gone
    }

    @Override
    public void invalidateAttributes(long node) {
      // Attributes only (offset -1): the kernel takes no lock that the request being served
      // could hold, so it is written at once, before the reply says the change is done; a
      // stat that follows the reply must not find the old attributes.
      ByteBuffer buf = ByteBuffer.allocateDirect(64);
      Reply out = new Reply(buf);
      out.start().u64(node).u64(-1).u64(0);
      int len = out.finishNotify(Fuse.NOTIFY_INVAL_INODE);
      Device.LIBC.write(fd, Pointer.wrap(Device.RUNTIME, buf), len); // ENOENT: forgotten
    }
  }
}
