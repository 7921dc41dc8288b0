package io.strata.layers.cli;

import io.strata.layers.LayerStore;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Parameters;

/** {@code strata rmi}: removes image names, and images left without one. */
@Command(name = "rmi", mixinStandardHelpOptions = true,
    description = {"Remove images.",
        "A name removes that name (the image goes with its last one); an id removes the",
        "image and all its names. Layers stay until `strata gc`."})
public final class RmiCommand implements Callable<Integer> {
  @Mixin StoreOptions store;

  @Parameters(paramLabel = "IMAGE", arity = "1..*", description = "NAME[:TAG], id or id prefix.")
  List<String> images;

  @Override
  public Integer call() {
    LayerStore s = store.open();
    for (String ref : images) {
      for (String removed : s.removeImage(ref)) {
        System.out.println((removed.startsWith("sha256:") ? "deleted: " : "untagged: ") + removed);
      }
    }
    return 0;
  }
}
