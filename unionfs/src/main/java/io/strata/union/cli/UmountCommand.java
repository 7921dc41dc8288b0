package io.strata.union.cli;

import io.strata.layers.NotFoundException;
import io.strata.layers.cli.StoreOptions;
import io.strata.union.Mounts;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code strata umount}: unmounts, also when the daemon died. */
@Command(name = "umount", mixinStandardHelpOptions = true,
    description = {"Unmount a strata mount.",
        "Works also when its daemon died (\"Transport endpoint is not connected\")."})
public final class UmountCommand implements Callable<Integer> {
  @Mixin StoreOptions store;

  @Parameters(paramLabel = "DIR", description = "The mountpoint.")
  Path mountpoint;

  @Option(names = {"-l", "--lazy"}, description = "Detach now even if the mount is busy.")
  boolean lazy;

  @Override
  public Integer call() throws Exception {
    Path mp = mountpoint.toAbsolutePath().normalize();
    if (!Mounts.isFuseMountpoint(mp)) {
      throw new NotFoundException(mp + " is not a FUSE mount");
    }
    Mounts.unmount(mp, lazy);
    try {
      store.open().unpin(MountCommand.pinOf(mp));
    } catch (RuntimeException e) {
      // a plain `strata overlay` mount has no store; nothing to unpin
    }
    return 0;
  }
}
