package io.strata.layers.cli;

import io.strata.layers.LayerStore;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/** The {@code --root} option every store command takes, and how the store is opened. */
public final class StoreOptions {
  @Option(names = "--root", paramLabel = "DIR",
      description = "Store root (default: $STRATA_ROOT, else /var/lib/strata).")
  Path root;

  /** Opens the store, cleaning up after an interrupted command; notes go to stderr. */
  public LayerStore open() {
    return LayerStore.open(LayerStore.rootFrom(root), Output::note);
  }

  public Path rootPath() {
    return LayerStore.rootFrom(root);
  }
}
