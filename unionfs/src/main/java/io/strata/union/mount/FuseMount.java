package io.strata.union.mount;

import io.strata.layers.fs.Mounts;
import io.strata.union.jnr.UnionFuse;
import io.strata.union.view.UnionView;
import io.strata.union.kernel.KernelSession;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * A live FUSE mount of a {@link UnionView}: mounting returns only once the kernel lists the
 * mount and it answers a stat; closing unmounts synchronously and waits for the FUSE loop to
 * end. (jnr-fuse's own mount() sleeps two seconds and its umount() does not wait.)
 */
public final class FuseMount implements AutoCloseable {
  /**
   * Which code speaks to the kernel: strata's own FUSE protocol on /dev/fuse (inode-based,
   * cached, passthrough), or jnr-fuse over libfuse2's path API, the portable path.
   */
  public enum Transport {
    KERNEL, JNR;

    /**
     * "kernel" (also "own"), "uring" or "dev" (strata's own, over io_uring only or over
     * /dev/fuse only) or "jnr"; anything else is a clear error.
     */
    public static Transport parse(String s) {
      return switch (s.toLowerCase(java.util.Locale.ROOT)) {
        case "kernel", "own", "strata", "uring", "io_uring", "dev", "devfuse" -> KERNEL;
        case "jnr", "jnr-fuse", "libfuse" -> JNR;
        default -> throw new IllegalArgumentException("transport " + s
            + ": must be kernel (strata's own: over io_uring where the kernel offers it, else"
            + " /dev/fuse), uring (io_uring or fail), dev (/dev/fuse only) or jnr (jnr-fuse)");
      };
    }

    /** Whether a transport name asks for io_uring, forbids it, or leaves it to the host. */
    public static KernelSession.RingUse ringOf(String s) {
      return switch (s.toLowerCase(java.util.Locale.ROOT)) {
        case "uring", "io_uring" -> KernelSession.RingUse.ON;
        case "dev", "devfuse" -> KernelSession.RingUse.OFF;
        default -> KernelSession.RingUse.AUTO;
      };
    }

    /** io_uring as {@link #preferred} is told ({@code -Dstrata.transport=uring|dev}). */
    public static KernelSession.RingUse preferredRing() {
      String asked = System.getProperty("strata.transport", io.strata.layers.base.Invocation.current().getenv("STRATA_TRANSPORT"));
      return asked == null || asked.isBlank() ? KernelSession.RingUse.AUTO : ringOf(asked.trim());
    }

    /**
     * The transport to use when none is asked for: {@code -Dstrata.transport} or
     * {@code $STRATA_TRANSPORT} if set, else strata's own where it can mount (root: mount(2)
     * with the device's descriptor; a user: fusermount3, also the client's for a user's
     * daemon), else jnr-fuse.
     */
    public static Transport preferred() {
      String asked = System.getProperty("strata.transport", io.strata.layers.base.Invocation.current().getenv("STRATA_TRANSPORT"));
      if (asked != null && !asked.isBlank()) {
        return parse(asked.trim());
      }
      if (io.strata.layers.base.Invocation.current().clientMounter() != null) {
        return KERNEL; // the client's fusermount3 opens the device
      }
      boolean device = Files.isReadable(Path.of("/dev/fuse"))
          && Files.isWritable(Path.of("/dev/fuse"));
      return device && (io.strata.layers.fs.Posix.isRoot()
          || io.strata.union.kernel.KernelSession.canMountAsUser()) ? KERNEL : JNR;
    }
  }

  /** Kernel-facing settings: transport, timeouts and the name the mount shows in /proc/mounts. */
  public record Settings(double entryTimeout, double attrTimeout, double negativeTimeout,
      boolean kernelCache, String fsName, boolean allowOther, List<String> extraOptions,
      Transport transport, boolean passthrough, int mountedFd, KernelSession.RingUse ring,
      Handover.Plan plan) {

    /** A day: "forever" for a kernel cache whose every change goes through this mount. */
    static final double LONG = 86_400;

    /** The defaults of the preferred transport. */
    public static Settings defaults(String fsName) {
      return defaults(fsName, Transport.preferred()).withRing(Transport.preferredRing());
    }

    /**
     * strata's own transport caches names, attributes, negative entries and data for a day:
     * every change goes through the mount, lowers never change, one kernel inode stands for
     * all names of a file, and strata invalidates what it changes behind the kernel's back
     * (copy-up). jnr-fuse caches names for a minute but neither attributes nor data: libfuse2's
     * path-based API gives each name of a hard link its own kernel inode, so `ln a b; stat a`
     * would show a cached link count, and a write through one name could not invalidate what
     * the kernel cached for another.
     */
    public static Settings defaults(String fsName, Transport t) {
      return t == Transport.KERNEL
          ? new Settings(LONG, LONG, LONG, true, fsName, true, List.of(), t, true, -1,
              KernelSession.RingUse.AUTO, null)
          : new Settings(60, 0, 1, false, fsName, true, List.of(), t, false, -1,
              KernelSession.RingUse.OFF, null);
    }

    /** The same settings with every kernel cache timeout set to {@code seconds}. */
    public Settings withTimeout(double seconds) {
      return new Settings(seconds, seconds, transport == Transport.KERNEL ? seconds
          : Math.min(1, seconds), kernelCache && seconds > 0, fsName, allowOther, extraOptions,
          transport, passthrough, mountedFd, ring, plan);
    }

    /** The defaults of {@code t}, with this name. */
    public Settings withTransport(Transport t) {
      return t == transport ? this : defaults(fsName, t);
    }

    /** The same settings with passthrough of open files allowed or not (own transport). */
    public Settings withPassthrough(boolean on) {
      return new Settings(entryTimeout, attrTimeout, negativeTimeout, kernelCache, fsName,
          allowOther, extraOptions, transport, on, mountedFd, ring, plan);
    }

    /** The same settings with io_uring used where offered, always, or never (own transport). */
    public Settings withRing(KernelSession.RingUse use) {
      return transport != Transport.KERNEL || use == ring ? this
          : new Settings(entryTimeout, attrTimeout, negativeTimeout, kernelCache, fsName,
              allowOther, extraOptions, transport, passthrough, mountedFd, use, plan);
    }

    /**
     * The same settings serving a /dev/fuse descriptor that another process mounted in its own
     * namespaces ({@link KernelSession#adopt}): the mount is not this process's to see, so
     * readiness is INIT answered, and unmounting is the owner's.
     */
    public Settings withMountedFd(int fd) {
      return new Settings(entryTimeout, attrTimeout, negativeTimeout, kernelCache, fsName,
          allowOther, extraOptions, Transport.KERNEL, passthrough, fd, ring, plan);
    }

    /**
     * The same settings with the command line that makes this mount again, so that a daemon
     * that stops can hand it to the next one ({@link Handover}); with {@code from}, it is
     * that next one taking the mount over (its descriptor, the old server's state).
     */
    public Settings withPlan(List<String> recipe, Handover.Takeover from,
        java.util.function.Consumer<Path> onHeld) {
      Handover.Plan p = new Handover.Plan(recipe, from, onHeld);
      return from == null
          ? new Settings(entryTimeout, attrTimeout, negativeTimeout, kernelCache, fsName,
              allowOther, extraOptions, transport, passthrough, mountedFd, ring, p)
          : new Settings(entryTimeout, attrTimeout, negativeTimeout, kernelCache, fsName,
              allowOther, extraOptions, Transport.KERNEL, passthrough, from.descriptor(),
              KernelSession.RingUse.OFF, p);
    }

    List<String> args() {
      List<String> o = new ArrayList<>(List.of("fsname=" + fsName.replace(",", "_"),
          "subtype=strata", "default_permissions", "use_ino", "readdir_ino", "hard_remove",
          "big_writes", "max_write=131072", "entry_timeout=" + entryTimeout, "attr_timeout=" + attrTimeout,
          "negative_timeout=" + negativeTimeout));
      if (allowOther) {
        o.add("allow_other");
      }
      if (kernelCache) {
        o.add("kernel_cache");
      }
      o.addAll(extraOptions);
      return List.of("-o", String.join(",", o));
    }
  }

  private final UnionView view;
  private final Path mountpoint;
  private final Thread loop; // jnr-fuse's loop; null for strata's own transport
  private final KernelSession kernel; // null for jnr-fuse
  private final Consumer<String> log;
  private volatile Throwable loopFailure;
  private volatile boolean closed;
  /** Mounted by another process in namespaces of its own: not in this process's mount table. */
  private boolean elsewhere;
  /**
   * Which mount at the mountpoint is this one, read once it answers and before anyone is told
   * ({@link #identify}): the kernel's unique mount id (0 on kernels before 6.8, {@link #GONE}
   * when it was unmounted before), and the device of its filesystem (null when not known). A
   * mount unmounted from outside is found gone by its server a moment later, and the path may
   * have a new mount by then (podman mounts a root again at once; another program's FUSE
   * mount, which may even get the same device number): only this one is this one's to unmount.
   */
  private volatile long mountId;
  private volatile String device;
  /** How the mount is made again by the next daemon (null: it is not handed over). */
  private Handover.Plan plan;
  /** The holder's id of this mount, kept across daemons (0: none yet). */
  long handoverId;
  /** Handed over to the next daemon: this process no longer unmounts or serves it. */
  private volatile boolean handedOver;
  private final MountLock lock;
  /** The command that made this mount (in the daemon, one of many). */
  private final io.strata.layers.base.Invocation owner = io.strata.layers.base.Invocation.current();

  private FuseMount(UnionView view, Path mountpoint, Thread loop, KernelSession kernel,
      Consumer<String> log, MountLock lock) {
    this.view = view;
    this.lock = lock;
    this.mountpoint = mountpoint;
    this.loop = loop;
    this.kernel = kernel;
    this.log = log;
  }

  /** What hands this mount to the next daemon, or null when it cannot be: its session's state. */
  KernelSession.Handed handOver(long millis) throws InterruptedException, IOException {
    if (plan == null || plan.recipe() == null || kernel == null || closed) {
      return null;
    }
    return kernel.handOver(millis);
  }

  /** The hand-over was given to the holder: from now on the mount is the next daemon's. */
  void handedOver() {
    handedOver = true;
    LIVE.remove(this);
  }

  /** Whether this mount was handed to the next daemon (this process neither serves nor ends it). */
  public boolean isHandedOver() {
    return handedOver;
  }

  /** The hand-over could not be given: this process serves the mount on. */
  void notHandedOver() {
    kernel.keepServing();
  }

  Handover.Plan plan() {
    return plan;
  }

  /** The session of strata's own transport serving this mount, or null (jnr-fuse). */
  KernelSession session() {
    return closed ? null : kernel;
  }

  boolean elsewhere() {
    return elsewhere;
  }

  /**
   * Receives a /dev/fuse descriptor another process mounted (over the unix socket it listens
   * on), for {@link Settings#withMountedFd}.
   */
  public static int adopt(Path socket) throws IOException {
    return KernelSession.adopt(socket);
  }

  /** Closes a descriptor {@link #adopt} took and no mount came to serve. */
  public static void closeDescriptor(int fd) {
    KernelSession.closeDescriptor(fd);
  }

  /**
   * Mounts {@code view} on {@code mountpoint} and waits until the mount answers.
   *
   * @throws IOException naming what went wrong when the mount does not come up
   */
  public static FuseMount mount(UnionView view, Path mountpoint, Settings settings,
      Consumer<String> log, Duration timeout) throws IOException {
    Path mp = mountpoint.toAbsolutePath().normalize();
    Handover.Takeover from = settings.plan() != null ? settings.plan().from() : null;
    if (from != null) {
      return takeOver(view, mp, settings, log, from);
    }
    MountLock lock;
    try {
      if (!Files.isDirectory(mp)) {
        throw new IOException("mountpoint " + mp + " is not a directory");
      }
      mp = mp.toRealPath();
      for (Path layer : layersOf(view)) {
        if (layer.startsWith(mp)) {
          throw new IOException("layer " + layer + " is inside the mountpoint " + mp
              + ": the mount would hide it and could deadlock on itself");
        }
      }
      lock = MountLock.acquire(mp);
    } catch (IOException | RuntimeException e) {
      if (settings.mountedFd() >= 0) {
        closeDescriptor(settings.mountedFd()); // a session owns it once it starts, not before
      }
      throw e;
    }
    try {
      long below = 0;
      if (settings.mountedFd() < 0) {
        if (Mounts.isMountpoint(mp)) {
          throw new IOException(mp + " is already a mountpoint (`strata umount " + mp
              + "` first)");
        }
        below = mountIdOrZero(mp);
      }
      Settings s = settings;
      io.strata.layers.base.Invocation.ClientMounter client =
          io.strata.layers.base.Invocation.current().clientMounter();
      if (s.mountedFd() < 0 && client != null) {
        // a user's daemon, in a namespace of its own: the client mounts on the host
        if (s.transport() != Transport.KERNEL) {
          throw new IOException("jnr-fuse cannot serve a mount the client made (a user's mount"
              + " through the daemon): leave --transport out, or run without the daemon"
              + " (STRATA_NO_DAEMON=1)");
        }
        s = s.withMountedFd(client.mount(mp, KernelSession.userMountOptions(s.fsName(),
            s.allowOther())));
      }
      FuseMount m = s.transport() == Transport.KERNEL
          ? startKernel(view, mp, s, log, lock) : startJnr(view, mp, s, log, lock);
      if (m.kernel != null && !m.elsewhere) {
        // mount(2) is done: known by its id at once, before anyone may unmount it and mount
        // something else there
        m.identify(below);
      }
      m.awaitAnswer(timeout);
      if (m.kernel == null && !m.elsewhere) {
        m.identify(below); // jnr-fuse's loop mounts when it starts: there once it answers
      }
      LIVE.add(m);
      signalChange();
      return m;
    } catch (IOException | RuntimeException e) {
      lock.close();
      throw e;
    }
  }

  /**
   * Serves a mount that the daemon before this one handed over ({@link Handover}): nothing
   * here may look at the mountpoint before the session serves (no one answers it until then).
   */
  private static FuseMount takeOver(UnionView view, Path mp, Settings s, Consumer<String> log,
      Handover.Takeover from) throws IOException {
    if (!from.claim()) {
      throw new IOException("the mount at " + mp + " was taken over already");
    }
    MountLock lock;
    try {
      lock = MountLock.acquire(mp);
    } catch (IOException | RuntimeException e) {
      io.strata.union.kernel.Holder.closeAll(from.descriptors());
      throw e;
    }
    try {
      KernelSession k = KernelSession.start(view, mp, new KernelSession.Options(s.fsName(),
          s.allowOther(), s.entryTimeout(), s.attrTimeout(), s.negativeTimeout(), workers(),
          s.passthrough(), s.mountedFd(), KernelSession.RingUse.OFF), log, from.resumed(),
          from.state(), from.clonesOf(), from.files());
      FuseMount m = new FuseMount(view, mp, null, k, log, lock);
      m.elsewhere = from.elsewhere();
      // the plan without what was taken over (the old server's state, read once)
      m.plan = new Handover.Plan(s.plan().recipe(), null, s.plan().onHeld());
      m.handoverId = from.id();
      if (!m.elsewhere) {
        m.identify(0); // held since the last daemon: what the path shows before is not known
      }
      LIVE.add(m);
      signalChange();
      return m;
    } catch (IOException | RuntimeException e) {
      lock.close();
      throw e;
    }
  }

  /** The most FUSE workers a mount of strata's own transport starts. */
  private static int workers() {
    return Math.max(2, Math.min(8, 2 * Runtime.getRuntime().availableProcessors()));
  }

  private static FuseMount startKernel(UnionView view, Path mp, Settings s,
      Consumer<String> log, MountLock lock) throws IOException {
    KernelSession k = KernelSession.start(view, mp, new KernelSession.Options(s.fsName(),
        s.allowOther(), s.entryTimeout(), s.attrTimeout(), s.negativeTimeout(), workers(),
        s.passthrough(), s.mountedFd(), s.ring()), log);
    FuseMount m = new FuseMount(view, mp, null, k, log, lock);
    m.elsewhere = s.mountedFd() >= 0;
    m.plan = s.plan();
    return m;
  }

  private static FuseMount startJnr(UnionView view, Path mp, Settings settings,
      Consumer<String> log, MountLock lock) {
    UnionFuse fuse = new UnionFuse(view, log);
    String[] args = settings.args().toArray(new String[0]);
    final Path target = mp;
    FuseMount[] self = new FuseMount[1];
    Thread loop = new Thread(() -> {
      try {
        fuse.mount(target, true, false, args);
      } catch (Throwable t) {
        if (self[0] != null) {
          self[0].loopFailure = t;
        }
      }
    }, "fuse-loop " + mp);
    FuseMount m = new FuseMount(view, mp, loop, null, log, lock);
    self[0] = m;
    loop.setDaemon(true);
    loop.start();
    return m;
  }

  private boolean serving() {
    return kernel != null ? !kernel.ended() : loop.isAlive();
  }

  private void awaitAnswer(Duration timeout) throws IOException {
    Path mp = mountpoint;
    long deadline = System.nanoTime() + timeout.toNanos();
    if (kernel != null) {
      // strata's own transport answered INIT: the mount answers from now on (no process
      // spawned to ask it, which took most of a mount's 30 ms in the daemon; nor a read of
      // the mount table: the kernel sends INIT only for a mount that was made)
      try {
        if (kernel.awaitInit(timeout.toNanos())) {
          return;
        }
        if (kernel.ended() && kernel.failure() == null) {
          // unmounted before INIT came (an unmount racing the mount, umount2 or an abort,
          // which need no answer): a mount that has come and gone, not one that failed
          return;
        }
        if (elsewhere) {
          close();
          Throwable why = kernel.failure();
          throw new IOException("the mount at " + mp + " did not start"
              + (why != null ? ": " + why.getMessage() : ""));
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        close();
        throw new IOException("interrupted while mounting " + mp);
      }
    }
    while (true) {
      if (Mounts.isFuseMountpoint(mp) && answers(mp, deadline)) {
        return;
      }
      if (!serving()) {
        Throwable why = kernel != null ? kernel.failure() : loopFailure;
        throw new IOException("mounting " + mp + " failed"
            + (why != null ? ": " + why.getMessage() : "")
            + (kernel != null ? "" : " (is /dev/fuse there, libfuse2 installed, and are you root?)"));
      }
      if (System.nanoTime() > deadline) {
        close();
        throw new IOException("the mount at " + mp + " did not answer within " + timeout);
      }
      try {
        Thread.sleep(5);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        close();
        throw new IOException("interrupted while mounting " + mp);
      }
    }
  }

  /**
   * Whether the mount answers a stat, asked by a child process: a thread of the daemon itself
   * must never wait on its own mount, or a kill in that moment leaves it unkillable (the
   * request waits for a loop that is gone, and the connection lives until the thread exits).
   */
  private static boolean answers(Path mp, long deadline) throws IOException {
    Process p = new ProcessBuilder("stat", "-c", "%i", mp.toString())
        .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
    try {
      long left = Math.max(1, deadline - System.nanoTime());
      if (!p.waitFor(left, java.util.concurrent.TimeUnit.NANOSECONDS)) {
        p.destroyForcibly();
        return false;
      }
      return p.exitValue() == 0;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      p.destroyForcibly();
      return false;
    }
  }

  private static List<Path> layersOf(UnionView v) {
    List<Path> out = new ArrayList<>(v.lowers());
    if (v.upper() != null) {
      out.add(v.upper());
    }
    return out;
  }

  public Path mountpoint() {
    return mountpoint;
  }

  public UnionView view() {
    return view;
  }

  /** io_uring queues serving this mount (0: /dev/fuse, or jnr-fuse, serves every request). */
  public int ringQueues() {
    return kernel != null ? kernel.ringQueues() : 0;
  }

  /** Requests that came through FUSE io_uring (0 when it is not used). */
  public long ringRequests() {
    return kernel != null ? kernel.ringRequests() : 0;
  }

  /** Which transport serves this mount. */
  public Transport transport() {
    return kernel != null ? Transport.KERNEL : Transport.JNR;
  }

  /**
   * What the transport counted: requests by opcode, opens passed through and served, nodes
   * known (strata's own transport; empty for jnr-fuse, which counts nothing).
   */
  public java.util.Map<String, Long> stats() {
    return kernel != null ? kernel.stats() : java.util.Map.of();
  }

  /**
   * Everything `strata stats` shows of this mount: transport, requests with latency
   * percentiles, nodes, workers (strata's own transport), the view's caches and open files.
   */
  public java.util.Map<String, Object> report() {
    java.util.Map<String, Object> out = new java.util.LinkedHashMap<>();
    out.put("mountpoint", mountpoint.toString());
    out.put("transport", transport().name().toLowerCase(java.util.Locale.ROOT));
    out.put("passthrough", passthrough());
    out.put("lowers", view.lowers().size());
    out.put("upper", view.upper() == null ? null : view.upper().toString());
    if (kernel != null) {
      out.putAll(kernel.report());
    }
    out.put("caches", view.cacheStats());
    return out;
  }

  /** Whether open files are passed through to their real files by the kernel. */
  public boolean passthrough() {
    return kernel != null && kernel.passthrough();
  }

  /**
   * Runs {@code r} once the mount has gone away, on a pooled thread (strata's own transport)
   * or a thread that waits for jnr-fuse's loop: a daemon serving many mounts keeps no waiting
   * thread per mount.
   */
  public void whenUnmounted(Runnable r) {
    if (kernel != null) {
      kernel.onEnd(r);
      return;
    }
    Thread t = new Thread(() -> {
      try {
        awaitUnmount();
      } catch (InterruptedException e) {
        return;
      }
      r.run();
    }, "mounted " + mountpoint);
    t.setDaemon(true);
    t.start();
  }

  /**
   * Finds which mount at the mountpoint is this one, before anyone is told that it answers:
   * until then only a racing unmount can have changed what is there. Read later (as it was,
   * after the command's client had its answer), a mount unmounted at once (a container that
   * ends quickly, a test) was taken for what was at the path by then: the directory's own
   * mount, whose "unmount" failed and kept the mount's lock for the life of the daemon (every
   * later mount there: "another strata is mounting or serving"), or another program's mount
   * made there meanwhile, which this one's cleanup would then have unmounted. {@code below}
   * is the id of the mount the path showed before this one (0: not known).
   */
  private void identify(long below) {
    Runnable hook = beforeIdentify;
    if (hook != null) {
      hook.run();
    }
    try {
      long id = io.strata.layers.fs.RawFs.mountId(mountpoint);
      if (id != 0) {
        mountId = id == below ? GONE : id;
        return;
      }
      // a kernel before 6.8: the mount table's device, second best
      Mounts.Entry top = Mounts.top(mountpoint);
      device = top != null && top.fsType().startsWith("fuse") ? top.device() : null;
    } catch (IOException unknown) {
      // the mount answers and is listed: unknown, its unmount looks at the type alone
    }
  }

  /** {@link #mountId} of a mount found gone from its mountpoint before it was identified. */
  private static final long GONE = -1;

  /** For tests: runs in the mounting thread just before the mount is identified. */
  static volatile Runnable beforeIdentify;

  private static long mountIdOrZero(Path p) {
    try {
      return io.strata.layers.fs.RawFs.mountId(p);
    } catch (IOException unknown) {
      return 0;
    }
  }

  /**
   * Unmounts the mount at this mountpoint if it is this one (see {@link #device}); a mount made
   * in a client's namespaces is not visible here, and ends when its users unmount it.
   */
  private void unmountIfOurs() throws IOException {
    if (elsewhere) {
      return;
    }
    if (!isThis()) {
      Mounts.Entry top = Mounts.top(mountpoint);
      if (top != null && top.fsType().startsWith("fuse")) {
        log.accept("left " + mountpoint + " mounted: the mount there now is another ("
            + top.fsType() + " " + top.source() + "); this one was unmounted from outside");
      }
      return;
    }
    try {
      Mounts.unmount(mountpoint, false);
    } catch (IOException e) {
      if (isThis()) {
        throw e;
      } // else unmounted meanwhile (jnr-fuse's own exit hook): fine
    }
  }

  /**
   * Whether the mount at the mountpoint is this one: by its unique id, one statx, where the
   * kernel has one; else a FUSE mount there with this one's device (any, when not known).
   */
  private boolean isThis() throws IOException {
    if (mountId == GONE) {
      return false;
    }
    if (mountId != 0) {
      try {
        return io.strata.layers.fs.RawFs.mountId(mountpoint) == mountId;
      } catch (io.strata.layers.fs.Posix.PosixException gone) {
        if (gone.errno() == io.strata.layers.fs.Posix.ENOENT) {
          return false; // the mountpoint itself is gone
        }
        throw gone;
      }
    }
    Mounts.Entry e = Mounts.top(mountpoint);
    return e != null && e.fsType().startsWith("fuse")
        && (device == null || device.equals(e.device()));
  }

  /** Blocks until the mount goes away (unmounted from outside, or closed). */
  public void awaitUnmount() throws InterruptedException {
    if (kernel != null) {
      kernel.awaitEnd();
    } else {
      loop.join();
    }
  }

  /** The mounts this process serves (a daemon serves many). */
  private static final java.util.Set<FuseMount> LIVE =
      java.util.concurrent.ConcurrentHashMap.newKeySet();

  /** The command that made this mount. */
  public io.strata.layers.base.Invocation owner() {
    return owner;
  }

  /** The mounts this process serves now, in no order. */
  public static List<FuseMount> live() {
    return List.copyOf(LIVE);
  }

  /** Counts changes of {@link #live} and {@link #signalChange} calls; guarded by itself. */
  private static final long[] CHANGES = {0};

  /** Where {@link #live} stands now, for {@link #awaitChange}. */
  public static long changes() {
    synchronized (CHANGES) {
      return CHANGES[0];
    }
  }

  /** Wakes whoever waits in {@link #awaitChange} (a mount's command ended, say). */
  public static void signalChange() {
    synchronized (CHANGES) {
      CHANGES[0]++;
      CHANGES.notifyAll();
    }
  }

  /**
   * Waits until a mount is listed or leaves the list (or {@link #signalChange}) after
   * {@code seen} ({@link #changes}), at most {@code millis}: a caller that looked at the list
   * after reading {@code seen} misses nothing.
   */
  public static void awaitChange(long seen, long millis) throws InterruptedException {
    long end = System.nanoTime() + millis * 1_000_000;
    synchronized (CHANGES) {
      long left;
      while (CHANGES[0] == seen && (left = end - System.nanoTime()) > 0) {
        CHANGES.wait(Math.max(1, left / 1_000_000));
      }
    }
  }

  /** Unmounts and waits for the FUSE loop to end; safe to call twice. */
  @Override
  public void close() throws IOException {
    close(Duration.ofSeconds(30));
  }

  /**
   * Ends the mount when its command ends (a signal, a client that hung up, the process's
   * exit): unmounts as {@link #close()}, and a mount still in use (a shell's working directory
   * in it: EBUSY) is detached instead, as libfuse does when its server ends, rather than left
   * mounted with no command to unmount it. A detached mount is served until its users let it
   * go (in the daemon; a process that exits ends it for them), then cleaned up as any other.
   *
   * @return whether it had to be detached
   */
  public boolean closeOrDetach() throws IOException {
    try {
      close();
      return false;
    } catch (IOException busy) {
      if (elsewhere || !isThis()) {
        throw busy;
      }
      Mounts.unmount(mountpoint, true);
      return true;
    }
  }


  /**
   * Unmounts and waits at most {@code wait} for the FUSE loop to end. It ends at once unless
   * another mount of the same filesystem remains (a bind in a container's mount namespace):
   * then the kernel keeps the connection until that goes, and this returns after {@code wait}
   * with the view closed (the remaining mount's requests fail).
   *
   * @return whether the FUSE loop ended
   */
  public boolean close(Duration wait) throws IOException {
    synchronized (this) {
      if (closed || handedOver) {
        return true;
      }
      closed = true;
    }
    LIVE.remove(this);
    signalChange();
    try {
      unmountIfOurs();
    } catch (IOException e) {
      // still mounted and served: this process's mount still, to be closed again
      synchronized (this) {
        closed = false;
      }
      LIVE.add(this);
      signalChange();
      throw e;
    }
    boolean ended;
    try {
      if (kernel != null) {
        ended = kernel.awaitEnd(Math.max(1, wait.toMillis()));
      } else {
        loop.join(Math.max(1, wait.toMillis()));
        ended = !loop.isAlive();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      ended = false;
    }
    if (!ended) {
      log.accept("the FUSE loop for " + mountpoint + " did not end after unmount (another"
          + " mount of it, such as a container's root, still holds the connection)");
    }
    try {
      view.close();
    } finally {
      lock.close(); // only now may another strata mount here
    }
    return ended;
  }
}
