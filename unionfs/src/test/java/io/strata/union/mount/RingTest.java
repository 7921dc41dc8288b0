package io.strata.union.mount;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.strata.layers.fs.Mounts;
import io.strata.union.kernel.KernelSession;
import io.strata.union.view.UnionView;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * FUSE over io_uring: used where the kernel offers it, required or forbidden when asked, and
 * /dev/fuse with a clear reason where the fuse module's enable_uring is off. Each test sets
 * the parameter it needs and puts back what it found.
 */
class RingTest {
  @TempDir Path tmp;
  private String before;

  @BeforeEach
  void ownTransportAsRoot() {
    assumeTrue(Mounted.settings().transport() == FuseMount.Transport.KERNEL
        && io.strata.layers.fs.Posix.isRoot(), "strata's own transport as root");
    assumeTrue(Files.exists(UringParameter.PARAMETER), "a kernel with FUSE over io_uring");
  }

  @AfterEach
  void restore() {
    if (before != null) {
      UringParameter.set(before);
    }
  }

  private void parameter(String value) {
    String was = UringParameter.set(value);
    if (before == null) {
      before = was;
    }
  }

  private FuseMount mount(KernelSession.RingUse use) throws Exception {
    Path lower = Files.createDirectories(tmp.resolve("lower"));
    Files.writeString(lower.resolve("f"), "lower\n");
    Path mp = Files.createDirectories(tmp.resolve("mnt"));
    Files.createDirectories(tmp.resolve("upper"));
    Files.createDirectories(tmp.resolve("work"));
    UnionView view = UnionView.open(List.of(lower), tmp.resolve("upper"), tmp.resolve("work"),
        UnionView.Options.defaults());
    try {
      return FuseMount.mount(view, mp, FuseMount.Settings.defaults("strata-ring-test",
          FuseMount.Transport.KERNEL).withRing(use), line -> { }, Duration.ofSeconds(30));
    } catch (Exception e) {
      view.close();
      throw e;
    }
  }

  /** Reads, writes, lists and renames through the mount; the copy-up lands in the upper. */
  private void use(FuseMount m) throws IOException {
    Path mp = m.mountpoint();
    assertThat(Files.readString(mp.resolve("f"))).isEqualTo("lower\n");
    Files.writeString(mp.resolve("f"), "changed\n", java.nio.file.StandardOpenOption.APPEND);
    Files.createDirectories(mp.resolve("d/e"));
    Files.writeString(mp.resolve("d/e/g"), "x".repeat(300_000));
    Files.move(mp.resolve("d/e/g"), mp.resolve("d/h"));
    try (var s = Files.list(mp.resolve("d"))) {
      assertThat(s.map(p -> p.getFileName().toString()).sorted()).containsExactly("e", "h");
    }
    assertThat(Files.size(mp.resolve("d/h"))).isEqualTo(300_000);
    assertThat(Files.readString(tmp.resolve("upper/f"))).isEqualTo("lower\nchanged\n");
  }

  @Test
  void requestsComeThroughTheRingWhenTheKernelOffersIt() throws Exception {
    parameter("Y");
    try (FuseMount m = mount(KernelSession.RingUse.AUTO)) {
      use(m);
      assertThat(m.ringQueues()).isPositive();
      assertThat(m.ringRequests()).isPositive();
      assertThat(m.report()).containsEntry("ioUringQueues", m.ringQueues());
    }
    assertThat(Mounts.isMountpoint(tmp.resolve("mnt"))).isFalse();
  }

  @Test
  void withTheParameterOffTheMountServesDevFuse() throws Exception {
    parameter("N");
    try (FuseMount m = mount(KernelSession.RingUse.AUTO)) {
      use(m);
      assertThat(m.ringQueues()).isZero();
      assertThat(m.ringRequests()).isZero();
      assertThat(m.stats().getOrDefault("LOOKUP", 0L)).isPositive();
    }
  }

  @Test
  void devForbidsTheRingEvenWhereItIsOffered() throws Exception {
    parameter("Y");
    try (FuseMount m = mount(KernelSession.RingUse.OFF)) {
      use(m);
      assertThat(m.ringQueues()).isZero();
    }
  }

  @Test
  void askingForTheRingWhereItIsOffFailsBeforeMountingAndSaysWhy() throws Exception {
    parameter("N");
    assertThatThrownBy(() -> mount(KernelSession.RingUse.ON))
        .hasMessageContaining("io_uring")
        .hasMessageContaining("enable_uring");
    assertThat(Mounts.isMountpoint(tmp.resolve("mnt"))).isFalse();
  }

  @Test
  void transportNamesSelectAndForbidTheRing() {
    assertThat(FuseMount.Transport.parse("uring")).isEqualTo(FuseMount.Transport.KERNEL);
    assertThat(FuseMount.Transport.ringOf("uring")).isEqualTo(KernelSession.RingUse.ON);
    assertThat(FuseMount.Transport.ringOf("dev")).isEqualTo(KernelSession.RingUse.OFF);
    assertThat(FuseMount.Transport.ringOf("kernel")).isEqualTo(KernelSession.RingUse.AUTO);
    OverlayOptions o = OverlayOptions.parse(List.of("lowerdir=/a,nouring"), w -> { });
    assertThat(o.ring()).isEqualTo(KernelSession.RingUse.OFF);
    o = OverlayOptions.parse(List.of("lowerdir=/a,transport=uring"), w -> { });
    assertThat(o.ring()).isEqualTo(KernelSession.RingUse.ON);
    assertThat(o.transport()).isEqualTo(FuseMount.Transport.KERNEL);
  }
}
