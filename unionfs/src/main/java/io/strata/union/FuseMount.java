package io.strata.union;

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
  /** Kernel-facing settings: timeouts and the name the mount shows in /proc/mounts. */
  public record Settings(double entryTimeout, double attrTimeout, double negativeTimeout,
      boolean kernelCache, String fsName, boolean allowOther, List<String> extraOptions) {

    /**
     * Names are cached for a minute: every change to the namespace goes through this mount,
     * and the kernel updates its own dentries. Attributes are not cached and data is
     * close-to-open: libfuse2's path-based API gives each name of a hard link its own kernel
     * inode, so `ln a b; stat a` would show a cached link count, and a write through one name
     * cannot invalidate what the kernel cached for another.
     */
    public static Settings defaults(String fsName) {
      return new Settings(60, 0, 1, false, fsName, true, List.of());
    }

    /** The same settings with every kernel cache timeout set to {@code seconds}. */
    public Settings withTimeout(double seconds) {
      return new Settings(seconds, seconds, Math.min(1, seconds), kernelCache && seconds > 0,
          fsName, allowOther, extraOptions);
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

  private final UnionFuse fuse;
  private final Path mountpoint;
  private final Thread loop;
  private final Consumer<String> log;
  private volatile Throwable loopFailure;
  private volatile boolean closed;
  private final MountLock lock;

  private FuseMount(UnionFuse fuse, Path mountpoint, Thread loop, Consumer<String> log,
      MountLock lock) {
    this.lock = lock;
    this.fuse = fuse;
    this.mountpoint = mountpoint;
    this.loop = loop;
    this.log = log;
  }

  /**
   * Mounts {@code view} on {@code mountpoint} and waits until the mount answers.
   *
   * @throws IOException naming what went wrong when the mount does not come up
   */
  public static FuseMount mount(UnionView view, Path mountpoint, Settings settings,
      Consumer<String> log, Duration timeout) throws IOException {
    Path mp = mountpoint.toAbsolutePath().normalize();
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
    MountLock lock = MountLock.acquire(mp);
    try {
      if (Mounts.isMountpoint(mp)) {
        throw new IOException(mp + " is already a mountpoint (`strata umount " + mp + "` first)");
      }
      return start(view, mp, settings, log, timeout, lock);
    } catch (IOException | RuntimeException e) {
      lock.close();
      throw e;
    }
  }

  private static FuseMount start(UnionView view, Path mp, Settings settings,
      Consumer<String> log, Duration timeout, MountLock lock) throws IOException {
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
    FuseMount m = new FuseMount(fuse, mp, loop, log, lock);
    self[0] = m;
    loop.setDaemon(true);
    loop.start();
    long deadline = System.nanoTime() + timeout.toNanos();
    while (true) {
      if (Mounts.isFuseMountpoint(mp) && answers(mp, deadline)) {
        return m;
      }
      if (!loop.isAlive()) {
        throw new IOException("mounting " + mp + " failed"
            + (m.loopFailure != null ? ": " + m.loopFailure.getMessage() : "")
            + " (is /dev/fuse there, libfuse2 installed, and are you root?)");
      }
      if (System.nanoTime() > deadline) {
        m.close();
        throw new IOException("the mount at " + mp + " did not answer within " + timeout);
      }
      try {
        Thread.sleep(5);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        m.close();
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
    return fuse.view();
  }

  /** Blocks until the mount goes away (unmounted from outside, or closed). */
  public void awaitUnmount() throws InterruptedException {
    loop.join();
  }

  /** Unmounts and waits for the FUSE loop to end; safe to call twice. */
  @Override
  public void close() throws IOException {
    if (closed) {
      return;
    }
    closed = true;
    if (Mounts.isFuseMountpoint(mountpoint)) {
      try {
        Mounts.unmount(mountpoint, false);
      } catch (IOException e) {
        if (Mounts.isFuseMountpoint(mountpoint)) {
          throw e;
        } // else someone else (jnr-fuse's own exit hook) unmounted it first: fine
      }
    }
    try {
      loop.join(Duration.ofSeconds(30).toMillis());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    if (loop.isAlive()) {
      log.accept("the FUSE loop for " + mountpoint + " did not end after unmount");
    }
    try {
      fuse.view().close();
    } finally {
      lock.close(); // only now may another strata mount here
    }
  }
}
