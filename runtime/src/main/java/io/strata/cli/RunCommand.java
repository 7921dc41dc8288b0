package io.strata.cli;

import io.strata.layers.cli.StoreOptions;
import io.strata.runtime.container.ContainerRunner;
import io.strata.runtime.container.Limits;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code strata run}: a container on the FUSE rootfs, in the foreground. */
@Command(name = "run", mixinStandardHelpOptions = true,
    description = {"Run a command in a new container from an image, in the foreground.",
        "Fresh pid, mount, uts, ipc and net namespaces; the image mounted copy-on-write as its",
        "root; cgroup limits. Exits with the container's code (128+N if signal N ended it)."})
public final class RunCommand implements Callable<Integer> {
  @Mixin StoreOptions store;

  @Option(names = "--name", paramLabel = "NAME", description = "Container name.")
  String name;

  @Option(names = "--rm", description = "Remove the container and its upper layer on exit.")
  boolean rm;

  @Option(names = {"-m", "--memory"}, paramLabel = "SIZE", description = "Memory limit (64m, 1g).")
  String memory;

  @Option(names = "--memory-swap", paramLabel = "SIZE",
      description = "Memory plus swap limit; -1 for unlimited swap (default: twice --memory).")
  String memorySwap;

  @Option(names = "--cpus", paramLabel = "N", description = "CPU quota in CPUs (0.5 = half of one).")
  Double cpus;

  @Option(names = "--pids-limit", paramLabel = "N", description = "Maximum number of processes.")
  Long pids;

  @Option(names = "--hostname", paramLabel = "NAME", description = "Hostname inside.")
  String hostname;

  @Option(names = "--network", paramLabel = "MODE", defaultValue = "none",
      description = "none (only loopback; default), host, or slirp4netns (a network of its"
          + " own with outbound access through slirp4netns, as rootless podman's).")
  String network;

  @Option(names = {"-e", "--env"}, paramLabel = "KEY=VALUE", description = "Environment entry.")
  List<String> env = new ArrayList<>();

  @Option(names = {"-w", "--workdir"}, paramLabel = "DIR", description = "Working directory.")
  String workdir;

  @Option(names = {"-v", "--volume"}, paramLabel = "HOSTPATH:PATH[:ro]",
      description = "Bind-mount a host directory or file (read-only with :ro).")
  List<String> volumes = new ArrayList<>();

  @Option(names = {"-u", "--user"}, paramLabel = "USER[:GROUP]",
      description = "Run as this user: names from the image's /etc/passwd and /etc/group, or ids.")
  String user;

  @Option(names = "--read-only", description = "Mount the container's root read-only.")
  boolean readOnly;

  @Option(names = "--transport", paramLabel = "T",
      description = "How the root is served: kernel (strata's own /dev/fuse transport, the"
          + " default as root) or jnr (jnr-fuse over libfuse2).")
  String transport;

  @Option(names = "--init", description = "Run a tiny init as PID 1 that reaps and forwards signals.")
  boolean init;

  @Option(names = "--userns",
      description = "Run in a user namespace: container root is an unprivileged host id.")
  boolean userns;

  @Option(names = "--userns-map", paramLabel = "HOSTID:COUNT",
      description = "Host ids for --userns: container ids 0..COUNT-1 map to HOSTID.. "
          + "(default 100000:65536).")
  String usernsMap;

  @Option(names = "--security-opt", paramLabel = "OPT",
      description = "seccomp=unconfined turns the default system-call filter off.")
  List<String> securityOpts = new ArrayList<>();

  @Parameters(index = "0", paramLabel = "IMAGE", description = "NAME[:TAG] or image id.")
  String image;

  @Parameters(index = "1..*", paramLabel = "CMD", description = "Command and arguments.")
  List<String> command = new ArrayList<>();

  @Override
  public Integer call() throws Exception {
    if (!network.equals("none") && !network.equals("host") && !network.equals("slirp4netns")) {
      throw new IllegalArgumentException("--network " + network
          + ": expected none, host or slirp4netns");
    }
    long mem = memory == null ? -1 : Limits.parseSize(memory, "--memory");
    if (mem != -1 && mem < Limits.MIN_MEMORY) {
      throw new IllegalArgumentException("--memory " + memory + ": the least is 6m");
    }
    long swap = -1;
    if (memorySwap != null) {
      if (mem < 0) {
        throw new IllegalArgumentException("--memory-swap needs --memory");
      }
      swap = memorySwap.equals("-1") ? -2 : Limits.parseSize(memorySwap, "--memory-swap");
      if (swap >= 0 && swap < mem) {
        throw new IllegalArgumentException("--memory-swap must be at least --memory");
      }
    }
    long quota = -1;
    if (cpus != null) {
      int n = Runtime.getRuntime().availableProcessors();
      if (cpus.isNaN() || cpus < 0.01 || cpus > n) {
        throw new IllegalArgumentException("--cpus " + cpus + ": expected 0.01 to " + n);
      }
      quota = Math.round(cpus * 100_000);
    }
    boolean seccomp = true;
    for (String o : securityOpts) {
      if (o.equals("seccomp=unconfined")) {
        seccomp = false;
      } else {
        throw new IllegalArgumentException("--security-opt " + io.strata.layers.base.Text.clip(o)
            + ": only seccomp=unconfined is supported");
      }
    }
    Limits limits = new Limits(mem, swap, quota, 100_000, pids == null ? -1 : pids);
    limits.check();
    if (transport != null) {
      // the mount below takes the process's preferred transport
      System.setProperty("strata.transport", io.strata.union.mount.FuseMount.Transport.parse(transport)
          .name().toLowerCase(java.util.Locale.ROOT));
    }
    ContainerRunner runner = new ContainerRunner(store.open(), io.strata.layers.cli.Output::note);
    ContainerRunner.UserNamespace ns = null;
    if (usernsMap != null && !userns) {
      throw new IllegalArgumentException("--userns-map " + io.strata.layers.base.Text.clip(usernsMap)
          + " needs --userns");
    }
    if (userns) {
      String[] p = (usernsMap == null ? "100000:65536" : usernsMap).split(":");
      try {
        ns = new ContainerRunner.UserNamespace(Long.parseLong(p[0]), Long.parseLong(p[1]));
      } catch (RuntimeException e) {
        throw new IllegalArgumentException("--userns-map " + usernsMap + ": expected HOSTID:COUNT");
      }
      if (ns.hostId() <= 0 || ns.count() <= 0 || ns.hostId() + ns.count() > 1L << 32) {
        throw new IllegalArgumentException("--userns-map " + usernsMap + ": out of range");
      }
    }
    return runner.run(new ContainerRunner.Spec(name, image, command, env, workdir, user,
        hostname, network, volumes, readOnly, init, rm, limits, ns, seccomp));
  }
}
