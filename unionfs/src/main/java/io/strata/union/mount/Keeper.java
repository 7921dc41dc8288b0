package io.strata.union.mount;

import io.strata.union.kernel.Holder;
import io.strata.union.kernel.KernelSession;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashSet;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

/**
 * Keeps the mounts a daemon serves with strata-holder while it serves them, so that they
 * outlive the daemon's crash (SIGKILL, the OOM killer, a fault of the JVM) as they outlive a
 * restart ({@link Handover}). Each mount that a restart would hand over goes to the holder once
 * it answers: a copy of its connection's descriptor and of its clones, and a record of how to
 * serve it again with a checkpoint of its session's state (nodes, open files and directories).
 * The checkpoint is written again when the session's state changed, at most once an interval
 * and never more than a fiftieth of the time, while the mount serves on (nothing waits for
 * it); each arrives as one message, so a crash leaves the old record or the new one. The
 * kernel keeps a connection while the holder holds its descriptor, so a crash leaves the
 * mounts waiting, as on a hard NFS mount, and the next daemon takes them from the holder (its
 * grace starts when this daemon's connection closes) as after a stop, checks each node the
 * checkpoint gives before using it, and opens the files open then again by name.
 *
 * <p>What a checkpoint can be behind on: nodes looked up, files opened and names changed after
 * it, and files removed while open. Their requests answer ESTALE or EBADF after the crash
 * (a path is then looked up again by the kernel; a descriptor of such a file fails). Without
 * a checkpoint yet (the first moment of a mount) the mount is held with only its root known.
 */
public final class Keeper {
  private static volatile Keeper running;

  private final Path program;
  private final Path socket;
  private final int graceSeconds;
  private final long intervalMillis;
  private final Consumer<String> log;
  private final Thread thread;
  private final AtomicLong checkpoints = new AtomicLong();
  private final AtomicLong checkpointNanos = new AtomicLong();
  /** The mounts the holder has (what {@code kept} holds, readable from any thread). */
  private final Set<FuseMount> held = java.util.concurrent.ConcurrentHashMap.newKeySet();
  private volatile boolean stopped;
  // the rest is the keeper thread's
  private Holder.Link link;
  private final Map<FuseMount, Kept> kept = new IdentityHashMap<>();
  private String lastFailure;

  /** What the holder has of one mount. */
  private static final class Kept {
    final long id;
    int clones;
    long changes;

    Kept(long id, int clones, long changes) {
      this.id = id;
      this.clones = clones;
      this.changes = changes;
    }
  }

  private Keeper(Path program, Path socket, int graceSeconds, long intervalMillis,
      Consumer<String> log) {
    this.program = program;
    this.socket = socket;
    this.graceSeconds = graceSeconds;
    this.intervalMillis = intervalMillis;
    this.log = log;
    this.thread = new Thread(this::loop, "strata-mount-keeper");
    thread.setDaemon(true);
  }

  /**
   * Starts keeping this process's mounts with the holder on {@code socket} (started from
   * {@code program} when none answers; it waits {@code graceSeconds} for the next daemon),
   * their checkpoints written at most every {@code intervalMillis}.
   */
  public static synchronized void start(Path program, Path socket, int graceSeconds,
      long intervalMillis, Consumer<String> log) {
    if (running != null) {
      throw new IllegalStateException("mounts are kept already");
    }
    Keeper k = new Keeper(program, socket, graceSeconds, intervalMillis, log);
    running = k;
    k.thread.start();
  }

  /**
   * Stops keeping (before a stop's hand-over, whose records replace the checkpoints): no
   * message goes to the holder after this returns. What it holds stays held.
   */
  public static void stop() {
    Keeper k = running;
    if (k == null) {
      return;
    }
    k.stopped = true;
    k.thread.interrupt();
    try {
      k.thread.join(10_000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** Checkpoints written since the daemon started (0 when mounts are not kept). */
  public static long checkpoints() {
    Keeper k = running;
    return k == null ? 0 : k.checkpoints.get();
  }

  /** Time spent writing checkpoints since the daemon started, in milliseconds. */
  public static long checkpointMillis() {
    Keeper k = running;
    return k == null ? 0 : k.checkpointNanos.get() / 1_000_000;
  }

  /** Whether the holder has {@code m}, so that it outlives a crash of this process. */
  public static boolean holds(FuseMount m) {
    Keeper k = running;
    return k != null && k.held.contains(m);
  }

  private void loop() {
    long seen = FuseMount.changes();
    while (!stopped) {
      long cost = 0;
      try {
        cost = cycle() / 1_000_000;
      } catch (RuntimeException e) {
        failed("keeping the mounts with the holder: " + e);
      }
      try {
        // a new mount wakes this at once; checkpoints that took long wait fifty times as long
        Thread.sleep(Math.min(10_000, 50 * cost));
        FuseMount.awaitChange(seen, intervalMillis);
        seen = FuseMount.changes();
      } catch (InterruptedException e) {
        return; // stopped
      }
    }
  }

  /** Sends what changed to the holder; the time spent writing checkpoints, in nanoseconds. */
  private long cycle() {
    long cost = 0;
    Set<FuseMount> live = new HashSet<>();
    for (FuseMount m : FuseMount.live()) {
      if (stopped) {
        return cost;
      }
      KernelSession s = m.session();
      if (s == null || m.plan() == null || m.plan().recipe() == null || m.isHandedOver()) {
        continue; // not handed over at a restart either (jnr-fuse, foreground, a container's)
      }
      live.add(m);
      Kept k = kept.get(m);
      long changes = s.changes();
      if (k != null && k.changes == changes && s.clones() == k.clones) {
        continue;
      }
      KernelSession.Checkpoint c;
      try {
        c = s.checkpoint();
      } catch (IOException e) {
        failed("checkpoint of " + m.mountpoint() + ": " + e.getMessage());
        continue;
      }
      if (c == null) {
        continue; // not served over /dev/fuse, not answering yet, or ended
      }
      long[] spent = {0};
      try {
        send(m, k, s, c, changes, spent);
      } catch (IOException e) {
        failed("keeping " + m.mountpoint() + " with the holder on " + socket + ": "
            + e.getMessage());
        if (link != null) {
          link.close(); // a new holder (or the same, answering again) gets everything again
          link = null;
        }
        kept.clear();
        held.clear();
        return cost + spent[0];
      } finally {
        Holder.closeAll(c.descriptors());
        cost += spent[0];
        checkpointNanos.addAndGet(spent[0]);
      }
    }
    for (var it = kept.entrySet().iterator(); it.hasNext(); ) {
      var e = it.next();
      FuseMount m = e.getKey(); // (an IdentityHashMap's entry is gone once removed)
      long id = e.getValue().id;
      if (!live.contains(m) && !stopped) {
        it.remove();
        held.remove(m);
        if (!m.isHandedOver()) {
          try {
            link.drop(id); // unmounted: its connection is gone (or going) anyway
          } catch (IOException ignored) {
            // the holder drops a connection that ended by itself
          }
        }
      }
    }
    return cost;
  }

  /** Gives the holder {@code m} (when {@code k} is null) or its new clones and record. */
  private void send(FuseMount m, Kept k, KernelSession s, KernelSession.Checkpoint c,
      long changes, long[] spent) throws IOException {
    if (link == null) {
      link = Holder.Link.open(program, socket, graceSeconds);
    }
    int clones = c.descriptors().length - 1;
    List<String> recipe = Handover.recipeOf(m);
    Holder.RecordWriter record = ch -> {
      long start = System.nanoTime();
      try {
        Handover.writeCheckpoint(ch, recipe, m.elsewhere(), c.resumed(), s::writeState);
      } finally {
        spent[0] += System.nanoTime() - start;
      }
    };
    if (stopped) {
      return;
    }
    if (k == null) {
      if (m.handoverId == 0) {
        m.handoverId = java.util.concurrent.ThreadLocalRandom.current().nextLong(1,
            Long.MAX_VALUE);
      }
      link.keep(m.handoverId, c.descriptors(), record);
      kept.put(m, new Kept(m.handoverId, clones, changes));
      held.add(m);
      if (m.plan().onHeld() != null) {
        m.plan().onHeld().accept(socket); // what pins its layers holds while the holder does
      }
    } else {
      if (clones > k.clones) { // clones are only added: the new ones go after the others
        link.add(k.id, Arrays.copyOfRange(c.descriptors(), 1 + k.clones, 1 + clones));
        k.clones = clones;
      }
      link.record(k.id, record);
      k.changes = changes;
    }
    checkpoints.incrementAndGet();
    lastFailure = null;
  }

  private void failed(String what) {
    if (!what.equals(lastFailure)) {
      log.accept(what + " (mounts may not outlive a crash of this daemon)");
      lastFailure = what;
    }
  }
}
