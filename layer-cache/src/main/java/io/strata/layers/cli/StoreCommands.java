package io.strata.layers.cli;

import java.util.List;

/** The subcommands this module adds to the {@code strata} command line. */
public final class StoreCommands {
  private StoreCommands() {}

  public static List<Object> all() {
    return List.of(new ImportCommand(), new ImagesCommand(), new LayersCommand(),
        new InspectCommand(), new RmiCommand(), new GcCommand(), new PullCommand(),
        new LoginCommand(), new PushCommand(), new SaveCommand(), new TagCommand());
  }
}
