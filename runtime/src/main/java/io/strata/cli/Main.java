package io.strata.cli;

import io.strata.layers.base.BadInputException;
import io.strata.layers.base.NotFoundException;
import io.strata.layers.base.StoreException;
import io.strata.layers.cli.StoreCommands;
import io.strata.runtime.daemon.DaemonClient;
import io.strata.runtime.daemon.Sockets;
import java.io.PrintWriter;
import java.util.List;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/**
 * The {@code strata} command line: gathers the subcommands each module defines and maps
 * failures onto exit codes that mean something.
 */
@Command(name = "strata", mixinStandardHelpOptions = true,
    description = "Container images as copy-on-write filesystems.",
    footer = {"", "  bench    Benchmark strata beside its peers (./strata bench --help).",
        "", "Exit codes: 0 ok, 1 failed, 2 bad usage, 3 not found, 4 bad or hostile input;",
        "run: the container's exit code, 125 when it could not start, 127 when its command"
            + " cannot be run.",
        "Store root: --root, else $STRATA_ROOT, else /var/lib/strata as root, else",
        "$XDG_DATA_HOME/strata (~/.local/share/strata)."})
public final class Main implements Runnable {
  public static final int FAILED = 1;
  public static final int USAGE = 2;
  public static final int NOT_FOUND = 3;
  public static final int BAD_INPUT = 4;

  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  @CommandLine.Option(names = "--root", paramLabel = "DIR",
      description = "Store root for every command (default: $STRATA_ROOT, else /var/lib/strata"
          + " as root, else $XDG_DATA_HOME/strata or ~/.local/share/strata).")
  java.nio.file.Path root;

  @CommandLine.Option(names = "--log-level", paramLabel = "LEVEL",
      scope = CommandLine.ScopeType.INHERIT,
      description = "How much strata says on stderr: error, warn (default), info or debug"
          + " (also $STRATA_LOG_LEVEL).")
  void logLevel(String level) {
    io.strata.layers.base.Log.setLevel(io.strata.layers.base.Log.parse(level));
  }

  @CommandLine.Option(names = "--debug", scope = CommandLine.ScopeType.INHERIT,
      description = "--log-level debug, and a stack trace with an unexpected failure.")
  void debug(boolean on) {
    if (on) {
      io.strata.layers.base.Log.setLevel(io.strata.layers.base.Log.Level.DEBUG);
    }
  }

  @Override
  public void run() {
    spec.commandLine().usage(System.out);
  }

  public static void main(String[] args) {
    System.setProperty(io.strata.union.mount.Background.MAIN_PROPERTY, Main.class.getName());
    int code = run(args);
    if (System.getProperty("strata.cds.train") != null) {
      trainClassArchive();
    }
    System.exit(code);
  }

  /**
   * For the build's class-data archive (runtime/pom.xml), which records the classes one JVM
   * loaded: beyond the training command (`strata images`), load what `run`, `mount` and
   * `overlay` load before they touch the system, which a build cannot do (root, /dev/fuse):
   * every command's model, the mount and container classes and the native bindings' library
   * (the bindings jnr generates at run time cannot be archived). A no-daemon `strata run`
   * then reads 600 more classes from the archive.
   */
  static void trainClassArchive() {
    CommandLine all = commandLine();
    for (String sub : List.of("run", "mount", "overlay", "umount", "pull", "commit")) {
      all.getSubcommands().get(sub).getCommandSpec().options().size();
    }
    commandLine(new String[] {"run", "--rm", "x", "true"}).parseArgs("run", "--rm", "x", "true");
    commandLine(new String[] {"overlay"}).parseArgs("overlay", "-o", "lowerdir=/l,upperdir=/u,"
        + "workdir=/w", "/m");
    DaemonCommand.preload();
    trainMountAndContainer();
  }

  /**
   * What a no-daemon `strata run` does past its command line, short of a mount and a process:
   * a mount's first requests played through a view ({@link io.strata.union.kernel.Rehearsal}:
   * the view, its caches, the native bindings jnr makes), an image config read as a tree, a
   * container's state written, read back and listed, in a scratch directory removed after.
   * Without it the archive held 103 of the 209 jnr classes such a run loads and none of
   * Caffeine's.
   */
  private static void trainMountAndContainer() {
    java.nio.file.Path scratch = null;
    try {
      scratch = java.nio.file.Files.createTempDirectory("strata-train-");
      io.strata.union.kernel.Rehearsal.run(scratch, line -> { });
      io.strata.layers.base.Json.MAPPER.readTree("{\"config\":{\"Env\":[\"A=b\"],"
          + "\"Cmd\":[\"/bin/true\"],\"WorkingDir\":\"\"}}").path("config").path("Env")
          .forEach(n -> n.asText());
      io.strata.runtime.container.Containers c = new io.strata.runtime.container.Containers(
          scratch.resolve("store"), line -> { });
      io.strata.runtime.container.ContainerState s = new io.strata.runtime.container.ContainerState(
          "train", "train:1", List.of("/bin/true"), io.strata.runtime.container.ContainerState.CREATED,
          null, null, ProcessHandle.current().pid(), -1, java.time.Instant.now().toString(), null,
          null, null, io.strata.layers.base.Digest.of(new byte[0]).toString());
      c.create(s);
      c.write(c.read("train"));
      c.list();
    } catch (Exception | LinkageError e) {
      System.err.println("strata: training the class archive: " + e); // the build shows it
    } finally {
      if (scratch != null) {
        try {
          io.strata.layers.fs.Trees.deleteRecursively(scratch);
        } catch (java.io.IOException e) {
          System.err.println("strata: training the class archive: " + e);
        }
      }
    }
  }

  /**
   * Runs the command line and returns its exit code (the tests call this): in the daemon when
   * one answers on this user's socket (see {@link Sockets}), else in this process.
   */
  public static int run(String... args) {
    if (!startsADaemon(args) && !io.strata.union.mount.Background.relaunched()
        && !mountsOnTheHost(args)) {
      java.nio.channels.SocketChannel ch = DaemonClient.connect(Sockets.forClient());
      if (ch != null) {
        try {
          int code = DaemonClient.run(ch, java.util.List.of(args));
          if (code != DaemonClient.RUN_YOURSELF) {
            return code;
          }
        } catch (java.io.IOException e) {
          System.err.println("strata: the daemon failed: " + e.getMessage());
          return FAILED;
        }
      }
    }
    return execute(args);
  }

  /** Runs the command line in this process (what the daemon does for its clients). */
  public static int execute(String... args) {
    List<String> kind = kind(args);
    if (spareMaker != null && kind.equals(OVERLAY)) {
      io.strata.union.cli.OverlayCommand simple = io.strata.union.cli.OverlayCommand.simple(args);
      if (simple != null) {
        return executeParsed("overlay", simple);
      }
    }
    CommandLine cl = spareMaker != null ? SPARES.remove(kind) : null;
    if (cl == null) {
      cl = commandLine(kind);
    }
    cl.setOut(new PrintWriter(System.out, true));
    cl.setErr(new PrintWriter(System.err, true));
    try {
      return cl.execute(args);
    } finally {
      makeSpare(kind);
    }
  }

  private static final List<String> OVERLAY = List.of("overlay");

  /**
   * Runs a command parsed without picocli ({@link io.strata.union.cli.OverlayCommand#simple}),
   * its failures told and mapped to exit codes as picocli's handler below does.
   */
  private static int executeParsed(String name, java.util.concurrent.Callable<Integer> command) {
    try {
      return command.call();
    } catch (Exception ex) {
      PrintWriter err = new PrintWriter(System.err, true);
      err.println("strata " + name + ": " + message(ex));
      if (exitCode(ex) == FAILED && debugging()) {
        ex.printStackTrace(err);
      }
      err.flush();
      return exitCode(ex);
    }
  }

  private static boolean debugging() {
    return io.strata.layers.base.Invocation.current().getenv("STRATA_DEBUG") != null
        || io.strata.layers.base.Log.enabled(io.strata.layers.base.Log.Level.DEBUG);
  }

  /**
   * In the daemon, a command line built ahead for each kind of command it has served, which
   * the next command of that kind takes. Building one reads the commands' annotations by
   * reflection, code a daemon runs too seldom for the JIT to compile: 2.5 ms of the 8.5 a
   * strata-overlay mount took in the daemon. A spare is built after a command ends, by a
   * thread of low priority, off the next command's path. A command line serves one command
   * only, since a command's object may live on in what it started (a mount's thread).
   */
  private static final java.util.Map<List<String>, CommandLine> SPARES =
      new java.util.concurrent.ConcurrentHashMap<>();
  /** Builds the spares; null: none are kept (not a daemon). */
  private static volatile java.util.concurrent.ThreadPoolExecutor spareMaker;

  /**
   * From now on keep spare command lines (the daemon). Called before the first command, so
   * that the builder's thread inherits no client's invocation.
   */
  public static void keepSpareCommandLines() {
    java.util.concurrent.ThreadPoolExecutor e = new java.util.concurrent.ThreadPoolExecutor(1, 1,
        0, java.util.concurrent.TimeUnit.SECONDS, new java.util.concurrent.LinkedBlockingQueue<>(),
        r -> {
          Thread t = new Thread(r, "strata-spare-command-lines");
          t.setDaemon(true);
          t.setPriority(Thread.MIN_PRIORITY);
          return t;
        });
    e.prestartCoreThread();
    spareMaker = e;
  }

  /**
   * Builds the spare command lines of the commands a daemon serves most often and fastest
   * (podman's strata-overlay, {@code run}, {@code mount}), ahead of their first use: the first
   * strata-overlay mount of a fresh daemon otherwise built its command line on its way.
   */
  public static void prepareCommonCommandLines() {
    for (String kind : List.of("overlay", "run", "mount")) {
      makeSpare(List.of(kind));
    }
  }

  private static void makeSpare(List<String> kind) {
    java.util.concurrent.ThreadPoolExecutor e = spareMaker;
    if (e == null || SPARES.containsKey(kind)) {
      return;
    }
    e.execute(() -> {
      try {
        SPARES.computeIfAbsent(kind, Main::commandLine);
      } catch (RuntimeException | Error failed) {
        // the command itself builds one then, and says what is wrong
      }
    });
  }

  /** The names of all subcommands. */
  private static final java.util.Set<String> NAMES = commands().stream()
      .map(c -> c.getClass().getAnnotation(Command.class).name())
      .collect(java.util.stream.Collectors.toUnmodifiableSet());

  /** Which subcommands {@code args} name, sorted: the command line they need. */
  static List<String> kind(String[] args) {
    return java.util.Arrays.stream(args).filter(NAMES::contains).distinct().sorted().toList();
  }

  /**
   * Whether {@code args} start a daemon (which must not hand itself to another): {@code
   * daemon} without its subcommand {@code status} (the value of --socket is not one).
   */
  /**
   * Whether the command is a user's mount, unmount or overlay on the host: a user's daemon lives
   * in a user and mount namespace of its own, where such a mount would not be the host's. The
   * C client hands mount and overlay to the daemon itself and mounts with fusermount3 when the
   * daemon asks; this JVM cannot, so they run here.
   */
  static boolean mountsOnTheHost(String... args) {
    if (io.strata.layers.fs.Posix.isRoot() || !io.strata.layers.fs.Places.inInitialUserNamespace()) {
      return false;
    }
    for (int i = 0; i < args.length; i++) {
      if (args[i].equals("--root") || args[i].equals("--log-level")) {
        i++;
      } else if (!args[i].startsWith("-")) {
        return args[i].equals("mount") || args[i].equals("umount") || args[i].equals("overlay");
      }
    }
    return false;
  }

  static boolean startsADaemon(String... args) {
    for (int i = 0; i < args.length; i++) {
      if (args[i].equals("daemon")) {
        for (int j = i + 1; j < args.length; j++) {
          if (args[j].equals("--socket")) {
            j++;
          } else if (args[j].equals("status")) {
            return false;
          }
        }
        return true;
      }
    }
    return false;
  }

  /** The whole command line, every subcommand in it. */
  public static CommandLine commandLine() {
    return commandLine(List.of());
  }

  /** The command line for {@code args} (see {@link #commandLine(List)}). */
  static CommandLine commandLine(String[] args) {
    return commandLine(kind(args));
  }

  /** A new object of every subcommand. */
  private static List<Object> commands() {
    List<Object> all = new java.util.ArrayList<>(StoreCommands.all());
    all.addAll(io.strata.union.cli.UnionCommands.all());
    all.addAll(List.of(new RunCommand(), new PsCommand(), new KillCommand(), new RmCommand(),
        new DiffCommand(), new CommitCommand(), new SnapshotterCommand(), new DaemonCommand(),
        new StatsCommand(),
        new Version.Command()));
    return all;
  }

  /**
   * The command line with only the subcommands {@code kind} names (all when it names none:
   * help, a typo that picocli suggests a command for). Building a subcommand's model reads
   * its annotations by reflection; building all twenty for a command that runs one was a
   * third of `strata images`' start.
   */
  static CommandLine commandLine(List<String> kind) {
    List<Object> all = commands();
    List<Object> named = all.stream()
        .filter(c -> kind.contains(c.getClass().getAnnotation(Command.class).name())).toList();
    CommandLine cl = new CommandLine(new Main());
    for (Object sub : named.isEmpty() ? all : named) {
      cl.addSubcommand(sub);
    }
    // Everything after the image name belongs to the container's command.
    if (cl.getSubcommands().containsKey("run")) {
      cl.getSubcommands().get("run").setStopAtPositional(true);
    }
    // Numbers as people type them; Double.parseDouble would take NaN, Infinity and 0x1p-3.
    CommandLine.ITypeConverter<Double> decimal = s -> {
      try {
        return io.strata.layers.base.Text.decimal(s, "");
      } catch (IllegalArgumentException e) {
        throw new CommandLine.TypeConversionException("'" + io.strata.layers.base.Text.clip(s)
            + "' is not a decimal number such as 0.5 or 30");
      }
    };
    cl.registerConverter(Double.class, decimal);
    cl.registerConverter(Double.TYPE, decimal);
    // Paths as the person typed them: relative ones from their working directory (the
    // daemon's is not theirs).
    cl.registerConverter(java.nio.file.Path.class,
        s -> io.strata.layers.base.Invocation.current().resolve(s));
    Version.apply(cl);
    cl.setExitCodeExceptionMapper(Main::exitCode);
    cl.setExecutionExceptionHandler((ex, line, parsed) -> {
      PrintWriter err = line.getErr();
      err.println("strata " + line.getCommandName() + ": " + message(ex));
      if (exitCode(ex) == FAILED && debugging()) {
        ex.printStackTrace(err);
      }
      err.flush();
      return exitCode(ex);
    });
    return cl;
  }

  /** Whether {@code t} or one of its causes is a command's cancellation. */
  static boolean cancelled(Throwable t) {
    for (Throwable c = t; c != null; c = c.getCause()) {
      if (c instanceof io.strata.layers.base.Invocation.Cancelled) {
        return true;
      }
    }
    return false;
  }

  static int exitCode(Throwable t) {
    if (cancelled(t)) {
      return 130; // as after Ctrl-C
    }
    if (t instanceof BadInputException) {
      return BAD_INPUT;
    }
    if (t instanceof NotFoundException) {
      return NOT_FOUND;
    }
    if (t instanceof IllegalArgumentException || t instanceof CommandLine.ParameterException
        || t instanceof IllegalStateException) {
      return USAGE;
    }
    return FAILED;
  }

  private static String message(Throwable t) {
    if (cancelled(t)) {
      return "interrupted";
    }
    if (t instanceof StoreException || t instanceof IllegalArgumentException
        || t instanceof IllegalStateException || t instanceof java.io.IOException) {
      return t.getMessage();
    }
    return "unexpected failure (" + t.getClass().getSimpleName() + "): " + t.getMessage()
        + " (--debug shows where; please report it)";
  }
}
