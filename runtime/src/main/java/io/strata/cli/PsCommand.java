package io.strata.cli;

import io.strata.layers.cli.Output;
import io.strata.layers.cli.StoreOptions;
import io.strata.runtime.container.ContainerState;
import io.strata.runtime.container.Containers;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code strata ps}: running and stopped containers. */
@Command(name = "ps", mixinStandardHelpOptions = true, description = "List containers.")
public final class PsCommand implements Callable<Integer> {
  @Mixin StoreOptions store;

  @Option(names = "--format", paramLabel = "FORMAT", defaultValue = "table",
      description = "table or json (default: ${DEFAULT-VALUE}).")
  Output.Format format;

  @Option(names = "--no-trunc", description = "Show whole commands (cut at 40 characters).")
  boolean noTrunc;

  /** A command as a cell: its words, cut as podman cuts it unless asked not to. */
  static String command(List<String> argv, boolean whole) {
    String c = io.strata.layers.base.Text.printable(String.join(" ", argv));
    return whole || c.length() <= 40 ? c : c.substring(0, 39) + "…";
  }

  @Override
  public Integer call() throws Exception {
    List<ContainerState> all = new Containers(store.rootPath(), Output::note).list();
    if (format == Output.Format.json) {
      Output.json(all);
      return 0;
    }
    List<String[]> rows = new ArrayList<>();
    rows.add(new String[] {"NAME", "IMAGE", "STATUS", "COMMAND", "CREATED"});
    for (ContainerState s : all) {
      String status = s.status().equals(ContainerState.EXITED)
          ? "exited (" + s.exitCode() + ")" + (s.reason() == null ? "" : " " + s.reason())
          : s.status();
      rows.add(new String[] {s.name(), s.image(), status, command(s.command(), noTrunc),
          s.created()});
    }
    Output.table(rows);
    return 0;
  }
}
