package io.strata.layers.cli;

import io.strata.layers.LayerStore;
import java.nio.file.Path;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * The {@code --root} option every store command takes, and how the store is opened. It may be
 * given after the subcommand or, when the top command declares it too, before it
 * ({@code strata --root DIR images}).
 */
public final class StoreOptions {
  @Option(names = "--root", paramLabel = "DIR",
      description = "Store root (default: $STRATA_ROOT, else /var/lib/strata as root, else"
          + " $XDG_DATA_HOME/strata or ~/.local/share/strata).")
  Path root;

  @Spec(Spec.Target.MIXEE) CommandSpec mixee;

  /** Opens the store, cleaning up after an interrupted command; notes go to stderr. */
  public LayerStore open() {
    return LayerStore.open(rootPath(), Output::note);
  }

  public Path rootPath() {
    Path chosen = root;
    if (chosen == null && mixee != null) {
      OptionSpec top = mixee.root().findOption("--root");
      if (top != null && top.getValue() != null) {
        chosen = top.getValue();
      }
    }
    return LayerStore.rootFrom(chosen);
  }
}
