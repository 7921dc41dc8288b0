package io.strata.runtime.container;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** A cgroup in the unified (v2) hierarchy: one directory, controllers enabled from the top. */
final class CgroupV2 implements Cgroup {
  private final Path dir;

  private CgroupV2(Path dir) {
    this.dir = dir;
  }

  static CgroupV2 create(Path root, String name) throws IOException {
    Path parent = root.resolve(Cgroups.PARENT);
    Files.createDirectories(parent);
    // Controllers must be enabled in every ancestor's subtree_control to reach the leaf.
    enable(root);
    enable(parent);
    Path dir = parent.resolve(name);
    Files.createDirectories(dir);
    return new CgroupV2(dir);
  }

  /**
   * Creates {@code strata/NAME} below {@code delegated}, the cgroup v2 subtree delegated to
   * the user ({@link Cgroups#delegated}), with {@code controllers} enabled down to it. Only a
   * cgroup without processes of its own may give its children controllers (cgroup v2's rule),
   * so the processes in {@code delegated} itself (the user's daemon, when systemd runs it in
   * the cgroup it delegated) move to a leaf beside, {@code strata-self}, as systemd's
   * documentation asks of a delegated service.
   */
  static CgroupV2 createDelegated(Path delegated, String name, java.util.List<String> controllers)
      throws IOException {
    Path parent = delegated.resolve(Cgroups.PARENT);
    Files.createDirectories(parent);
    if (!controllers.isEmpty()) {
      Path self = delegated.resolve(Cgroups.PARENT + "-self");
      for (String pid : Files.readAllLines(delegated.resolve("cgroup.procs"))) {
        if (!pid.isBlank()) {
          Files.createDirectories(self);
          try {
            Cgroups.write(self.resolve("cgroup.procs"), pid.trim());
          } catch (IOException gone) {
            // it ended meanwhile
          }
        }
      }
      enable(delegated, controllers);
      enable(parent, controllers);
    }
    Path dir = parent.resolve(name);
    Files.createDirectories(dir);
    return new CgroupV2(dir);
  }

  private static void enable(Path cg) throws IOException {
    enable(cg, Cgroups.CONTROLLERS);
  }

  private static void enable(Path cg, java.util.List<String> controllers) throws IOException {
    String present = Files.exists(cg.resolve("cgroup.subtree_control"))
        ? Cgroups.read(cg.resolve("cgroup.subtree_control")) : "";
    StringBuilder want = new StringBuilder();
    for (String c : controllers) {
      if (!(" " + present + " ").contains(" " + c + " ")) {
        want.append(want.length() == 0 ? "" : " ").append('+').append(c);
      }
    }
    if (want.length() > 0) {
      Cgroups.write(cg.resolve("cgroup.subtree_control"), want.toString());
    }
  }

  /** The directory of this cgroup. */
  Path dir() {
    return dir;
  }

  @Override
  public String describe() {
    return "cgroup v2 " + dir;
  }

  /** A v2 device policy is a BPF program, which strata does not load (yet). */
  @Override
  public boolean restrictsDevices() {
    return false;
  }

  @Override
  public void apply(Limits l) throws IOException {
    if (l.memory() > 0) {
      Cgroups.write(dir.resolve("memory.max"), String.valueOf(l.memory()));
      // v2 limits swap alone: --memory-swap is memory plus swap, as in docker.
      long swap = l.memorySwap() == -1 ? l.memory() : l.memorySwap() - l.memory();
      Cgroups.write(dir.resolve("memory.swap.max"), l.memorySwap() < -1 || swap < 0 ? "max"
          : String.valueOf(swap));
    }
    if (l.cpuQuotaMicros() > 0) {
      Cgroups.write(dir.resolve("cpu.max"), l.cpuQuotaMicros() + " " + l.cpuPeriodMicros());
    }
    if (l.pids() > 0) {
      Cgroups.write(dir.resolve("pids.max"), String.valueOf(l.pids()));
    }
  }

  @Override
  public void add(long pid) throws IOException {
    Cgroups.write(dir.resolve("cgroup.procs"), String.valueOf(pid));
  }

  @Override
  public java.util.List<Path> procsFiles() {
    return java.util.List.of(dir.resolve("cgroup.procs"));
  }

  @Override
  public long oomKills() throws IOException {
    return Cgroups.keyed(dir.resolve("memory.events"), "oom_kill");
  }

  @Override
  public long throttledPeriods() throws IOException {
    return Cgroups.keyed(dir.resolve("cpu.stat"), "nr_throttled");
  }

  @Override
  public long pidsLimitHits() throws IOException {
    return Cgroups.keyed(dir.resolve("pids.events"), "max");
  }

  @Override
  public void close() throws IOException {
    Path kill = dir.resolve("cgroup.kill");
    if (Files.exists(kill)) {
      try {
        Cgroups.write(kill, "1");
      } catch (IOException ignored) {
        // older kernels: killAndRemove below kills one by one
      }
    }
    Cgroups.killAndRemove(dir);
  }
}
