package io.strata.union.cli;

import io.strata.layers.base.Digest;
import io.strata.layers.ImageRecord;
import io.strata.layers.LayerStore;
import io.strata.layers.cli.StoreOptions;
import io.strata.union.mount.Background;
import io.strata.union.mount.FuseMount;
import io.strata.union.view.UnionView;
import io.strata.union.view.WhiteoutForm;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code strata mount}: an image from the store as a writable (or read-only) filesystem. */
@Command(name = "mount", mixinStandardHelpOptions = true,
    description = {"Mount an image from the store as a copy-on-write filesystem.",
        "Writes go to an upper directory: --upper/--work, or a fresh one under the store",
        "(kept after umount, so nothing written is lost). Returns once the mount answers."})
public final class MountCommand implements Callable<Integer> {
  @Mixin StoreOptions store;

  @Parameters(index = "0", paramLabel = "IMAGE", description = "NAME[:TAG] or image id.")
  String image;

  @Parameters(index = "1", paramLabel = "DIR", description = "The mountpoint (a directory).")
  Path mountpoint;

  @Option(names = "--upper", paramLabel = "DIR", description = "Upper (writable) directory.")
  Path upper;

  @Option(names = "--work", paramLabel = "DIR",
      description = "Work directory, on the upper's filesystem.")
  Path work;

  @Option(names = "--read-only", description = "Mount without an upper directory.")
  boolean readOnly;

  @Option(names = "--foreground", description = "Serve the mount in this process.")
  boolean foreground;

  @Option(names = "--whiteout", paramLabel = "FORM",
      description = "How deletions are recorded: device (char 0/0, as the kernel; default as root)"
          + " or file (.wh.NAME, as OCI layers).")
  WhiteoutForm whiteout;

  @Option(names = "--timeout", paramLabel = "SECONDS",
      description = "Kernel entry and attribute cache timeout (default: a day with strata's own"
          + " transport; names 60 s, attributes 0 with jnr).")
  Double timeout;

  @Option(names = "--transport", paramLabel = "T",
      description = "kernel: strata's own transport (default as root; cached, passthrough),"
          + " over FUSE io_uring where the kernel offers it, else /dev/fuse; uring: io_uring or"
          + " fail; dev: /dev/fuse only; jnr: jnr-fuse over libfuse2, the portable path.")
  String transport;

  @Option(names = "--no-passthrough",
      description = "Serve reads and writes in strata instead of passing open files through.")
  boolean noPassthrough;

  /**
   * Set by a user's daemon for a mount the client made on the host (and kept in the recipe of
   * the next daemon): the host's ids shown, the daemon's namespace's on disk, as
   * fuse-overlayfs's uidmapping ({@link io.strata.union.view.IdMap#ofOwnNamespace}).
   */
  @Option(names = "--uid-mapping", hidden = true, paramLabel = "C:H:N[:C:H:N...]")
  String uidMapping;

  @Option(names = "--gid-mapping", hidden = true, paramLabel = "C:H:N[:C:H:N...]")
  String gidMapping;

  /** The pin that keeps a mount's layers from gc, named after the mountpoint. */
  static String pinOf(Path mountpoint) {
    byte[] b = mountpoint.toAbsolutePath().normalize().toString().getBytes(StandardCharsets.UTF_8);
    return "mount-" + Digest.of(b).shortHex();
  }

  @Override
  public Integer call() throws Exception {
    if ((upper == null) != (work == null)) {
      throw new IllegalArgumentException("--upper and --work go together");
    }
    if (readOnly && upper != null) {
      throw new IllegalArgumentException("--read-only takes no --upper");
    }
    io.strata.union.mount.Handover.Takeover taking = io.strata.union.mount.Handover.taking();
    if (taking != null) {
      // the daemon before served this mount: nothing may look at the mountpoint (no one
      // answers it until this serves); its upper and work are in the command line
      LayerStore s = store.open();
      ImageRecord r = s.resolve(image);
      Path mp = mountpoint.toAbsolutePath().normalize();
      String pin = pinOf(mp);
      List<String> recipe = recipe(s, r, mp);
      Background.startHere(() -> serve(s, r, mp, pin, recipe, taking), mp,
          Duration.ofSeconds(60), false);
      return 0;
    }
    if (!Files.isDirectory(mountpoint)) {
      throw new IllegalArgumentException("mountpoint " + mountpoint + " is not a directory");
    }
    if (io.strata.layers.base.Invocation.current().clientMounter() != null) {
      // a user's daemon: the client mounts on the host, where the kernel speaks its ids
      uidMapping = io.strata.union.view.IdMap.ofOwnNamespace("uid");
      gidMapping = io.strata.union.view.IdMap.ofOwnNamespace("gid");
    }
    if (timeout != null && timeout < 0) {
      throw new IllegalArgumentException("--timeout must not be negative");
    }
    if (transport != null) {
      FuseMount.Transport.parse(transport); // a bad name is a usage error before anything runs
    }
    LayerStore s = store.open();
    ImageRecord r = s.resolve(image);
    Path mp = mountpoint.toAbsolutePath().normalize();
    String pin = pinOf(mp);
    if (io.strata.layers.fs.Mounts.isMountpoint(mp)) {
      throw new java.io.IOException(mp + " is already a mountpoint (`strata umount " + mp
          + "` first)");
    }
    Path made = null; // the upper this command made, removed again if the mount fails
    if (!readOnly && upper == null) {
      Path dir = s.root().resolve("mounts").resolve(pin + "-" + r.id().shortHex());
      if (!Files.exists(dir)) {
        made = dir;
      }
      upper = Files.createDirectories(dir.resolve("upper"));
      work = Files.createDirectories(dir.resolve("work"));
    }
    try {
      return mount(s, r, mp, pin);
    } catch (Exception e) {
      if (made != null) {
        // Only while no other strata mounts here: a winner of a race may be using it.
        try (io.strata.union.mount.MountLock l = io.strata.union.mount.MountLock.acquire(mp.toRealPath())) {
          if (!io.strata.layers.fs.Mounts.isMountpoint(mp) && isEmptyUpper(made)) {
            io.strata.layers.fs.Trees.deleteRecursively(made);
          }
        } catch (java.io.IOException busy) {
          // mounted or being mounted by another strata: its upper stays
        }
      }
      throw e;
    }
  }

  /** Whether DIR holds an upper and work that nothing was written to. */
  private static boolean isEmptyUpper(Path dir) throws java.io.IOException {
    try (var u = Files.list(dir.resolve("upper"))) {
      return u.findAny().isEmpty();
    } catch (java.nio.file.NoSuchFileException gone) {
      return true;
    }
  }

  private int mount(LayerStore s, ImageRecord r, Path mp, String pin) throws Exception {
    if (!foreground && Background.inThisProcess()) {
      // the daemon: served by a thread of its own, without a second parse of the command line
      List<String> recipe = recipe(s, r, mp);
      Background.startHere(() -> serve(s, r, mp, pin, recipe, null), mp, Duration.ofSeconds(60));
      System.out.println("mounted " + r.names().stream().findFirst().orElse(r.id().toString())
          + " on " + mp + (readOnly ? " (read-only)" : " (upper " + upper + ")"));
      return 0;
    }
    if (!foreground) {
      List<String> args = new ArrayList<>(List.of("mount", "--root", s.root().toString(),
          image, mp.toString(), "--foreground"));
      args.addAll(servingOptions());
      Background.startAndWait(args, mp, Background.logDir().resolve(pin + ".log"), Duration.ofSeconds(60));
      System.out.println("mounted " + r.names().stream().findFirst().orElse(r.id().toString())
          + " on " + mp + (readOnly ? " (read-only)" : " (upper " + upper + ")"));
      return 0;
    }
    return serve(s, r, mp, pin, null, null);
  }

  /**
   * This mount's command line as the next daemon runs it to take the mount over ({@link
   * io.strata.union.mount.Handover}): the image by id (a name may be moved meanwhile), the
   * upper and work this mount has.
   */
  private List<String> recipe(LayerStore s, ImageRecord r, Path mp) {
    List<String> args = new ArrayList<>(List.of("--root", s.root().toString(), "mount",
        r.id().toString()));
    args.addAll(servingOptions());
    args.add(mp.toString()); // last: the next daemon's mountpoint
    return List.copyOf(args);
  }

  /**
   * The options that say how this mount is served, for the command line that serves it in
   * another process (a background daemon, the next strata daemon); paths absolute.
   */
  private List<String> servingOptions() {
    List<String> args = new ArrayList<>();
    if (timeout != null) {
      args.addAll(List.of("--timeout", String.valueOf(timeout)));
    }
    if (transport != null) {
      args.addAll(List.of("--transport", transport));
    }
    if (noPassthrough) {
      args.add("--no-passthrough");
    }
    if (readOnly) {
      args.add("--read-only");
    } else {
      args.addAll(List.of("--upper", upper.toAbsolutePath().normalize().toString(), "--work",
          work.toAbsolutePath().normalize().toString()));
    }
    if (whiteout != null) {
      args.addAll(List.of("--whiteout", whiteout.name()));
    }
    if (uidMapping != null) {
      args.addAll(List.of("--uid-mapping", uidMapping));
    }
    if (gidMapping != null) {
      args.addAll(List.of("--gid-mapping", gidMapping));
    }
    return args;
  }

  /** Mounts and serves in this thread (in the daemon: until the mount answers). */
  private int serve(LayerStore s, ImageRecord r, Path mp, String pin, List<String> recipe,
      io.strata.union.mount.Handover.Takeover taking) throws Exception {
    List<Path> lowers = new ArrayList<>();
    List<Digest> ids = r.diffIds();
    for (int i = ids.size() - 1; i >= 0; i--) {
      lowers.add(s.layerTree(ids.get(i)));
    }
    UnionView.Options d = UnionView.Options.defaults();
    UnionView.Options o = new UnionView.Options(whiteout != null ? whiteout : d.whiteoutForm(),
        d.metacopy(), d.xattrs(), d.fsync(),
        uidMapping != null ? io.strata.union.view.IdMap.parse(uidMapping, "--uid-mapping")
            : d.uids(),
        gidMapping != null ? io.strata.union.view.IdMap.parse(gidMapping, "--gid-mapping")
            : d.gids(), false, d.cacheEntries(),
        d.redirectDir(), true); // the store's layers never change
    s.pin(pin, ids);
    MountRecords.write(s.root(), new MountRecords.Entry(mp.toString(), image, r.id().toString(),
        readOnly ? null : upper.toAbsolutePath().normalize().toString()));
    UnionView view;
    try {
      view = UnionView.open(lowers, readOnly ? null : upper, readOnly ? null : work, o);
    } catch (Exception e) {
      if (taking != null) {
        taking.abandon();
      }
      throw e;
    }
    FuseMount.Settings set = FuseMount.Settings.defaults("strata:" + image,
        transport == null ? FuseMount.Transport.preferred() : FuseMount.Transport.parse(transport))
        .withRing(transport == null ? FuseMount.Transport.preferredRing()
            : FuseMount.Transport.ringOf(transport));
    if (noPassthrough) {
      set = set.withPassthrough(false);
    }
    if (timeout != null) {
      set = set.withTimeout(timeout);
    }
    if (recipe != null) {
      // handed over: the layers stay pinned while the holder keeps the mount (this process's
      // pin ends with it), until the next daemon pins them as its own
      set = set.withPlan(recipe, taking, holder -> s.pin(pin, ids, holder));
    }
    try {
      Foreground.serve(view, mp, set, () -> s.unpin(pin));
    } catch (Exception e) {
      s.unpin(pin);
      throw e;
    }
    return 0;
  }
}
