package io.strata.cli;

import io.strata.layers.LayerStore;
import io.strata.layers.fs.RawFs;
import io.strata.layers.cli.Output;
import io.strata.layers.cli.StoreOptions;
import io.strata.union.view.UpperChanges;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code strata diff}: what a container or a mount changed, as {@code podman diff} shows it. */
@Command(name = "diff", mixinStandardHelpOptions = true,
    description = {"List what a container or a mount changed over its image.", "",
        "Each line is A (added), C (changed) or D (deleted) and a path, as podman diff prints."})
public final class DiffCommand implements Callable<Integer> {
  @Mixin StoreOptions store;

  @Parameters(paramLabel = "CONTAINER|MOUNTPOINT") String target;

  @Option(names = "--format", paramLabel = "FORMAT", description = "table (default) or json.")
  Output.Format format = Output.Format.table;

  @Override
  public Integer call() throws Exception {
    LayerStore s = store.open();
    ChangedTree t = ChangedTree.find(s, target);
    List<UpperChanges.Change> changes;
    try (UpperChanges u = t.open(s)) {
      changes = u.list();
    }
    if (format == Output.Format.json) {
      List<Map<String, String>> out = new ArrayList<>();
      for (UpperChanges.Change c : changes) {
        out.add(Map.of("kind", String.valueOf(c.kind()), "path", RawFs.display(c.path())));
      }
      Output.json(out);
    } else {
      StringBuilder sb = new StringBuilder();
      for (UpperChanges.Change c : changes) {
        sb.append(c).append('\n');
      }
      System.out.print(sb);
    }
    return 0;
  }
}
