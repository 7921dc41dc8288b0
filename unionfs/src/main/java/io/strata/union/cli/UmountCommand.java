package io.strata.union.cli;

import io.strata.layers.LayerStore;
import io.strata.layers.base.NotFoundException;
import io.strata.layers.fs.Trees;
import io.strata.layers.cli.Output;
import io.strata.layers.cli.StoreOptions;
import io.strata.layers.fs.Mounts;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code strata umount}: unmounts, also when the daemon died; with --rm, forgets the writes. */
@Command(name = "umount", mixinStandardHelpOptions = true,
    description = {"Unmount a strata mount.",
        "",
        "Works also when its daemon died (\"Transport endpoint is not connected\"). What was"
            + " written through a `strata mount` without --upper stays in the store (the next"
            + " mount of that image there shows it again, and diff and commit read it) until"
            + " --rm removes it, also after the unmount."})
public final class UmountCommand implements Callable<Integer> {
  @Mixin StoreOptions store;

  @Parameters(paramLabel = "DIR", description = "The mountpoint.")
  Path mountpoint;

  @Option(names = {"-l", "--lazy"}, description = "Detach now even if the mount is busy.")
  boolean lazy;

  @Option(names = "--rm",
      description = "Also remove what was written through it (the upper strata made for it;"
          + " one given with --upper stays) and its record.")
  boolean remove;

  @Override
  public Integer call() throws Exception {
    Path mp = mountpoint.toAbsolutePath().normalize();
    io.strata.layers.base.Invocation.ClientMounter client =
        io.strata.layers.base.Invocation.current().clientMounter();
    boolean mounted;
    if (client != null) {
      // a user's daemon: the mount is the host's, where the client is (it mounted it too)
      mounted = client.unmount(mp, lazy);
      if (!mounted && !remove) {
        throw new NotFoundException(mp + " is not a FUSE mount");
      }
    } else {
      mounted = Mounts.isFuseMountpoint(mp);
      if (!mounted && !remove) {
        throw new NotFoundException(mp + " is not a FUSE mount");
      }
      if (mounted) {
        Mounts.unmount(mp, lazy);
      }
    }
    LayerStore s;
    if (!remove && !java.nio.file.Files.isDirectory(store.rootPath().resolve("pins"))) {
      return 0; // no store with pins there (a plain `strata overlay` mount): do not make one
    }
    try {
      s = store.open();
      s.unpin(MountCommand.pinOf(mp));
    } catch (RuntimeException e) {
      if (remove) {
        throw e;
      }
      return 0; // a plain `strata overlay` mount has no store; nothing to unpin
    }
    if (remove) {
      forget(s, mp, mounted);
    }
    return 0;
  }

  /** Removes the upper strata made for the mount at {@code mp} and the mount's record. */
  private static void forget(LayerStore s, Path mp, boolean wasMounted) throws Exception {
    MountRecords.Entry e = MountRecords.read(s.root(), mp);
    if (e == null) {
      if (!wasMounted) {
        throw new NotFoundException(mp + " is neither mounted nor a `strata mount` of the store "
            + s.root());
      }
      return;
    }
    Path mounts = s.root().resolve("mounts");
    if (e.upper() != null) {
      Path dir = Path.of(e.upper()).getParent();
      if (dir != null && mounts.equals(dir.getParent())) {
        long bytes = Trees.size(dir);
        Trees.deleteRecursively(dir);
        Output.note("removed what was written through " + mp + " (" + Output.size(bytes) + ")");
      } else {
        Output.note("kept " + e.upper() + ": it was given with --upper");
      }
    }
    Files.deleteIfExists(MountRecords.fileOf(s.root(), mp));
  }
}
