package io.strata.cli;

import io.strata.layers.base.Invocation;
import io.strata.layers.cli.Output;
import io.strata.layers.fs.Mounts;
import io.strata.runtime.daemon.DaemonServer;
import io.strata.runtime.daemon.Sockets;
import io.strata.union.mount.FuseMount;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code strata daemon}: one warm JVM that runs every strata command of its user and serves
 * their mounts ({@code strata}, {@code strata-overlay} and the C client hand it their command);
 * {@code strata daemon status} says what it does.
 */
@Command(name = "daemon", mixinStandardHelpOptions = true,
    subcommands = {DaemonCommand.Status.class},
    description = {"Run the strata daemon in the foreground until SIGTERM or SIGINT.",
        "",
        "One JVM for the whole host (or, for a user, for that user): the commands people type"
            + " (strata, strata-overlay) hand it the whole command when it answers, and it runs"
            + " them as they were typed (arguments, environment, working directory, input,"
            + " output, signals, exit status) and serves every mount they make. Root's socket"
            + " is /run/strata/strata.sock, a user's $XDG_RUNTIME_DIR/strata/strata.sock; only"
            + " clients of the daemon's own user are served. Without a daemon the same commands"
            + " run in their own process."})
public final class DaemonCommand implements Callable<Integer> {
  @Option(names = "--socket", paramLabel = "PATH",
      description = "Where to listen (default: this user's; see above).")
  Path socket;

  @Option(names = "--hold-mounts", paramLabel = "SECONDS", defaultValue = "30",
      description = "On SIGTERM or SIGINT, hand the mounts this daemon serves (strata overlay,"
          + " strata-overlay: podman's and buildah's; strata mount) to a small holder process,"
          + " for the next daemon on this socket to take over: a restart (an upgrade) ends none"
          + " of them. Their users wait meanwhile; if no daemon starts within SECONDS, the"
          + " mounts fail as after a crash. 0: unmount them at stop (default: ${DEFAULT-VALUE}).")
  int holdMounts;

  @Option(names = "--checkpoint-interval", paramLabel = "MILLIS", defaultValue = "1000",
      description = "With --hold-mounts, keep those mounts with the holder while serving them"
          + " too, with a checkpoint of each one's state written at most every MILLIS when it"
          + " changed, so that they outlive a crash of this daemon (SIGKILL, the OOM killer)"
          + " as they outlive a restart: the next daemon takes them over. 0: only at a stop"
          + " (default: ${DEFAULT-VALUE}).")
  long checkpointMillis;

  @Override
  public Integer call() throws Exception {
    Invocation.routeStandardStreams();
    DaemonServer.CommandLine commands = argv -> Main.execute(argv.toArray(String[]::new));
    // Started by systemd with the socket on stdin (contrib/systemd: StandardInput=socket):
    // serve the socket it made and listens on, which is how a client's first connection can
    // start the daemon.
    java.nio.channels.Channel inherited = socket == null ? System.inheritedChannel() : null;
    DaemonServer server = inherited instanceof java.nio.channels.ServerSocketChannel ssc
        ? DaemonServer.inherited(ssc, commands, DaemonServer::logLine)
        : DaemonServer.listen(socket != null ? socket : Sockets.defaultPath(), commands,
            DaemonServer::logLine);
    Path where = server.socket();
    io.strata.union.mount.Background.serveInThisProcess(commands::run);
    Main.keepSpareCommandLines();
    Thread hook = new Thread(() -> {
      DaemonServer.logLine("stopping");
      try {
        server.close();
      } catch (java.io.IOException e) {
        DaemonServer.logLine("stop: " + e.getMessage());
      }
    }, "strata-daemon-stop");
    Runtime.getRuntime().addShutdownHook(hook);
    Path holder = holderSocket(where);
    takeOver(holder);
    if (holdMounts > 0) {
      handOverOnStop(server, holder, holdMounts);
      if (checkpointMillis > 0) {
        try {
          io.strata.union.mount.Keeper.start(io.strata.runtime.container.ContainerRunner
              .nativeProgram("strata-holder", "the mount holder"), holder, holdMounts,
              checkpointMillis, DaemonServer::logLine);
        } catch (java.io.IOException e) {
          DaemonServer.logLine("mounts will not outlive a crash of this daemon: "
              + e.getMessage());
        }
      }
    }
    clearAfterADeadDaemon();
    server.trimWhenIdle(Duration.ofSeconds(10),
        () -> io.strata.union.view.UnionView.dropKeptLowerTrees(false),
        io.strata.union.kernel.KernelSession::requestsServed);
    warmUp(where.getParent());
    DaemonServer.logLine("serving on " + where + " (pid " + ProcessHandle.current().pid() + ")");
    server.serve();
    return 0;
  }

  /** Where the holder of this daemon's mounts listens while no daemon runs: beside its socket. */
  static Path holderSocket(Path daemonSocket) {
    return daemonSocket.resolveSibling("." + daemonSocket.getFileName() + ".hold");
  }

  /**
   * Takes over the mounts that the daemon before this one handed to the holder on {@code
   * holder} as it stopped: each is made again from its command line, on the connection the
   * kernel kept, with the nodes and open files the kernel holds.
   */
  static void takeOver(Path holder) {
    try {
      io.strata.union.mount.Handover.takeAll(holder, DaemonServer::logLine, t -> {
        int code;
        try {
          code = io.strata.union.mount.Handover.takingOver(t,
              () -> Main.execute(t.recipe().toArray(String[]::new)));
        } catch (Exception e) {
          code = -1;
        }
        t.abandon(); // unless the mount claimed its descriptors
        if (code == 0) {
          DaemonServer.logLine("took over " + t.mountpoint() + " from the daemon before");
        } else {
          DaemonServer.logLine("could not take over " + t.mountpoint() + " (status " + code
              + "): its users get errors; `strata umount` it");
        }
      });
    } catch (java.io.IOException | RuntimeException e) {
      DaemonServer.logLine("could not take the mounts over from the daemon before: "
          + e.getMessage());
    }
  }

  /**
   * On SIGTERM or SIGINT: takes no more commands (a client that comes is told to run its
   * command itself), lets the mounts being made answer, hands the mounts over to a holder
   * (started from the program the build made beside the container helper), then stops as
   * before; what cannot be handed over (io_uring, a foreground mount) is unmounted by its own
   * shutdown hook as before. Before, a strata-overlay that came while the mounts were being
   * handed over was served, not handed over, and unmounted under its users at the exit.
   */
  private static void handOverOnStop(DaemonServer server, Path holder, int graceSeconds) {
    sun.misc.SignalHandler stop = sig -> {
      server.stopTaking();
      io.strata.union.mount.Keeper.stop(); // the hand-over's records replace its checkpoints
      try {
        String pause = System.getenv("STRATA_TEST_STOP_PAUSE_MS"); // for tests: a late client
        if (pause != null) {
          Thread.sleep(Long.parseLong(pause));
        }
        if (!io.strata.union.mount.Background.awaitNoneBeingMade(Duration.ofSeconds(5))) {
          DaemonServer.logLine("mounts still being made after 5 s are not handed over");
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      try {
        Path program = io.strata.runtime.container.ContainerRunner.nativeProgram("strata-holder",
            "the mount holder");
        int n = io.strata.union.mount.Handover.giveAll(program, holder, graceSeconds,
            DaemonServer::logLine);
        if (n > 0) {
          DaemonServer.logLine("handed " + plural(n, "mount") + " to the holder on " + holder
              + " for the next daemon (" + graceSeconds + " s)");
        }
      } catch (java.io.IOException | RuntimeException e) {
        DaemonServer.logLine("could not hand the mounts over: " + e.getMessage());
      }
      System.exit(128 + sig.getNumber());
    };
    sun.misc.Signal.handle(new sun.misc.Signal("TERM"), stop);
    sun.misc.Signal.handle(new sun.misc.Signal("INT"), stop);
  }

  /**
   * What a daemon that was killed left: FUSE mounts of strata whose server is gone (they
   * answer ENOTCONN) are detached, the lock files no mount holds are removed, and the
   * containers of this daemon's store whose strata died are cleaned up (their helper, cgroup
   * and root mount) and marked exited, as {@code strata ps} would. Other stores are cleaned by
   * their next {@code ps} or {@code rm}.
   */
  static void clearAfterADeadDaemon() {
    try {
      // not the mounts just taken over from the daemon before: this one serves them, and a
      // stat that waits for its answer kept each busy for a moment (an unmount at that moment,
      // util-linux umount during a restart, failed with EBUSY: 3 in 1,400 mount cycles)
      java.util.Set<Path> ours = new java.util.HashSet<>();
      for (io.strata.union.mount.FuseMount m : io.strata.union.mount.FuseMount.live()) {
        ours.add(m.mountpoint());
      }
      for (Mounts.Entry e : Mounts.table()) {
        if (e.fsType().equals("fuse.strata") && !ours.contains(e.mountpoint())
            && dead(e.mountpoint())) {
          Mounts.unmount(e.mountpoint(), true);
          DaemonServer.logLine("detached " + e.mountpoint() + ", whose server is gone");
        }
      }
    } catch (java.io.IOException | RuntimeException e) {
      DaemonServer.logLine("could not clear dead mounts: " + e.getMessage());
    }
    try {
      int n = io.strata.union.mount.MountLock.clean();
      if (n > 0) {
        DaemonServer.logLine("removed " + n + " lock files of mounts long gone");
      }
    } catch (java.io.IOException | RuntimeException e) {
      DaemonServer.logLine("could not clean the mount locks: " + e.getMessage());
    }
    try {
      Path store = io.strata.layers.LayerStore.rootFrom(null);
      if (Files.isDirectory(store.resolve("containers"))) {
        new io.strata.runtime.container.Containers(store, DaemonServer::logLine).list();
      }
    } catch (java.io.IOException | RuntimeException e) {
      DaemonServer.logLine("could not clean up containers: " + e.getMessage());
    }
  }

  private static final int ENOTCONN = 107;

  /**
   * Loads the mount and container paths' classes, with their native bindings, before the
   * first client needs them (jnr generates a binding when a class first asks: the first mount
   * of a fresh daemon took 250 ms, then 175 ms with this), then gives back what starting
   * took: a collection and malloc_trim, as the idle trim does after work (a fresh daemon read
   * 60-70 MiB resident before its first idle trim, 57 after). Before that it plays a mount's
   * requests once without a mount ({@link io.strata.union.kernel.Rehearsal}: the view's caches,
   * lambda forms and bindings a first mount loaded, some 450 classes) and builds the spare
   * command lines of strata-overlay, run and mount: a fresh daemon's first strata-overlay
   * mount went from 105-155 ms to 39-57 (the next ones are the JIT's), for 4-5 MiB more
   * resident before the first mount, which that mount loads in any case (README, The daemon).
   * Parsing the common
   * command lines a few hundred times as well took a warm strata-overlay from ~12 to ~10 ms
   * but kept 22 MiB more resident (compiled code): not done. Done once per process: a
   * snapshotter in a JVM of its own warms up the same way, one in the daemon needs not.
   */
  static void warmUp(Path scratch) {
    if (!WARMED.compareAndSet(false, true)) {
      return; // a snapshotter in the daemon: done when the daemon started
    }
    Thread t = new Thread(() -> {
      preload();
      Main.prepareCommonCommandLines();
      io.strata.union.kernel.Rehearsal.run(scratch, DaemonServer::logLine); // logs what failed
      System.gc();
      io.strata.layers.fs.Posix.mallocTrim();
      // and again once the JIT has compiled what that ran: its compilers' scratch memory is
      // freed after the first trim (a fresh daemon read 70-71 MiB with one trim, 61 with both)
      try {
        Thread.sleep(5000);
      } catch (InterruptedException e) {
        return;
      }
      System.gc();
      io.strata.layers.fs.Posix.mallocTrim();
    }, "strata-warm-up");
    t.setDaemon(true);
    t.setPriority(Thread.MIN_PRIORITY);
    t.start();
  }

  private static final java.util.concurrent.atomic.AtomicBoolean WARMED =
      new java.util.concurrent.atomic.AtomicBoolean();

  /** Loads and initializes the classes of the mount and container paths. */
  static void preload() {
    for (String c : List.of("io.strata.union.kernel.Device", "io.strata.union.kernel.KernelSession",
        "io.strata.union.kernel.Dispatcher", "io.strata.union.kernel.Fusermount",
        "io.strata.union.mount.FuseMount", "io.strata.union.mount.OverlayOptions",
        "io.strata.union.mount.FuseMount$Settings", "io.strata.union.mount.Background",
        "io.strata.union.mount.MountLock", "io.strata.union.cli.OverlayCommand",
        "io.strata.union.cli.Foreground", "io.strata.union.kernel.Ring",
        "io.strata.union.kernel.KernelSession$Options", "io.strata.layers.base.Digest",
        "io.strata.union.view.UnionView", "io.strata.layers.fs.RawFs",
        "io.strata.layers.fs.Posix", "io.strata.layers.fs.Mounts",
        "io.strata.runtime.container.ContainerRunner", "io.strata.runtime.container.Native",
        "io.strata.runtime.container.Cgroups", "io.strata.layers.LayerStore")) {
      try {
        Class.forName(c, true, DaemonCommand.class.getClassLoader());
      } catch (ClassNotFoundException | LinkageError e) {
        DaemonServer.logLine("warm-up: " + c + ": " + e);
      }
    }
  }

  /**
   * Whether the FUSE mount at {@code mp} has lost its server: a stat of it fails with ENOTCONN.
   * Asked in a thread of its own, so a mount that hangs holds up nothing (it counts as alive).
   */
  private static boolean dead(Path mp) {
    java.util.concurrent.CompletableFuture<Boolean> f = new java.util.concurrent.CompletableFuture<>();
    Thread t = new Thread(() -> {
      try {
        io.strata.layers.fs.RawFs.lstat(io.strata.layers.fs.RawFs.AT_FDCWD,
            io.strata.layers.fs.RawFs.raw(mp));
        f.complete(false);
      } catch (io.strata.layers.fs.Posix.PosixException e) {
        f.complete(e.errno() == ENOTCONN);
      } catch (java.io.IOException e) {
        f.complete(false);
      }
    }, "strata-check " + mp);
    t.setDaemon(true);
    t.start();
    try {
      return f.get(2, java.util.concurrent.TimeUnit.SECONDS);
    } catch (Exception hangs) {
      return false;
    }
  }

  /** {@code strata daemon status}: runs in the daemon (or says none answers). */
  @Command(name = "status", mixinStandardHelpOptions = true,
      description = "Say whether a daemon serves this user, and what it does.")
  static final class Status implements Callable<Integer> {
    @Option(names = "--format", paramLabel = "FORMAT", defaultValue = "table",
        description = "table or json (default: ${DEFAULT-VALUE}).")
    Output.Format format;

    @Override
    public Integer call() {
      DaemonServer d = DaemonServer.running();
      if (d == null) {
        Path where = Sockets.forClient();
        if (format == Output.Format.json) {
          Output.json(Map.of("running", false, "socket", String.valueOf(where)));
        } else {
          System.out.println("no daemon answers on " + where + " (strata daemon starts one)");
        }
        return Main.NOT_FOUND;
      }
      Map<String, Object> s = new LinkedHashMap<>();
      s.put("running", true);
      s.put("socket", d.socket().toString());
      s.put("pid", ProcessHandle.current().pid());
      s.put("started", d.started().toString());
      s.put("uptimeSeconds", Duration.between(d.started(), Instant.now()).toSeconds());
      s.put("commandsServed", d.served());
      s.put("commandsRunning", d.active() - 1); // this one
      s.put("clientsRefused", d.refused());
      s.put("residentBytes", residentBytes());
      s.put("heapUsedBytes", ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed());
      List<Map<String, Object>> mounts = new ArrayList<>();
      for (FuseMount m : FuseMount.live()) {
        Map<String, Object> e = new LinkedHashMap<>();
        e.put("mountpoint", m.mountpoint().toString());
        e.put("transport", m.transport().name().toLowerCase(java.util.Locale.ROOT));
        try {
          e.put("mounted", Mounts.isFuseMountpoint(m.mountpoint()));
        } catch (java.io.IOException unreadable) {
          e.put("mounted", null);
        }
        e.put("outlivesACrash", io.strata.union.mount.Keeper.holds(m));
        mounts.add(e);
      }
      s.put("mounts", mounts);
      s.put("checkpoints", io.strata.union.mount.Keeper.checkpoints());
      s.put("checkpointMillis", io.strata.union.mount.Keeper.checkpointMillis());
      if (format == Output.Format.json) {
        Output.json(s);
        return 0;
      }
      System.out.printf("daemon pid %s on %s, up %s s: %s served (%s running now),"
          + " %s refused%n", s.get("pid"), s.get("socket"), s.get("uptimeSeconds"),
          plural((Long) s.get("commandsServed"), "command"), s.get("commandsRunning"),
          plural((Long) s.get("clientsRefused"), "client"));
      System.out.printf("memory: %s resident, %s heap in use; %s served%n",
          Output.size(residentBytes()), Output.size((Long) s.get("heapUsedBytes")),
          plural(mounts.size(), "mount"));
      for (Map<String, Object> m : mounts) {
        System.out.println("  " + m.get("mountpoint") + " (" + m.get("transport") + ")");
      }
      return 0;
    }
  }

  static String plural(long n, String what) {
    return n + " " + what + (n == 1 ? "" : "s");
  }

  /** This process's resident memory (VmRSS), or -1. */
  static long residentBytes() {
    try {
      for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
        if (line.startsWith("VmRSS:")) {
          return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
        }
      }
    } catch (java.io.IOException | NumberFormatException e) {
      // not on Linux
    }
    return -1;
  }
}
