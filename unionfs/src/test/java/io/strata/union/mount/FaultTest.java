package io.strata.union.mount;

import io.strata.layers.fs.Mounts;
import static org.assertj.core.api.Assertions.assertThat;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A killed daemon or a full disk loses nothing that was promised and leaves no debris. */
class FaultTest {
  @TempDir Path tmp;

  private static void awaitReady(Process p) throws Exception {
    BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(),
        StandardCharsets.UTF_8));
    String line;
    StringBuilder seen = new StringBuilder();
    while ((line = r.readLine()) != null) {
      if (line.equals("ready")) {
        return;
      }
      seen.append(line).append('\n');
    }
    throw new AssertionError("mount process ended before it was ready:\n" + seen);
  }

  /**
   * A mount unmounted from outside (podman, umount) is found gone by its server a moment later;
   * by then another mount may be at the path (podman mounts a root again at once, or another
   * program mounts there). strata's cleanup must leave that one alone, and give the path back.
   */
  @Test
  void aMountUnmountedFromOutsideLeavesTheNextMountThereAlone() throws Exception {
    Path lower = LayerSpec.layer().file("base", "lower data").writeTo(tmp.resolve("lower"),
        LayerSpec.Form.OCI);
    Path mp = Files.createDirectories(tmp.resolve("mnt"));
    Path u2 = Files.createDirectories(tmp.resolve("u2"));
    Path w2 = Files.createDirectories(tmp.resolve("w2"));
    try (Mounted first = Mounted.strata(List.of(lower), tmp.resolve("u1"), tmp.resolve("w1"),
        mp)) {
      Mounted.run("umount", mp.toString());
      Mounted.run("fuse-overlayfs", "-o", "lowerdir=" + lower + ",upperdir=" + u2 + ",workdir="
          + w2, mp.toString());
      try {
        first.fuse().close(); // what the end of the first mount's session leads to
        assertThat(Mounts.top(mp).fsType()).isEqualTo("fuse.fuse-overlayfs");
        assertThat(Files.readString(mp.resolve("base"))).isEqualTo("lower data");
      } finally {
        Mounted.run("umount", mp.toString());
      }
    }
    try (Mounted again = Mounted.strata(List.of(lower), tmp.resolve("u3"), tmp.resolve("w3"),
        mp)) {
      assertThat(Files.readString(mp.resolve("base"))).isEqualTo("lower data");
    }
    assertThat(Mounts.isMountpoint(mp)).isFalse();
  }

  /**
   * The same in the daemon's order, where the client is answered by one thread while the
   * mount's own goes on: a mount unmounted as soon as it answers (a container that ends at
   * once) and another FUSE mount made at the path right after must not be taken for each
   * other. The mounting thread is held for a moment where it finds which mount is its own;
   * when that came after the client's answer, this mount took fuse-overlayfs's for its own and
   * unmounted it (on a busy machine, by the scheduler alone, it took the directory's own mount,
   * failed to unmount it and kept the path's lock: every later mount there was refused).
   */
  @Test
  void aDaemonsMountUnmountedAsSoonAsItAnswersLeavesTheNextMountThereAlone() throws Exception {
    Path lower = LayerSpec.layer().file("base", "lower data").writeTo(tmp.resolve("lower"),
        LayerSpec.Form.OCI);
    Path mp = Files.createDirectories(tmp.resolve("mnt"));
    Path u2 = Files.createDirectories(tmp.resolve("u2"));
    Path w2 = Files.createDirectories(tmp.resolve("w2"));
    io.strata.union.view.UnionView view = io.strata.union.view.UnionView.open(List.of(lower),
        Files.createDirectories(tmp.resolve("u1")), tmp.resolve("w1"),
        io.strata.union.view.UnionView.Options.defaults());
    java.util.concurrent.CountDownLatch served = new java.util.concurrent.CountDownLatch(1);
    java.util.concurrent.atomic.AtomicBoolean once = new java.util.concurrent.atomic.AtomicBoolean();
    FuseMount.beforeIdentify = () -> {
      if (once.compareAndSet(false, true)) {
        try {
          Thread.sleep(500);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
      }
    };
    try {
      Background.startHere(() -> {
        try {
          FuseMount m = FuseMount.mount(view, mp, Mounted.settings(),
              line -> System.err.println("fuse: " + line), java.time.Duration.ofSeconds(30));
          m.awaitUnmount();
          m.close(); // what the end of the session leads to in the daemon
          return 0;
        } finally {
          served.countDown();
        }
      }, mp, java.time.Duration.ofSeconds(30));
      Mounted.run("umount", mp.toString());
      Mounted.run("fuse-overlayfs", "-o", "lowerdir=" + lower + ",upperdir=" + u2 + ",workdir="
          + w2, mp.toString());
      try {
        assertThat(served.await(30, TimeUnit.SECONDS)).isTrue();
        assertThat(Mounts.top(mp).fsType()).isEqualTo("fuse.fuse-overlayfs");
        assertThat(Files.readString(mp.resolve("base"))).isEqualTo("lower data");
      } finally {
        if (Mounts.isMountpoint(mp)) {
          Mounted.run("umount", mp.toString());
        }
      }
    } finally {
      FuseMount.beforeIdentify = null;
      if (Mounts.isMountpoint(mp)) {
        Mounted.run("umount", "-l", mp.toString());
      }
    }
    try (Mounted again = Mounted.strata(List.of(lower), tmp.resolve("u3"), tmp.resolve("w3"),
        mp)) {
      assertThat(Files.readString(mp.resolve("base"))).isEqualTo("lower data");
    }
    assertThat(Mounts.isMountpoint(mp)).isFalse();
  }

  @Test
  void sigkillMidWriteLosesNothingFsyncedAndTheMountRecovers() throws Exception {
    Path lower = LayerSpec.layer().file("base", "lower data").writeTo(tmp.resolve("lower"),
        LayerSpec.Form.OCI);
    Path upper = Files.createDirectories(tmp.resolve("upper"));
    Path work = Files.createDirectories(tmp.resolve("work"));
    Path mp = Files.createDirectories(tmp.resolve("mnt"));
    byte[] synced = new byte[3 << 20];
    Arrays.fill(synced, (byte) 'S');
    Process daemon = MountProcess.start(lower, upper, work, mp);
    try {
      awaitReady(daemon);
      try (FileChannel c = FileChannel.open(mp.resolve("base"), StandardOpenOption.WRITE,
          StandardOpenOption.TRUNCATE_EXISTING)) {
        c.write(ByteBuffer.wrap(synced));
        c.force(true);
        // More writes that nobody fsyncs, then the daemon dies in the middle of them. Served
        // writes fail once it is gone; passed-through ones go on to the real file (the kernel
        // holds it, as kernel overlayfs would), so the writer is also told to stop.
        java.util.concurrent.atomic.AtomicBoolean stop = new java.util.concurrent.atomic.AtomicBoolean();
        Thread writer = new Thread(() -> {
          try {
            while (!stop.get()) {
              c.write(ByteBuffer.wrap(new byte[65536]));
            }
          } catch (Exception expected) {
            // the mount went away under us
          }
        });
        writer.start();
        Thread.sleep(100);
        daemon.destroyForcibly(); // SIGKILL
        assertThat(daemon.waitFor(30, TimeUnit.SECONDS)).isTrue();
        stop.set(true);
        writer.join(30_000);
      } catch (java.io.IOException closeFailed) {
        // closing a file on a dead mount fails: expected
      }
      assertThat(FsOp.write("probe", "x").outcome(mp)).contains("Transport endpoint is not connected");
    } finally {
      daemon.destroyForcibly();
      if (Mounts.isMountpoint(mp)) {
        Mounts.unmount(mp, false); // recovers a mount whose daemon died
      }
    }
    assertThat(Mounts.isMountpoint(mp)).isFalse();
    byte[] head;
    try (var in = Files.newInputStream(upper.resolve("base"))) {
      head = Arrays.copyOf(in.readNBytes(synced.length), synced.length);
    }
    assertThat(head).isEqualTo(synced);

    Process again = MountProcess.start(lower, upper, work, mp);
    try {
      awaitReady(again);
      byte[] through;
      try (var in = Files.newInputStream(mp.resolve("base"))) {
        through = Arrays.copyOf(in.readNBytes(synced.length), synced.length);
      }
      assertThat(through).isEqualTo(synced);
      try (Stream<Path> s = Files.list(work.resolve("strata-staging"))) {
        assertThat(s).isEmpty();
      }
    } finally {
      if (Mounts.isMountpoint(mp)) {
        Mounts.unmount(mp, false);
      }
      again.waitFor(30, TimeUnit.SECONDS);
      again.destroyForcibly();
    }
  }

  @Test
  void aCopyUpThatRunsOutOfSpaceLeavesTheLowerViewAndNothingInTheUpper() throws Exception {
    Path lower = LayerSpec.layer().file("big", "L".repeat(4 << 20)).file("small", "s")
        .writeTo(tmp.resolve("lower"), LayerSpec.Form.OCI);
    Path small = Files.createDirectories(tmp.resolve("small-fs"));
    Mounted.run("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", small.toString());
    try {
      Path upper = Files.createDirectories(small.resolve("upper"));
      Path work = Files.createDirectories(small.resolve("work"));
      try (Mounted m = Mounted.strata(List.of(lower), upper, work, tmp.resolve("mnt"))) {
        assertThat(FsOp.append("big", "more").outcome(m.mountpoint))
            .contains("No space left on device");
        assertThat(Files.readString(m.mountpoint.resolve("big"))).isEqualTo("L".repeat(4 << 20));
        assertThat(Files.exists(upper.resolve("big"))).isFalse();
        try (Stream<Path> s = Files.list(work.resolve("strata-staging"))) {
          assertThat(s).isEmpty();
        }
        // The filesystem still works for what fits.
        assertThat(FsOp.append("small", "+").outcome(m.mountpoint)).isEqualTo("ok");
        assertThat(Files.readString(m.mountpoint.resolve("small"))).isEqualTo("s+");
      }
    } finally {
      Mounted.run("umount", small.toString());
    }
  }
}
