package io.strata.runtime.container;

import java.util.List;

/**
 * What strata records about a container in {@code STORE/containers/NAME/state.json}: enough to
 * list it, signal it, and clean up after a strata that was killed. {@code imageId} is the
 * image it was started from ({@code sha256:HEX}; null in states written before it was kept).
 */
public record ContainerState(String name, String image, List<String> command, String status,
    Integer exitCode, String reason, long strataPid, long helperPid, String created,
    String finished, String cgroup, Usage usage, String imageId) {

  /** The cgroup's own counters, read just before it was removed. */
  public record Usage(long oomKills, long throttledPeriods, long pidsLimitHits) {}

  public static final String RUNNING = "running";
  public static final String EXITED = "exited";
  public static final String CREATED = "created";

  public ContainerState withRunning(long helper, String cg) {
    return new ContainerState(name, image, command, RUNNING, null, null, strataPid, helper,
        created, null, cg, null, imageId);
  }

  public ContainerState withExit(int code, String why, String at) {
    return new ContainerState(name, image, command, EXITED, code, why, strataPid, helperPid,
        created, at, cgroup, usage, imageId);
  }

  public ContainerState withUsage(Usage u) {
    return new ContainerState(name, image, command, status, exitCode, reason, strataPid,
        helperPid, created, finished, cgroup, u, imageId);
  }
}
