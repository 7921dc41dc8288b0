package io.strata.union.kernel;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.strata.layers.fs.Posix;
import io.strata.layers.fs.RawFs;
import io.strata.union.mount.FuseMount;
import io.strata.union.view.UnionView;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A mount may be unmounted before its server has read INIT (umount2 and an abort need no
 * answer; a daemon whose mount command returned at mount(2), as a2d1a9f tried,
 * had this once in forty mounts of a loop of strata-overlay and umount). That mount has come
 * and gone: mounting it is not a failure, and it leaves nothing mounted.
 */
class UnmountedBeforeInitTest {
  @TempDir Path tmp;

  @Test
  void aMountUnmountedBeforeItsInitIsAnsweredHasComeAndGoneWithoutFailing() throws Exception {
    assumeTrue(Posix.isRoot() && FuseMount.Transport.preferred() == FuseMount.Transport.KERNEL,
        "strata's own transport as root");
    Path lower = Files.createDirectories(tmp.resolve("lower"));
    Files.writeString(lower.resolve("f"), "data");
    Path mp = Files.createDirectories(tmp.resolve("mnt"));
    long below = RawFs.mountId(mp);
    UnionView view = UnionView.open(List.of(lower), Files.createDirectories(tmp.resolve("u")),
        tmp.resolve("w"), UnionView.Options.defaults());
    CountDownLatch hold = new CountDownLatch(1);
    KernelSession.beforeInit = () -> {
      try {
        hold.await(10, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    };
    CompletableFuture<FuseMount> mounting = CompletableFuture.supplyAsync(() -> {
      try {
        return FuseMount.mount(view, mp, FuseMount.Settings.defaults("test"),
            line -> System.err.println("fuse: " + line), Duration.ofSeconds(30));
      } catch (Exception e) {
        throw new java.util.concurrent.CompletionException(e);
      }
    });
    try {
      // mount(2) is done once the path shows another mount (read without asking the server)
      long deadline = System.nanoTime() + 10_000_000_000L;
      while (RawFs.mountId(mp) == below) {
        assertThat(System.nanoTime()).as("mounted").isLessThan(deadline);
        Thread.sleep(5);
      }
      // umount2 itself: umount(8) would stat the mountpoint first and wait for INIT
      assertThat(Posix.umount2(RawFs.raw(mp), 0)).as("umount2's errno").isZero();
      hold.countDown();
      FuseMount m = mounting.get(30, TimeUnit.SECONDS); // threw "mounting ... failed" before
      m.awaitUnmount();
      m.close();
      assertThat(RawFs.mountId(mp)).as("nothing mounted").isEqualTo(below);
    } finally {
      hold.countDown();
      KernelSession.beforeInit = null;
      if (RawFs.mountId(mp) != below) {
        Posix.umount2(RawFs.raw(mp), Posix.MNT_DETACH);
      }
    }
  }
}
