package io.strata.runtime.container;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The cgroup v2 code against a fake unified tree (this machine's controllers are v1). */
class CgroupV2Test {
  @TempDir Path root;

  @Test
  void createsEnablesControllersWritesLimitsAndReadsCounters() throws Exception {
    Files.writeString(root.resolve("cgroup.controllers"), "cpuset cpu io memory pids\n");
    Files.writeString(root.resolve("cgroup.subtree_control"), "cpu\n");
    CgroupV2 cg = CgroupV2.create(root, "ctr-test");
    assertThat(Files.readString(root.resolve("cgroup.subtree_control"))).isEqualTo("+memory +pids");
    assertThat(Files.readString(root.resolve("strata/cgroup.subtree_control")))
        .isEqualTo("+memory +cpu +pids");
    cg.apply(new Limits(64L << 20, -1, 50_000, 100_000, 64));
    Path d = root.resolve("strata/ctr-test");
    assertThat(Files.readString(d.resolve("memory.max"))).isEqualTo(String.valueOf(64L << 20));
    assertThat(Files.readString(d.resolve("memory.swap.max"))).isEqualTo(String.valueOf(64L << 20));
    assertThat(Files.readString(d.resolve("cpu.max"))).isEqualTo("50000 100000");
    assertThat(Files.readString(d.resolve("pids.max"))).isEqualTo("64");
    cg.apply(new Limits(64L << 20, -2, -1, 100_000, -1));
    assertThat(Files.readString(d.resolve("memory.swap.max"))).isEqualTo("max");
    cg.add(4242);
    assertThat(Files.readString(d.resolve("cgroup.procs"))).isEqualTo("4242");
    Files.writeString(d.resolve("memory.events"), "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\n");
    Files.writeString(d.resolve("cpu.stat"), "usage_usec 5\nnr_periods 9\nnr_throttled 7\n");
    Files.writeString(d.resolve("pids.events"), "max 3\n");
    assertThat(cg.oomKills()).isEqualTo(1);
    assertThat(cg.throttledPeriods()).isEqualTo(7);
    assertThat(cg.pidsLimitHits()).isEqualTo(3);
  }

  @Test
  void parsesSizes() {
    assertThat(Limits.parseSize("64m", "--memory")).isEqualTo(64L << 20);
    assertThat(Limits.parseSize("1g", "--memory")).isEqualTo(1L << 30);
    assertThat(Limits.parseSize("512k", "--memory")).isEqualTo(512L << 10);
    assertThat(Limits.parseSize("1000", "--memory")).isEqualTo(1000);
    org.assertj.core.api.Assertions.assertThatThrownBy(() -> Limits.parseSize("lots", "--memory"))
        .hasMessageContaining("expected a size");
  }
}
