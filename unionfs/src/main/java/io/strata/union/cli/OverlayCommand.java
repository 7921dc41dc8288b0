package io.strata.union.cli;

import io.strata.union.mount.Background;
import io.strata.union.mount.FuseMount;
import io.strata.union.mount.Handover;
import io.strata.union.mount.OverlayOptions;
import io.strata.union.view.UnionView;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code strata overlay}: fuse-overlayfs's command line over plain directories. */
@Command(name = "overlay", mixinStandardHelpOptions = true,
    description = {"Mount plain directories as a union, with fuse-overlayfs's command line.",
        "For containers/storage's mount_program: `strata overlay -o lowerdir=L1:L2,upperdir=U,"
            + "workdir=W DIR`, or `strata overlay SOURCE DIR -o …` as mount.fuse3 calls it.",
        "lowerdir lists the top layer first. Without upperdir the mount is read-only.",
        "Options: lowerdir, upperdir, workdir, uidmapping=C:H:N[:…], gidmapping=…,"
            + " squash_to_root, noxattrs, fsync=0, timeout=SECONDS (kernel caches; default: a"
            + " day with strata's own transport, 60/0 with jnr-fuse), whiteout=file|device,"
            + " nometacopy, passthrough=0|1 (default 1), transport=kernel|uring|dev|jnr"
            + " (default kernel: strata's own, as root, over FUSE io_uring where the kernel"
            + " offers it, else /dev/fuse), uring (io_uring or fail), nouring (/dev/fuse"
            + " only).",
        "Returns once the mount answers, unless -f keeps it in the foreground."})
public final class OverlayCommand implements Callable<Integer> {
  @Option(names = "-o", paramLabel = "OPTIONS", required = true,
      description = "Comma-separated mount options (may be repeated).")
  List<String> options = new ArrayList<>();

  @Option(names = {"-f", "--foreground"}, description = "Serve the mount in this process.")
  boolean foreground;

  @Option(names = "-d", description = "Foreground, as fuse-overlayfs's -d.")
  boolean debug;

  @Parameters(arity = "1..2", paramLabel = "[SOURCE] DIR",
      description = "The mountpoint, optionally after a source name (ignored).")
  List<String> positional;

  /**
   * The command of {@code args} ({@code overlay} then its arguments) when they take the shape
   * podman and buildah give them, {@code -o OPTIONS} pairs and one or two positionals, none
   * empty or starting with '-'; else null, and picocli parses them (help, -f, -d, attached
   * values, anything unusual, and every error). The daemon runs a strata-overlay mount this
   * way: picocli's parse and the command line built again after each command (it serves one
   * command) were a third of the daemon's CPU time in a loop of mounts.
   */
  public static OverlayCommand simple(String[] args) {
    if (args.length < 4 || !args[0].equals("overlay")) {
      return null;
    }
    OverlayCommand c = new OverlayCommand();
    c.positional = new ArrayList<>(2);
    for (int i = 1; i < args.length; i++) {
      String a = args[i];
      if (a.equals("-o") && i + 1 < args.length && plain(args[i + 1])) {
        c.options.add(args[++i]);
      } else if (plain(a) && c.positional.size() < 2) {
        c.positional.add(a);
      } else {
        return null;
      }
    }
    return c.options.isEmpty() || c.positional.isEmpty() ? null : c;
  }

  private static boolean plain(String arg) {
    return !arg.isEmpty() && arg.charAt(0) != '-';
  }

  @Override
  public Integer call() throws Exception {
    if (io.strata.layers.base.Invocation.current().clientMounter() != null) {
      options = withNamespaceIds(options);
    }
    OverlayOptions o = OverlayOptions.parse(options, Foreground::log);
    Path mp = io.strata.layers.base.Invocation.current().resolve(
        positional.get(positional.size() - 1));
    Handover.Takeover taking = Handover.taking();
    if (taking != null) {
      // the daemon before served this mount: nothing may look at the mountpoint (no one
      // answers it until this serves), and the client that made it is long gone
      List<String> recipe = recipe(taking.mountpoint());
      Background.startHere(() -> serve(o, mp, -1, recipe, taking), mp, Duration.ofSeconds(60),
          false);
      return 0;
    }
    for (Path l : o.lowers()) {
      if (!Files.isDirectory(l)) {
        throw new IllegalArgumentException("lowerdir " + l + " is not a directory");
      }
    }
    if (!Files.isDirectory(mp)) {
      throw new IllegalArgumentException("mountpoint " + mp + " is not a directory");
    }
    if (!foreground && !debug && Background.inThisProcess()) {
      int mounted = mountedByClient(); // serve owns it from here
      List<String> recipe = recipe(mp.toString());
      Background.startHere(() -> serve(o, mp, mounted, recipe, null), mp, Duration.ofSeconds(60),
          true);
      return 0;
    }
    if (!foreground && !debug) {
      List<String> args = new ArrayList<>(List.of("overlay", "-f"));
      for (String opt : options) {
        args.add("-o");
        args.add(opt);
      }
      args.add(mp.toString());
      Path log = Background.logDir().resolve("overlay-"
          + Integer.toHexString(mp.toAbsolutePath().normalize().hashCode()) + ".log");
      Background.startAndWait(args, mp, log, Duration.ofSeconds(60));
      return 0;
    }
    return serve(o, mp, -1, null, null);
  }

  /**
   * {@code opts} with the mapping of a user's daemon's namespace: the client mounted on the
   * host, where the kernel speaks the host's ids, and the daemon sees the files with its own
   * namespace's ({@link io.strata.union.view.IdMap#ofOwnNamespace}). As options, so that the
   * next daemon's recipe keeps them. A mapping of the user's own is not taken this way.
   */
  static List<String> withNamespaceIds(List<String> opts) throws java.io.IOException {
    for (String o : opts) {
      for (String kv : o.split(",")) {
        if (kv.startsWith("uidmapping=") || kv.startsWith("gidmapping=")) {
          throw new IllegalArgumentException("uidmapping= and gidmapping= are not taken by a"
              + " user's daemon for a mount on the host (it maps its own namespace's ids):"
              + " run without the daemon (STRATA_NO_DAEMON=1)");
        }
      }
    }
    String uids = io.strata.union.view.IdMap.ofOwnNamespace("uid");
    String gids = io.strata.union.view.IdMap.ofOwnNamespace("gid");
    List<String> out = new ArrayList<>(opts);
    if (uids != null) {
      out.add("uidmapping=" + uids);
    }
    if (gids != null) {
      out.add("gidmapping=" + gids);
    }
    return out;
  }

  /** This command line, as the next daemon runs it to take the mount over ({@link Handover}). */
  private List<String> recipe(String mountpoint) {
    List<String> r = new ArrayList<>(List.of("overlay"));
    for (String opt : options) {
      r.add("-o");
      r.add(opt);
    }
    r.add(mountpoint);
    return List.copyOf(r);
  }

  /**
   * The client's /dev/fuse, taken from it, when the client mounted it on the mountpoint in its
   * own namespaces (rootless podman's) for this daemon to serve; -1 otherwise.
   */
  private static int mountedByClient() throws java.io.IOException {
    io.strata.layers.base.Invocation inv = io.strata.layers.base.Invocation.current();
    String socket = inv.getenv(MOUNTED_FD);
    if (socket == null || !io.strata.layers.base.Invocation.isForClient()) {
      return -1;
    }
    return FuseMount.adopt(Path.of(socket));
  }

  /**
   * Set by the client for the daemon: the unix socket on which the client hands over the
   * /dev/fuse it mounted on the mountpoint in its own namespaces (rootless podman's, which the
   * daemon is not in).
   */
  public static final String MOUNTED_FD = "STRATA_MOUNTED_FUSE_SOCKET";

  /**
   * Mounts and serves in this thread (in the daemon: until the mount answers); {@code mounted}
   * is a /dev/fuse the client mounted (owned from here on), or -1.
   */
  private static int serve(OverlayOptions o, Path mp, int mounted, List<String> recipe,
      Handover.Takeover taking) throws Exception {
    UnionView view;
    try {
      view = UnionView.open(o.lowers(), o.upper(), o.work(), o.view());
    } catch (Exception e) {
      if (mounted >= 0) {
        FuseMount.closeDescriptor(mounted); // the mount then fails for its users at once
      }
      if (taking != null) {
        taking.abandon();
      }
      throw e;
    }
    FuseMount.Settings s = FuseMount.Settings.defaults("strata-overlay",
        o.transport() != null ? o.transport() : FuseMount.Transport.preferred())
        .withRing(o.ring() != null ? o.ring() : FuseMount.Transport.preferredRing());
    if (o.passthrough() != null) {
      s = s.withPassthrough(o.passthrough());
    }
    if (o.timeout() != null) {
      s = s.withTimeout(o.timeout());
    }
    if (mounted >= 0) {
      s = s.withMountedFd(mounted);
    }
    if (recipe != null) {
      s = s.withPlan(recipe, taking, null);
    }
    Foreground.serve(view, mp, s, () -> {});
    return 0;
  }
}
