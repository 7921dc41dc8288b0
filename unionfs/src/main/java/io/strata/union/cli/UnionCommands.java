package io.strata.union.cli;

import java.util.List;

/** The subcommands this module adds to the {@code strata} command line. */
public final class UnionCommands {
  private UnionCommands() {}

  public static List<Object> all() {
    return List.of(new MountCommand(), new UmountCommand(), new OverlayCommand());
  }
}
