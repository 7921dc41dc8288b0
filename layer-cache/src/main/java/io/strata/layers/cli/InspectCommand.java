package io.strata.layers.cli;

import com.fasterxml.jackson.databind.JsonNode;
import io.strata.layers.base.Digest;
import io.strata.layers.ImageRecord;
import io.strata.layers.base.Json;
import io.strata.layers.LayerRecord;
import io.strata.layers.LayerStore;
import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Parameters;

/** {@code strata inspect}: prints one image's record, config and layers as JSON. */
@Command(name = "inspect", mixinStandardHelpOptions = true,
    description = "Print an image's record, config and layers as JSON.")
public final class InspectCommand implements Callable<Integer> {
  @Mixin StoreOptions store;

  @Parameters(paramLabel = "IMAGE", description = "NAME[:TAG], image id or id prefix.")
  String image;

  @Override
  public Integer call() throws IOException {
    LayerStore s = store.open();
    ImageRecord r = s.resolve(image);
    Map<Digest, LayerRecord> byId = new LinkedHashMap<>();
    s.layers().forEach(l -> byId.put(l.diffId(), l));
    Map<String, Object> out = new LinkedHashMap<>();
    out.put("id", r.id().toString());
    out.put("names", r.names());
    out.put("manifestDigest", r.manifestDigest() == null ? null : r.manifestDigest().toString());
    out.put("chainId", r.chainId().toString());
    out.put("source", r.source());
    out.put("importedAt", r.importedAt());
    List<Map<String, Object>> layers = new ArrayList<>();
    List<Digest> prefix = new ArrayList<>();
    for (Digest d : r.diffIds()) {
      prefix.add(d);
      Map<String, Object> l = new LinkedHashMap<>();
      l.put("diffId", d.toString());
      l.put("chainId", Digest.chainId(prefix).toString());
      LayerRecord rec = byId.get(d);
      l.put("contentSize", rec == null ? null : rec.contentSize());
      l.put("path", s.layerTree(d).toString());
      layers.add(l);
    }
    out.put("layers", layers);
    JsonNode config = Json.MAPPER.readTree(s.config(r));
    out.put("config", config);
    Output.json(out);
    return 0;
  }
}
