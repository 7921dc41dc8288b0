package io.strata.layers.cli;

import io.strata.layers.base.Digest;
import io.strata.layers.ImageRecord;
import io.strata.layers.LayerRecord;
import io.strata.layers.LayerStore;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code strata layers}: lists stored layers and which images share each. */
@Command(name = "layers", mixinStandardHelpOptions = true,
    description = "List stored layers, each stored once, with the images that use it.")
public final class LayersCommand implements Callable<Integer> {
  @Mixin StoreOptions store;

  @Option(names = "--format", paramLabel = "FORMAT", defaultValue = "table",
      description = "table or json (default: ${DEFAULT-VALUE}).")
  Output.Format format;

  @Override
  public Integer call() {
    LayerStore s = store.open();
    Map<Digest, List<ImageRecord>> usage = s.layerUsage();
    Map<Digest, List<String>> pins = s.pinsByLayer();
    List<LayerRecord> layers = s.layers();
    if (format == Output.Format.json) {
      List<Map<String, Object>> out = new ArrayList<>();
      for (LayerRecord l : layers) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("diffId", l.diffId().toString());
        m.put("tarSize", l.tarSize());
        m.put("contentSize", l.contentSize());
        m.put("entries", l.entries());
        m.put("usedBy", usedBy(usage.getOrDefault(l.diffId(), List.of())));
        m.put("heldBy", heldBy(pins.getOrDefault(l.diffId(), List.of())));
        m.put("path", s.layerTree(l.diffId()).toString());
        out.add(m);
      }
      Output.json(out);
      return 0;
    }
    List<String[]> rows = new ArrayList<>();
    rows.add(new String[] {"DIFF ID", "SIZE", "ENTRIES", "IMAGES", "USED BY"});
    int snapshotLayers = 0;
    long stored = 0;
    long unshared = 0;
    for (LayerRecord l : layers) {
      List<ImageRecord> users = usage.getOrDefault(l.diffId(), List.of());
      stored += l.contentSize();
      unshared += l.contentSize() * Math.max(1, users.size());
      List<String> by = new ArrayList<>(usedBy(users));
      List<String> held = heldBy(pins.getOrDefault(l.diffId(), List.of()));
      by.addAll(held);
      if (held.contains(CONTAINERD)) {
        snapshotLayers++;
      }
      rows.add(new String[] {l.diffId().shortHex(), Output.size(l.contentSize()),
          String.valueOf(l.entries()), String.valueOf(users.size()),
          by.isEmpty() ? "(unused; `strata gc` removes it)" : String.join(", ", by)});
    }
    Output.table(rows);
    System.out.printf("%d layers, %s stored; %s if each image kept its own copy%n",
        layers.size(), Output.size(stored), Output.size(unshared));
    if (snapshotLayers > 0) {
      System.out.printf("%d of them are containerd's snapshots too (strata's snapshotter), stored"
          + " once for both%n", snapshotLayers);
    }
    return 0;
  }

  private static final String CONTAINERD = "containerd snapshots";

  /** What holds a layer besides images: containerd's snapshots, mounts and containers. */
  private static List<String> heldBy(List<String> owners) {
    List<String> out = new ArrayList<>();
    for (String o : owners) {
      String what = o.startsWith("snapshotter-") ? CONTAINERD : o;
      if (!out.contains(what)) {
        out.add(what);
      }
    }
    return out;
  }

  private static List<String> usedBy(List<ImageRecord> users) {
    List<String> out = new ArrayList<>();
    for (ImageRecord r : users) {
      out.add(r.names().isEmpty() ? r.id().shortHex() : r.names().get(0));
    }
    return out;
  }
}
