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

  /**
   * A user's container below the subtree delegated to the user: the processes of the delegated
   * cgroup itself move to a leaf first (cgroup v2 gives children controllers only from a
   * cgroup without processes), then only the controllers its limits need are enabled.
   */
  @Test
  void aUsersContainerGetsItsCgroupBelowTheDelegatedSubtree() throws Exception {
    Path delegated = Files.createDirectories(root.resolve("user@1000.service"));
    Files.writeString(delegated.resolve("cgroup.controllers"), "cpu memory pids\n");
    Files.writeString(delegated.resolve("cgroup.subtree_control"), "");
    Files.writeString(delegated.resolve("cgroup.procs"), "4242\n");
    Limits l = new Limits(64L << 20, -1, -1, 100_000, 32);
    assertThat(Cgroups.controllersFor(l)).containsExactly("memory", "pids");
    CgroupV2 cg = CgroupV2.createDelegated(delegated, "ctr-u", Cgroups.controllersFor(l));
    assertThat(Files.readString(delegated.resolve("strata-self/cgroup.procs"))).isEqualTo("4242");
    assertThat(Files.readString(delegated.resolve("cgroup.subtree_control")))
        .isEqualTo("+memory +pids");
    assertThat(Files.readString(delegated.resolve("strata/cgroup.subtree_control")))
        .isEqualTo("+memory +pids");
    cg.apply(l);
    Path d = delegated.resolve("strata/ctr-u");
    assertThat(cg.dir()).isEqualTo(d);
    assertThat(Files.readString(d.resolve("memory.max"))).isEqualTo(String.valueOf(64L << 20));
    assertThat(Files.readString(d.resolve("pids.max"))).isEqualTo("32");
    assertThat(d.resolve("cpu.max")).doesNotExist();
    // without limits nothing is enabled and nobody moves
    Path other = Files.createDirectories(root.resolve("other"));
    Files.writeString(other.resolve("cgroup.procs"), "77\n");
    CgroupV2.createDelegated(other, "ctr-v", java.util.List.of());
    assertThat(other.resolve("strata/ctr-v")).isDirectory();
    assertThat(other.resolve("strata-self")).doesNotExist();
    assertThat(other.resolve("cgroup.subtree_control")).doesNotExist();
  }

  /** A container's cgroup named by path must be a container's, under the cgroup2 mount. */
  @Test
  void onlyAContainersCgroupIsTakenByItsPath() throws Exception {
    assertThat(Cgroups.delegatedPath("ctr-x")).isNull();
    org.assertj.core.api.Assertions.assertThatThrownBy(
        () -> Cgroups.delegatedPath("/etc/strata/ctr-x")).hasMessageContaining("not a container");
    String v2 = java.nio.file.Files.readAllLines(Path.of("/proc/self/mountinfo")).stream()
        .filter(l -> l.contains(" - cgroup2 ")).map(l -> l.split(" ")[4]).findFirst().orElse(null);
    org.junit.jupiter.api.Assumptions.assumeTrue(v2 != null, "no cgroup2 mounted");
    assertThat(Cgroups.delegatedPath(v2 + "/u/strata/ctr-x"))
        .isEqualTo(Path.of(v2 + "/u/strata/ctr-x"));
    org.assertj.core.api.Assertions.assertThatThrownBy(
        () -> Cgroups.delegatedPath(v2 + "/u/other/ctr-x")).hasMessageContaining("not a container");
    org.assertj.core.api.Assertions.assertThatThrownBy(
        () -> Cgroups.delegatedPath(v2 + "/u/strata/../../x/strata/y"))
        .hasMessageContaining("not a container");
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
