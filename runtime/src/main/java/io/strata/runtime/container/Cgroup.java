package io.strata.runtime.container;

import java.io.IOException;

/** One container's control group, whichever cgroup version holds each controller. */
public interface Cgroup extends AutoCloseable {
  /** Where it lives, for logs and errors. */
  String describe();

  void apply(Limits limits) throws IOException;

  /** Whether the kernel enforces {@link DevicePolicy} on this cgroup. */
  boolean restrictsDevices();

  /** Moves a process (and so its future children) into this cgroup. */
  void add(long pid) throws IOException;

  /** The cgroup.procs file of each hierarchy, for a process to join itself by (strata-init). */
  java.util.List<java.nio.file.Path> procsFiles();

  /** How many processes the kernel OOM-killed in this cgroup. */
  long oomKills() throws IOException;

  /** How many CPU periods this cgroup was throttled in. */
  long throttledPeriods() throws IOException;

  /** How many forks the pids limit refused. */
  long pidsLimitHits() throws IOException;

  /** Kills every process left in it and removes it. */
  @Override
  void close() throws IOException;
}
