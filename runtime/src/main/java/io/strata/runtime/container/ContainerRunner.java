package io.strata.runtime.container;

import com.fasterxml.jackson.databind.JsonNode;
import io.strata.layers.base.BadInputException;
import io.strata.layers.base.Digest;
import io.strata.layers.ImageRecord;
import io.strata.layers.base.Json;
import io.strata.layers.LayerStore;
import io.strata.layers.fs.Places;
import io.strata.layers.fs.Posix;
import io.strata.layers.base.Text;
import io.strata.union.mount.FuseMount;
import io.strata.union.view.UnionView;
import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * Runs one container in the foreground: the JVM makes the cgroup, mounts the image with a fresh
 * upper layer, starts the C helper, whose container PID 1 joins the cgroup before it runs
 * anything (the helper's monitor stays out, so limits count the container alone), and waits.
 * Every way out (exit, signal, OOM, a failed start, SIGTERM to strata) unmounts and removes the
 * cgroup; a strata killed outright is cleaned up by the next strata command ({@link Containers}).
 * Neither the FUSE daemon nor the JVM ever joins the container's cgroup.
 */
public final class ContainerRunner {
  /** What to run, as the command line gave it; nulls take the image config's defaults. */
  public record Spec(String name, String image, List<String> command, List<String> env,
      String workdir, String user, String hostname, String network, List<String> volumes,
      boolean readOnly, boolean init, boolean remove, Limits limits, UserNamespace userns,
      boolean seccomp) {}

  /**
   * Container ids 0..count-1 appear on the host as hostId..: the helper makes the user
   * namespace, and the mount shows the image's files (owned by 0.. on disk) under the mapped
   * ids, as fuse-overlayfs's uidmapping does, so container root owns its image.
   */
  public record UserNamespace(long hostId, long count) {
    public static final UserNamespace DEFAULT = new UserNamespace(100_000, 65_536);
  }

  /** How long a container has to end after strata passed a signal on, as `docker stop`'s. */
  static final Duration STOP_GRACE = Duration.ofSeconds(10);
  private static final int SIGINT = 2;
  private static final int SIGTERM = 15;
  private static final int SIGHUP = 1;

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

  /** Everything a start needs, checked and resolved before anything is created. */
  private record Plan(String name, ImageRecord image, List<String> argv, Map<String, String> env,
      List<String> helperArgs, Path userCgroups) {}

  /**
   * Checks every option and resolves the image, creating nothing: a bad option is an
   * IllegalArgumentException (exit 2), an image whose config cannot be used a BadInputException
   * (exit 4).
   */
  private Plan plan(Spec spec) throws IOException {
    String name = spec.name() != null ? spec.name()
        : "strata-" + Digest.of((System.nanoTime() + "" + ProcessHandle.current().pid())
            .getBytes()).shortHex().substring(0, 8);
    if (!name.matches("[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")) {
      throw new IllegalArgumentException("bad container name '" + name
          + "': letters, digits, '_', '.', '-', at most 64");
    }
    String hostname = spec.hostname() != null ? spec.hostname() : name;
    if (hostname.isEmpty() || hostname.length() > 64 || !hostname.matches("[\\x21-\\x7e]+")) {
      throw new IllegalArgumentException("--hostname '" + hostname + "': 1 to 64 printable"
          + " characters without spaces");
    }
    String network = spec.network() != null ? spec.network() : "none";
    List<String> helper = new ArrayList<>(List.of("--hostname", hostname, "--net", network));
    if (network.equals("slirp4netns")) {
      helper.addAll(List.of("--slirp4netns", slirp4netns(spec)));
    }
    if (spec.workdir() != null) {
      helper.addAll(List.of("--cwd", containerPath(spec.workdir(), "-w/--workdir")));
    }
    for (String v : spec.volumes()) {
      helper.addAll(List.of("--volume", volume(v)));
    }
    Map<String, String> env = new LinkedHashMap<>();
    env.put("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for (String e : spec.env()) {
      put(env, e, "-e/--env");
    }
    spec.limits().check();
    Path userCgroups = Places.isHostRoot() ? null : rootless(spec);

    ImageRecord image = store.resolve(spec.image());
    JsonNode config = Json.MAPPER.readTree(store.config(image)).path("config");
    List<String> argv = command(spec, config);
    Map<String, String> all = new LinkedHashMap<>(Map.of("PATH", env.get("PATH")));
    try {
      config.path("Env").forEach(n -> put(all, n.asText(), "the image's Env"));
      if (spec.workdir() == null && !config.path("WorkingDir").asText("").isEmpty()) {
        // A relative WorkingDir in a config is taken from the root, as Docker does.
        String wd = config.path("WorkingDir").asText();
        helper.addAll(List.of("--cwd", containerPath(wd.startsWith("/") ? wd : "/" + wd,
            "the image's WorkingDir")));
      }
      if (spec.user() == null && !config.path("User").asText("").isEmpty()) {
        helper.addAll(List.of("--user", user(image, config.path("User").asText(),
            "the image's User")));
      }
    } catch (IllegalArgumentException e) {
      throw new BadInputException("image " + spec.image() + ": " + e.getMessage());
    }
    if (spec.user() != null) {
      helper.addAll(List.of("--user", user(image, spec.user(), "--user")));
    }
    all.putAll(env);
    all.put("HOSTNAME", hostname); // as `hostname` says inside
    if (spec.init()) {
      helper.add("--init");
    }
    if (spec.userns() != null) {
      helper.addAll(List.of("--userns", spec.userns().hostId() + ":" + spec.userns().count()));
    }
    if (spec.readOnly()) {
      helper.add("--read-only");
    }
    if (!spec.seccomp()) {
      helper.add("--no-seccomp");
    }
    return new Plan(name, image, argv, all, helper, userCgroups);
  }

  /** The slirp4netns program for {@code --network slirp4netns}. */
  private static String slirp4netns(Spec spec) {
    if (spec.userns() != null) {
      throw new IllegalArgumentException("--network slirp4netns does not go with --userns");
    }
    for (String dir : List.of("/usr/bin", "/bin", "/usr/local/bin")) {
      Path p = Path.of(dir, "slirp4netns");
      if (Files.isExecutable(p)) {
        return p.toString();
      }
    }
    throw new IllegalArgumentException("--network slirp4netns needs slirp4netns (Debian package"
        + " slirp4netns), which is not installed");
  }

  /**
   * What a user's container (rootless) can have. The client made a user namespace of the
   * user's subordinate ids and runs this JVM as its root; the container's namespaces are
   * made inside it. A container with limits gets a cgroup below the cgroup v2 subtree
   * delegated to the user ({@link Cgroups#delegated}), which is returned; without one (cgroup
   * v1 is root's; no delegation) a limit asked for is refused with the reason, as podman
   * refuses it. A container without limits gets no cgroup.
   */
  private static Path rootless(Spec spec) throws IOException {
    if (Places.inInitialUserNamespace()) {
      throw new IllegalArgumentException("a user's container needs a user namespace, which the"
          + " strata command makes (runtime/target/native/strata-client, or ./strata); "
          + (io.strata.layers.base.Invocation.isForClient()
              ? "this daemon was started without one: stop it and start it with `strata daemon`"
              : "this JVM was started without one"));
    }
    if (spec.userns() != null) {
      throw new IllegalArgumentException("--userns maps host ids, which only root may; a"
          + " user's container is always in a user namespace of the user's subordinate ids");
    }
    Limits l = spec.limits();
    List<String> needed = Cgroups.controllersFor(l);
    if (needed.isEmpty()) {
      return null;
    }
    List<String> asked = new ArrayList<>();
    for (String c : needed) {
      asked.add(switch (c) {
        case "memory" -> "--memory";
        case "cpu" -> "--cpus";
        default -> "--pids-limit";
      });
    }
    StringBuilder why = new StringBuilder();
    Path delegated = Cgroups.delegated(why);
    List<String> missing = new ArrayList<>(needed);
    if (delegated != null) {
      missing.removeAll(Cgroups.v2Controllers(delegated));
      if (missing.isEmpty()) {
        return delegated;
      }
      why.append("the ").append(String.join(", ", missing)).append(missing.size() == 1
          ? " controller is" : " controllers are").append(" not delegated to the user (").append(
          delegated).append(" offers: ").append(Cgroups.v2Controllers(delegated).stream()
              .filter(c -> !c.isBlank()).reduce((a, b) -> a + " " + b).orElse("none"))
          .append(")");
    }
    Cgroups.Layout layout = Cgroups.detect();
    if (layout.v1().keySet().containsAll(missing)) {
      why.append("; ").append(String.join(", ", missing)).append(missing.size() == 1 ? " is"
          : " are").append(" cgroup v1's here, which only root may use");
    }
    throw new IllegalArgumentException(String.join(", ", asked) + ": a user's container"
        + " cannot have limits here: " + why + "; run it without limits, or as root");
  }

  /** Runs the container to its end and returns its exit code (128+N for signal N). */
  public int run(Spec spec) throws Exception {
    containers.list(); // reaps what a killed strata left behind
    Plan plan = plan(spec);
    String name = plan.name();
    if (spec.userns() != null) {
      for (Path p = store.root(); p != null; p = p.getParent()) {
        if ((((Integer) Files.getAttribute(p, "unix:mode")) & 01) == 0) {
          throw new IllegalArgumentException("--userns: " + p + " is not searchable by others,"
              + " so the container's root (host uid " + spec.userns().hostId() + ") cannot"
              + " reach its rootfs; chmod o+x it or use another --root");
        }
      }
    }
    String cgName = "ctr-" + name;
    // a user's container has a cgroup only with limits (see rootless), named by its path
    String cgroupName = Places.isHostRoot() ? cgName : plan.userCgroups() == null ? null
        : plan.userCgroups().resolve(Cgroups.PARENT).resolve(cgName).toString();
    ContainerState created = new ContainerState(name, spec.image(), plan.argv(),
        ContainerState.CREATED, null, null, ProcessHandle.current().pid(), -1,
        Instant.now().toString(), null, cgroupName, null, plan.image().id().toString());
    containers.create(created); // the name is taken, with its state, in one rename
    Run run = new Run(name, cgName, spec.remove(), spec.limits());
    Thread hook = new Thread(() -> run.finish(143, "strata was terminated"), "strata-run-cleanup");
    Runtime.getRuntime().addShutdownHook(hook);
    // From here on SIGINT, SIGTERM and SIGHUP are the container's to handle, not the JVM's.
    List<Object> saved = Signals.forward(List.of(SIGINT, SIGTERM, SIGHUP), run::forward);
    try {
      return run.start(spec, plan, created);
    } finally {
      Signals.restore(saved);
      removeHook(hook);
    }
  }

  /**
   * One container's resources from creation to removal. {@link #finish} releases them all,
   * once, whoever calls it first: the run itself, a failed start, or the shutdown hook. Its
   * monitor lock guards the resources; the run's own thread never holds it while it waits.
   */
  private final class Run {
    private final String name;
    private final String cgName;
    private final boolean remove;
    private final Limits limits;
    private FuseMount mount;
    private Cgroup cgroup;
    private Process helper;
    private Integer finalCode;
    /** The first signal strata passed on; what the container is said to have died of if it has to be killed. */
    private volatile int forwarded;

    Run(String name, String cgName, boolean remove, Limits limits) {
      this.name = name;
      this.cgName = cgName;
      this.remove = remove;
      this.limits = limits;
    }

    int start(Spec spec, Plan plan, ContainerState created) throws Exception {
      Path dir = containers.dirOf(name);
      Process started;
      try {
        synchronized (this) {
          if (finalCode != null) {
            return finalCode; // terminated while being created
          }
          stopIfSignalled();
          store.pin(cgName, plan.image().diffIds());
          Path upper = Files.createDirectories(containers.upperOf(name));
          Path work = Files.createDirectories(containers.workOf(name));
          Path rootfs = Files.createDirectories(containers.rootfsOf(name));
          if (spec.userns() != null) {
            containers.shareWithContainerRoot(name, (int) spec.userns().hostId());
          }
          List<Path> lowers = new ArrayList<>();
          for (int i = plan.image().diffIds().size() - 1; i >= 0; i--) {
            lowers.add(store.layerTree(plan.image().diffIds().get(i)));
          }
          // the store's layers never change: their merged tree may serve the next run too
          UnionView.Options opts = UnionView.Options.defaults().withImmutableLowers(true);
          if (spec.userns() != null) {
            String m = spec.userns().hostId() + ":0:" + spec.userns().count();
            opts = opts.withIds(io.strata.union.view.IdMap.parse(m, "uid map"),
                io.strata.union.view.IdMap.parse(m, "gid map"));
          }
          UnionView view = UnionView.open(lowers, upper, work, opts);
          mount = FuseMount.mount(view, rootfs, FuseMount.Settings.defaults("strata:" + name),
              log, Duration.ofSeconds(30));
          if (Places.isHostRoot()) {
            cgroup = Cgroups.create(Cgroups.detect(), cgName);
            cgroup.apply(spec.limits());
          } else if (plan.userCgroups() != null) {
            cgroup = CgroupV2.createDelegated(plan.userCgroups(), cgName,
                Cgroups.controllersFor(spec.limits()));
            cgroup.apply(spec.limits());
          }
          Path fifo = dir.resolve("sync");
          Files.deleteIfExists(fifo);
          Posix.mknod(fifo, Posix.S_IFIFO | 0600, 0, 0);
          List<String> cmd = new ArrayList<>(List.of(helperPath().toString(), "--rootfs",
              rootfs.toString(), "--sync", fifo.toString()));
          cmd.addAll(plan.helperArgs());
          if (cgroup == null || !cgroup.restrictsDevices()) {
            cmd.add("--no-mknod"); // no device cgroup: no device nodes at all
          }
          if (io.strata.layers.base.Invocation.isForClient()) {
            // the client's own open files, not copies: see ClientStdio
            cmd.addAll(List.of("--stdio-of", String.valueOf(
                io.strata.layers.base.Invocation.current().pid())));
          }
          for (Path procs : cgroup == null ? List.<Path>of() : cgroup.procsFiles()) {
            cmd.addAll(List.of("--cgroup", procs.toString())); // PID 1 joins before it runs
          }
          cmd.add("--");
          cmd.addAll(plan.argv());
          ProcessBuilder pb = new ProcessBuilder(cmd);
          ClientStdio.apply(pb);
          pb.environment().clear();
          pb.environment().putAll(plan.env());
          stopIfSignalled();
          helper = pb.start();
          started = helper;
          ClientStdio.pump(pb, helper);
          Native.release(fifo, helper, Duration.ofSeconds(30));
          containers.write(created.withRunning(helper.pid(), cgroup != null
              ? created.cgroup() : null));
        }
      } catch (Exception e) {
        if (forwarded != 0) {
          return finish(128 + forwarded, e.getMessage());
        }
        finish(125, "start failed: " + e.getMessage());
        throw e;
      }
      int code = started.waitFor();
      String reason = null;
      if (forwarded != 0 && code == 137) {
        code = 128 + forwarded; // it had to be killed after the signal strata was sent
        reason = "stopped by signal " + forwarded + " to strata";
      }
      if (code == 125 && reason == null) {
        reason = "the container could not start (see the message above)";
      }
      return finish(code, reason);
    }

    /** A signal that came before the helper started ends the start here. */
    private void stopIfSignalled() throws IOException {
      if (forwarded != 0) {
        throw new IOException("stopped by signal " + forwarded + " before it started");
      }
    }

    /** Passes a signal sent to strata on to the container; kills it if it has not ended in time. */
    void forward(int signal) {
      Process h = helper;
      boolean first = forwarded == 0;
      if (first) {
        forwarded = signal;
      }
      if (h == null || !h.isAlive()) {
        return;
      }
      if (!first) {
        h.destroyForcibly(); // asked twice: no more waiting
        return;
      }
      Native.kill(h.pid(), signal);
      Thread t = new Thread(() -> {
        try {
          if (!h.waitFor(STOP_GRACE.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS)) {
            log.accept(name + " did not end within " + STOP_GRACE.toSeconds()
                + " s of signal " + signal + "; killing it");
            h.destroyForcibly();
          }
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
      }, "strata-stop-" + name);
      t.setDaemon(true);
      t.start();
    }

    /** Releases everything, then removes the container or records how it ended; once. */
    synchronized int finish(int code, String reason) {
      if (finalCode != null) {
        return finalCode;
      }
      finalCode = code;
      try {
        if (helper != null && helper.isAlive()) {
          helper.destroy();
          if (!helper.waitFor(10, java.util.concurrent.TimeUnit.SECONDS)) {
            helper.destroyForcibly();
          }
        }
        if (cgroup != null) {
          ContainerState.Usage usage = new ContainerState.Usage(cgroup.oomKills(),
              cgroup.throttledPeriods(), cgroup.pidsLimitHits());
          if (code == 137 && usage.oomKills() > 0 && reason == null) {
            reason = "out of memory: limit " + (limits.memory() >> 20) + " MiB";
            log.accept(name + " was killed: " + reason);
          }
          containers.write(containers.read(name).withUsage(usage));
          cgroup.close();
        }
        if (mount != null) {
          mount.close();
        }
      } catch (Exception e) {
        log.accept("clean-up of " + name + ": " + e.getMessage());
      } finally {
        store.unpin(cgName);
      }
      try {
        if (remove) {
          io.strata.layers.fs.Trees.deleteRecursively(containers.dirOf(name));
        } else {
          markExited(name, code, reason);
        }
      } catch (IOException e) {
        log.accept("cannot remove container " + name + ": " + e.getMessage());
      }
      return code;
    }
  }

  private void markExited(String name, int code, String reason) throws IOException {
    ContainerState s = containers.read(name);
    containers.write(s.withExit(code, reason, Instant.now().toString()));
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

  private static void put(Map<String, String> env, String kv, String what) {
    int eq = kv.indexOf('=');
    if (eq <= 0) {
      throw new IllegalArgumentException(what + " entry '" + Text.clip(kv) + "' is not KEY=VALUE");
    }
    env.put(kv.substring(0, eq), kv.substring(eq + 1));
  }

  /** USER[:GROUP] as numeric ids, names looked up in the image's own files ({@link Users}). */
  private String user(ImageRecord image, String user, String what) throws IOException {
    List<Path> lowers = new ArrayList<>();
    for (int i = image.diffIds().size() - 1; i >= 0; i--) {
      lowers.add(store.layerTree(image.diffIds().get(i)));
    }
    try (UnionView v = UnionView.open(lowers, null, null,
        UnionView.Options.defaults().withImmutableLowers(true))) {
      return Users.resolve(user, what, path -> {
        try {
          return v.readSmallFile(path, 1 << 20);
        } catch (io.strata.union.view.FsException e) {
          return null;
        }
      });
    }
  }

  /** An absolute path inside the container without '..', such as a working directory. */
  static String containerPath(String path, String what) {
    if (!path.startsWith("/")) {
      throw new IllegalArgumentException(what + " '" + Text.clip(path)
          + "': must be an absolute path inside the container");
    }
    if (path.length() > 4095 || path.indexOf('\0') >= 0) {
      throw new IllegalArgumentException(what + " '" + Text.clip(path) + "': not a usable path");
    }
    for (String c : path.split("/")) {
      if (c.equals("..")) {
        throw new IllegalArgumentException(what + " '" + Text.clip(path)
            + "': '..' is not allowed");
      }
      if (c.getBytes(java.nio.charset.StandardCharsets.UTF_8).length > 255) {
        throw new IllegalArgumentException(what + ": a name longer than 255 bytes");
      }
    }
    return path;
  }

  /**
   * HOSTPATH:PATH[:ro|rw], checked; returns it with HOSTPATH made absolute. A directory is
   * mounted on a directory and a file on a file, each made in the root when missing.
   */
  static String volume(String v) {
    String[] p = v.split(":", -1);
    if (p.length < 2 || p.length > 3 || p[0].isEmpty()
        || (p.length == 3 && !p[2].equals("ro") && !p[2].equals("rw"))) {
      throw new IllegalArgumentException("volume '" + Text.clip(v) + "': expected HOSTPATH:/PATH[:ro|rw]");
    }
    String target = containerPath(p[1], "volume target");
    String norm = target.replaceAll("/+", "/").replaceAll("(/\\.)+(/|$)", "/");
    if (norm.equals("/") || norm.equals("/proc") || norm.startsWith("/proc/")) {
      throw new IllegalArgumentException("volume '" + Text.clip(v) + "': cannot mount on "
          + target);
    }
    Path source = io.strata.layers.base.Invocation.current().resolve(p[0]);
    if (!Files.exists(source)) {
      throw new IllegalArgumentException("volume '" + Text.clip(v) + "': " + p[0]
          + " does not exist");
    }
    return source + ":" + target + (p.length == 3 ? ":" + p[2] : "");
  }

  /** The helper compiled by the build, next to the jar (or the classes directory). */
  static Path helperPath() throws IOException {
    String override = System.getProperty("strata.helper");
    if (override != null) {
      return Path.of(override);
    }
    return nativeProgram("strata-init", "the container helper");
  }

  /**
   * A program the build compiled into native/ beside the jar (or the classes directory):
   * strata-init, strata-holder. {@code what} names it in the error when it is missing.
   */
  public static Path nativeProgram(String name, String what) throws IOException {
    try {
      // where this class came from; a class from the AOT cache or archive may have no
      // location (a cache made with another path to the jar), then the class path says
      java.security.CodeSource cs = ContainerRunner.class.getProtectionDomain().getCodeSource();
      Path here = cs != null && cs.getLocation() != null ? Path.of(cs.getLocation().toURI())
          : Path.of(System.getProperty("java.class.path").split(java.io.File.pathSeparator)[0])
              .toAbsolutePath();
      Path program = here.getParent().resolve("native").resolve(name);
      if (!Files.isExecutable(program)) {
        throw new IOException(what + " " + program + " is missing; build with"
            + " `mvn -DskipTests package` (it needs cc)");
      }
      return program;
    } catch (URISyntaxException e) {
      throw new IOException("cannot locate " + what, e);
    }
  }
}
