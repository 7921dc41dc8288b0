package io.strata.runtime.container;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/** A cgroup in the v1 hierarchies: one directory per controller. */
final class CgroupV1 implements Cgroup {
  private final Map<String, Path> dirs;

  private CgroupV1(Map<String, Path> dirs) {
    this.dirs = dirs;
  }

  static CgroupV1 create(Map<String, Path> roots, String name) throws IOException {
    Map<String, Path> dirs = new LinkedHashMap<>();
    for (String c : Cgroups.CONTROLLERS) {
      Path d = roots.get(c).resolve(Cgroups.PARENT).resolve(name);
      Files.createDirectories(d);
      dirs.put(c, d);
    }
    Path devices = roots.get(Cgroups.DEVICES);
    if (devices != null) {
      Path d = devices.resolve(Cgroups.PARENT).resolve(name);
      Files.createDirectories(d);
      dirs.put(Cgroups.DEVICES, d);
      // Deny everything, then allow the policy's list: written before any process joins.
      Cgroups.write(d.resolve("devices.deny"), "a");
      for (DevicePolicy.Rule r : DevicePolicy.ALLOWED) {
        Cgroups.write(d.resolve("devices.allow"), r.line());
      }
    }
    Path freezer = roots.get(Cgroups.FREEZER);
    if (freezer != null) {
      Path d = freezer.resolve(Cgroups.PARENT).resolve(name);
      Files.createDirectories(d);
      dirs.put(Cgroups.FREEZER, d);
    }
    return new CgroupV1(dirs);
  }

  @Override
  public String describe() {
    return "cgroup v1 " + dirs.values();
  }

  @Override
  public boolean restrictsDevices() {
    return dirs.containsKey(Cgroups.DEVICES);
  }

  @Override
  public void apply(Limits l) throws IOException {
    Path mem = dirs.get("memory");
    if (l.memory() > 0) {
      Cgroups.write(mem.resolve("memory.limit_in_bytes"), String.valueOf(l.memory()));
      Path memsw = mem.resolve("memory.memsw.limit_in_bytes");
      if (Files.exists(memsw)) {
        // Without --memory-swap, docker allows as much swap as memory; -1 means unlimited.
        long sw = l.memorySwap() == -1 ? 2 * l.memory() : l.memorySwap();
        Cgroups.write(memsw, sw < 0 ? "-1" : String.valueOf(sw));
      }
    }
    Path cpu = dirs.get("cpu");
    if (l.cpuQuotaMicros() > 0) {
      Cgroups.write(cpu.resolve("cpu.cfs_period_us"), String.valueOf(l.cpuPeriodMicros()));
      Cgroups.write(cpu.resolve("cpu.cfs_quota_us"), String.valueOf(l.cpuQuotaMicros()));
    }
    if (l.pids() > 0) {
      Cgroups.write(dirs.get("pids").resolve("pids.max"), String.valueOf(l.pids()));
    }
  }

  @Override
  public void add(long pid) throws IOException {
    for (Path d : dirs.values()) {
      Cgroups.write(d.resolve("cgroup.procs"), String.valueOf(pid));
    }
  }

  @Override
  public java.util.List<Path> procsFiles() {
    return dirs.values().stream().map(d -> d.resolve("cgroup.procs")).toList();
  }

  @Override
  public long oomKills() throws IOException {
    return Cgroups.keyed(dirs.get("memory").resolve("memory.oom_control"), "oom_kill");
  }

  @Override
  public long throttledPeriods() throws IOException {
    return Cgroups.keyed(dirs.get("cpu").resolve("cpu.stat"), "nr_throttled");
  }

  @Override
  public long pidsLimitHits() throws IOException {
    return Cgroups.keyed(dirs.get("pids").resolve("pids.events"), "max");
  }

  @Override
  public void close() throws IOException {
    for (Path d : dirs.values()) {
      Cgroups.killAndRemove(d);
    }
  }
}
