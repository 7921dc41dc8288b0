package io.strata.runtime.snapshots;

import io.strata.union.mount.FuseMount;
import io.strata.layers.fs.Mounts;
import io.strata.union.view.UnionView;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Consumer;

/**
 * Unions served by the snapshotter's own JVM (jnr-fuse, one FUSE loop per mount): a mount
 * costs no process start and runs on code the JIT has already compiled. The price: the unions
 * live as long as the snapshotter, so a container's root breaks when it stops (the helper
 * mode, {@code --mount-helper}, keeps each union in its own process instead).
 */
public final class ServedUnions implements SnapshotStore.Unions, AutoCloseable {
  private final Map<String, FuseMount> mounts = new ConcurrentHashMap<>();
  private final Consumer<String> log;
  private volatile java.util.function.Function<String, String> keyOf = id -> id;

  public ServedUnions(Consumer<String> log) {
    this.log = log;
  }

  /** How to name a snapshot by its id in what this says (its key, from the records). */
  public void naming(java.util.function.Function<String, String> keyOf) {
    this.keyOf = keyOf;
  }

  @Override
  public void serve(String id, List<Path> lowers, Path upper, Path work, Path mountpoint)
      throws IOException {
    // the lowers are committed snapshots (layers of strata's store, or unpacked): they never
    // change, so their merged tree may serve the next pod's mounts too
    UnionView view = UnionView.open(lowers, upper, upper == null ? null : work,
        UnionView.Options.defaults().withImmutableLowers(true));
    try {
      mounts.put(id, FuseMount.mount(view, mountpoint,
          FuseMount.Settings.defaults("strata-snapshot"), log, Duration.ofSeconds(30)));
    } catch (IOException | RuntimeException e) {
      view.close();
      throw e;
    }
  }

  @Override
  public void stop(String id, Path mountpoint) throws IOException {
    FuseMount m = mounts.remove(id);
    if (m != null) {
      if (io.strata.layers.base.Log.enabled(io.strata.layers.base.Log.Level.DEBUG)) {
        io.strata.layers.base.Log.debug("unmounting the union of snapshot " + keyOf.apply(id)
            + ": " + m.report());
      }
      m.close();
    } else if (Mounts.isMountpoint(mountpoint)) {
      log.accept("unmounting " + mountpoint + ", left by an earlier snapshotter");
      Mounts.unmount(mountpoint, true);
    }
  }

  /**
   * Unmounts every union (the snapshotter is stopping). A union that a running container's
   * root still binds keeps its FUSE connection until the container goes; the snapshotter does
   * not wait for that (a second each, at most), and the container loses its root.
   */
  @Override
  public void close() {
    for (Map.Entry<String, FuseMount> e : mounts.entrySet()) {
      try {
        if (!e.getValue().close(Duration.ofSeconds(1))) {
          log.accept("the union of snapshot " + keyOf.apply(e.getKey()) + " is still a running"
              + " container's root: the container loses its root as the snapshotter stops"
              + " (--mount-helper keeps roots across restarts)");
        }
      } catch (IOException ex) {
        log.accept("unmount of " + e.getValue().mountpoint() + " failed: " + ex.getMessage());
      }
    }
    mounts.clear();
  }
}
