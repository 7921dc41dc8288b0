package io.strata.layers.cli;

import io.strata.layers.ImageRecord;
import io.strata.layers.LayerRecord;
import io.strata.layers.LayerStore;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.function.Function;
import java.util.stream.Collectors;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code strata images}: lists the images in the store. */
@Command(name = "images", mixinStandardHelpOptions = true, description = "List images.")
public final class ImagesCommand implements Callable<Integer> {
  @Mixin StoreOptions store;

  @Option(names = "--format", paramLabel = "FORMAT", defaultValue = "table",
      description = "table or json (default: ${DEFAULT-VALUE}).")
  Output.Format format;

  @Override
  public Integer call() {
    LayerStore s = store.open();
    List<ImageRecord> images = s.images();
    Map<io.strata.layers.base.Digest, LayerRecord> layers = s.layers().stream()
        .collect(Collectors.toMap(LayerRecord::diffId, Function.identity()));
    if (format == Output.Format.json) {
      List<Map<String, Object>> out = new ArrayList<>();
      for (ImageRecord r : images) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("id", r.id().toString());
        m.put("names", r.names());
        m.put("layers", r.diffIds().size());
        m.put("size", size(r, layers));
        m.put("chainId", r.chainId().toString());
        m.put("importedAt", r.importedAt());
        out.add(m);
      }
      Output.json(out);
      return 0;
    }
    List<String[]> rows = new ArrayList<>();
    rows.add(new String[] {"NAME", "IMAGE ID", "LAYERS", "SIZE", "IMPORTED"});
    for (ImageRecord r : images) {
      List<String> names = r.names().isEmpty() ? List.of("<none>") : r.names();
      for (String n : names) {
        rows.add(new String[] {n, r.id().shortHex(), String.valueOf(r.diffIds().size()),
            Output.size(size(r, layers)), r.importedAt()});
      }
    }
    Output.table(rows);
    return 0;
  }

  static long size(ImageRecord r, Map<io.strata.layers.base.Digest, LayerRecord> layers) {
    long total = 0;
    for (io.strata.layers.base.Digest d : new java.util.LinkedHashSet<>(r.diffIds())) {
      LayerRecord l = layers.get(d);
      total += l == null ? 0 : l.contentSize();
    }
    return total;
  }
}
