package io.strata.runtime;

import com.fasterxml.jackson.databind.JsonNode;
import io.strata.layers.Digest;
import io.strata.layers.ImageRecord;
import io.strata.layers.Json;
import io.strata.layers.LayerStore;
import io.strata.layers.Posix;
import io.strata.union.FuseMount;
import io.strata.union.UnionView;
import java.io.IOException;
import java.io.OutputStream;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;

/**
 * Runs one container in the foreground: the JVM makes the cgroup, mounts the image with a fresh
 * upper layer, starts the C helper, puts it in the cgroup before it runs anything, and waits.
 * Every way out (exit, signal, OOM, a failed start, SIGTERM to strata) unmounts and removes the
 * cgroup; a strata killed outright is cleaned up by the next strata command ({@link Containers}).
 * Neither the FUSE daemon nor the JVM ever joins the container's cgroup.
 */
public final class ContainerRunner {
  /** What to run, as the command line gave it; nulls take the image config's defaults. */
  public record Spec(String name, String image, List<String> command, List<String> env,
      String workdir, String user, String hostname, String network, List<String> volumes,
      boolean readOnly, boolean init, boolean remove, Limits limits, UserNamespace userns) {}

  /**
   * Container ids 0..count-1 appear on the host as hostId..: the helper makes the user
   * namespace, and the mount shows the image's files (owned by 0.. on disk) under the mapped
   * ids, as fuse-overlayfs's uidmapping does, so container root owns its image.
   */
  public record UserNamespace(long hostId, long count) {
    public static final UserNamespace DEFAULT = new UserNamespace(100_000, 65_536);
  }

  private final LayerStore store;
  private final Containers containers;
  private final Consumer<String> log;

  public ContainerRunner(LayerStore store, Consumer<String> log) {
    this.store = store;
    this.containers = new Containers(store.root(), log);
    this.log = log;
  }

  public Containers containers() {
    return containers;
  }

  /** Runs the container to its end and returns its exit code (128+N for signal N). */
  public int run(Spec spec) throws Exception {
    containers.list(); // reaps what a killed strata left behind
    ImageRecord image = store.resolve(spec.image());
    JsonNode config = Json.MAPPER.readTree(store.config(image)).path("config");
    List<String> argv = command(spec, config);
    String name = spec.name() != null ? spec.name()
        : "strata-" + Digest.of((System.nanoTime() + "" + ProcessHandle.current().pid())
            .getBytes()).shortHex().substring(0, 8);
    if (!name.matches("[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")) {
      throw new IllegalArgumentException("bad container name '" + name
          + "': letters, digits, '_', '.', '-', at most 64");
    }
    Path dir = containers.dirOf(name);
    if (Files.exists(dir.resolve("state.json"))) {
      throw new IllegalArgumentException("container name " + name + " is in use (`strata rm "
          + name + "` removes a stopped one)");
    }
    if (spec.userns() != null) {
      for (Path p = store.root(); p != null; p = p.getParent()) {
        if ((((Integer) Files.getAttribute(p, "unix:mode")) & 01) == 0) {
          throw new IllegalArgumentException("--userns: " + p + " is not searchable by others,"
              + " so the container's root (host uid " + spec.userns().hostId() + ") cannot"
              + " reach its rootfs; chmod o+x it or use another --root");
        }
      }
    }
    Path upper = Files.createDirectories(dir.resolve("upper"));
    Path work = Files.createDirectories(dir.resolve("work"));
    Path rootfs = Files.createDirectories(dir.resolve("rootfs"));
    String cgName = "ctr-" + name;
    ContainerState state = new ContainerState(name, spec.image(), argv, ContainerState.CREATED,
        null, null, ProcessHandle.current().pid(), -1, Instant.now().toString(), null, cgName,
        null);
    containers.write(state);
    store.pin(cgName, image.diffIds());

    AtomicBoolean cleaned = new AtomicBoolean();
    FuseMount[] mount = new FuseMount[1];
    Cgroup[] cgroup = new Cgroup[1];
    Process[] helper = new Process[1];
    Runnable cleanup = () -> {
      if (!cleaned.compareAndSet(false, true)) {
        return;
      }
      try {
        if (helper[0] != null && helper[0].isAlive()) {
          helper[0].destroy();
          if (!helper[0].waitFor(10, java.util.concurrent.TimeUnit.SECONDS)) {
            helper[0].destroyForcibly();
          }
        }
        if (cgroup[0] != null) {
          cgroup[0].close();
        }
        if (mount[0] != null) {
          mount[0].close();
        }
      } catch (Exception e) {
        log.accept("clean-up of " + name + ": " + e.getMessage());
      } finally {
        store.unpin(cgName);
      }
    };
    Thread hook = new Thread(() -> {
      cleanup.run();
      markExited(name, 143, "strata was terminated");
    }, "strata-run-cleanup");
    Runtime.getRuntime().addShutdownHook(hook);
    int code;
    String reason = null;
    try {
      List<Path> lowers = new ArrayList<>();
      for (int i = image.diffIds().size() - 1; i >= 0; i--) {
        lowers.add(store.layerTree(image.diffIds().get(i)));
      }
      UnionView.Options opts = UnionView.Options.defaults();
      if (spec.userns() != null) {
        String m = spec.userns().hostId() + ":0:" + spec.userns().count();
        opts = new UnionView.Options(opts.whiteoutForm(), opts.metacopy(), opts.xattrs(),
            opts.fsync(), io.strata.union.IdMap.parse(m, "uid map"),
            io.strata.union.IdMap.parse(m, "gid map"), false, opts.cacheEntries());
      }
      UnionView view = UnionView.open(lowers, upper, work, opts);
      mount[0] = FuseMount.mount(view, rootfs, FuseMount.Settings.defaults("strata:" + name),
          log, Duration.ofSeconds(30));
      cgroup[0] = Cgroups.create(Cgroups.detect(), cgName);
      cgroup[0].apply(spec.limits());
      Path fifo = dir.resolve("sync");
      Files.deleteIfExists(fifo);
      Posix.mknod(fifo, Posix.S_IFIFO | 0600, 0, 0);

      ProcessBuilder pb = new ProcessBuilder(helperCommand(spec, config, rootfs, fifo, name, argv))
          .inheritIO();
      pb.environment().clear();
      pb.environment().putAll(environment(spec, config));
      helper[0] = pb.start();
      cgroup[0].add(helper[0].pid()); // before the helper does anything: it waits on the FIFO
      try (OutputStream go = Files.newOutputStream(fifo)) {
        go.write('g');
      }
      containers.write(state.withRunning(helper[0].pid(), cgName));
      code = helper[0].waitFor();
      ContainerState.Usage usage = new ContainerState.Usage(cgroup[0].oomKills(),
          cgroup[0].throttledPeriods(), cgroup[0].pidsLimitHits());
      containers.write(containers.read(name).withUsage(usage));
      if (code == 137 && usage.oomKills() > 0) {
        reason = "out of memory: limit " + (spec.limits().memory() >> 20) + " MiB";
        log.accept(name + " was killed: " + reason);
      } else if (code == 125) {
        reason = "the container could not start (see the message above)";
      }
    } catch (Exception e) {
      cleanup.run();
      markExited(name, 125, "start failed: " + e.getMessage());
      removeHook(hook);
      throw e;
    }
    cleanup.run();
    removeHook(hook);
    if (spec.remove()) {
      io.strata.layers.Trees.deleteRecursively(dir);
    } else {
      markExited(name, code, reason);
    }
    return code;
  }

  private void markExited(String name, int code, String reason) {
    try {
      ContainerState s = containers.read(name);
      containers.write(s.withExit(code, reason, Instant.now().toString()));
    } catch (Exception e) {
      log.accept("cannot record the end of " + name + ": " + e.getMessage());
    }
  }

  private static void removeHook(Thread hook) {
    try {
      Runtime.getRuntime().removeShutdownHook(hook);
    } catch (IllegalStateException shuttingDown) {
      // the hook is running already and does the same
    }
  }

  /** Entrypoint plus Cmd from the image, with the command line's CMD replacing Cmd. */
  static List<String> command(Spec spec, JsonNode config) {
    List<String> argv = new ArrayList<>();
    config.path("Entrypoint").forEach(n -> argv.add(n.asText()));
    if (spec.command() != null && !spec.command().isEmpty()) {
      argv.addAll(spec.command());
    } else {
      config.path("Cmd").forEach(n -> argv.add(n.asText()));
    }
    if (argv.isEmpty()) {
      throw new IllegalArgumentException("no command: the image has no Entrypoint or Cmd;"
          + " give one after the image name");
    }
    return argv;
  }

  static Map<String, String> environment(Spec spec, JsonNode config) {
    Map<String, String> env = new LinkedHashMap<>();
    env.put("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    config.path("Env").forEach(n -> put(env, n.asText()));
    env.put("HOSTNAME", spec.hostname() != null ? spec.hostname() : "strata");
    if (spec.env() != null) {
      spec.env().forEach(e -> put(env, e));
    }
    return env;
  }

  private static void put(Map<String, String> env, String kv) {
    int eq = kv.indexOf('=');
    if (eq <= 0) {
      throw new IllegalArgumentException("environment entry '" + kv + "' is not KEY=VALUE");
    }
    env.put(kv.substring(0, eq), kv.substring(eq + 1));
  }

  private List<String> helperCommand(Spec spec, JsonNode config, Path rootfs, Path fifo,
      String name, List<String> argv) throws IOException {
    List<String> cmd = new ArrayList<>(List.of(helperPath().toString(), "--rootfs",
        rootfs.toString(), "--sync", fifo.toString(),
        "--hostname", spec.hostname() != null ? spec.hostname() : name,
        "--net", spec.network() != null ? spec.network() : "none"));
    String workdir = spec.workdir() != null ? spec.workdir()
        : config.path("WorkingDir").asText("");
    if (!workdir.isEmpty()) {
      cmd.addAll(List.of("--cwd", workdir));
    }
    String user = spec.user() != null ? spec.user() : config.path("User").asText("");
    if (!user.isEmpty()) {
      if (!user.matches("\\d+(:\\d+)?")) {
        throw new IllegalArgumentException("user '" + user + "': only numeric UID[:GID] is"
            + " supported (names would need the image's /etc/passwd)");
      }
      cmd.addAll(List.of("--user", user));
    }
    if (spec.init()) {
      cmd.add("--init");
    }
    if (spec.userns() != null) {
      cmd.addAll(List.of("--userns", spec.userns().hostId() + ":" + spec.userns().count()));
    }
    if (spec.readOnly()) {
      cmd.add("--read-only");
    }
    for (String v : spec.volumes()) {
      String[] p = v.split(":");
      if (p.length < 2 || p.length > 3 || !p[1].startsWith("/")
          || (p.length == 3 && !p[2].equals("ro") && !p[2].equals("rw"))) {
        throw new IllegalArgumentException("volume '" + v + "': expected HOSTDIR:/DIR[:ro]");
      }
      if (!Files.isDirectory(Path.of(p[0]))) {
        throw new IllegalArgumentException("volume '" + v + "': " + p[0] + " is not a directory");
      }
      cmd.addAll(List.of("--volume", Path.of(p[0]).toAbsolutePath() + ":" + p[1]
          + (p.length == 3 ? ":" + p[2] : "")));
    }
    cmd.add("--");
    cmd.addAll(argv);
    return cmd;
  }

  /** The helper compiled by the build, next to the jar (or the classes directory). */
  static Path helperPath() throws IOException {
    String override = System.getProperty("strata.helper");
    if (override != null) {
      return Path.of(override);
    }
    try {
      Path here = Path.of(ContainerRunner.class.getProtectionDomain().getCodeSource().getLocation()
          .toURI());
      Path helper = here.getParent().resolve("native/strata-init");
      if (!Files.isExecutable(helper)) {
        throw new IOException("the container helper " + helper + " is missing; build with"
            + " `mvn -DskipTests package` (it needs cc)");
      }
      return helper;
    } catch (URISyntaxException e) {
      throw new IOException("cannot locate the container helper", e);
    }
  }
}
