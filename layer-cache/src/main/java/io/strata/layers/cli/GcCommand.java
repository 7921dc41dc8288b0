package io.strata.layers.cli;

import io.strata.layers.base.Digest;
import io.strata.layers.LayerStore;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;

/** {@code strata gc}: removes layers that no image uses. */
@Command(name = "gc", mixinStandardHelpOptions = true,
    description = {"Remove layers that no image uses.",
        "Also removes unnamed images left by interrupted imports. Waits for running imports."})
public final class GcCommand implements Callable<Integer> {
  @Mixin StoreOptions store;

  @Override
  public Integer call() {
    LayerStore s = store.open();
    LayerStore.GcResult r = s.gc();
    for (Digest d : r.removedLayers()) {
      System.out.println("removed layer " + d);
    }
    System.out.printf("removed %d layers (%s) and %d unnamed images%n", r.removedLayers().size(),
        Output.size(r.freedBytes()), r.removedImages());
    // what was written through `strata mount` is the user's: kept, but said
    java.nio.file.Path mounts = s.root().resolve("mounts");
    try (var dirs = java.nio.file.Files.list(mounts)) {
      List<java.nio.file.Path> kept = dirs.toList();
      if (!kept.isEmpty()) {
        long bytes = 0;
        for (java.nio.file.Path d : kept) {
          bytes += io.strata.layers.fs.Trees.size(d);
        }
        Output.note("kept " + kept.size() + " upper" + (kept.size() == 1 ? "" : "s")
            + " of `strata mount` (" + Output.size(bytes) + "); `strata umount --rm DIR`"
            + " removes one");
      }
    } catch (java.io.IOException e) {
      // no mounts directory: nothing kept
    }
    return 0;
  }
}
