package io.strata.layers.archive;

import io.strata.layers.base.BadInputException;
import io.strata.layers.base.Digest;
import io.strata.layers.base.Json;
import io.strata.layers.base.Text;
import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/**
 * Reads an OCI image layout (a directory or an oci-archive tar): {@code oci-layout},
 * {@code index.json}, then the manifest, config and layer blobs it names. Nested indexes are
 * followed to the manifest for this machine's platform.
 */
public final class OciLayout {
  public static final String REF_NAME = "org.opencontainers.image.ref.name";

  private OciLayout() {}

  public static ImageSource read(Archive a, String wantedRef) throws IOException {
    String what = a.describe();
    if (!a.exists("oci-layout")) {
      throw new BadInputException(what + ": not an OCI image layout (no oci-layout file)");
    }
    JsonNode layout = Json.parse(a.readDocument("oci-layout", "oci-layout"), what + ": oci-layout");
    String version = Json.text(layout, "imageLayoutVersion", what + ": oci-layout");
    if (!version.startsWith("1.")) {
      throw new BadInputException(what + ": unsupported imageLayoutVersion " + version);
    }
    JsonNode index = Json.parse(a.readDocument("index.json", "index"), what + ": index.json");
    JsonNode chosen = choose(a, index, wantedRef, what + ": index.json", 0);
    List<String> names = new ArrayList<>();
    JsonNode ann = chosen.path("annotations").path(REF_NAME);
    if (ann.isTextual()) {
      names.add(ann.asText());
    }
    Digest manifestDigest = Json.digest(chosen, "digest", what + ": manifest descriptor");
    byte[] manifest = blob(a, manifestDigest, Json.size(chosen, what + ": manifest descriptor"), "manifest");
    return fromManifest(a, manifest, manifestDigest, names);
  }

  /** Reads a manifest (OCI or Docker schema 2) whose blobs live in {@code a}. */
  static ImageSource fromManifest(Archive a, byte[] manifestBytes, Digest manifestDigest,
      List<String> names) throws IOException {
    String what = a.describe() + ": manifest " + manifestDigest;
    JsonNode manifest = Json.parse(manifestBytes, what);
    JsonNode configDesc = manifest.get("config");
    if (configDesc == null || !configDesc.isObject()) {
      throw new BadInputException(what + ": no config descriptor");
    }
    Digest configDigest = Json.digest(configDesc, "digest", what + ": config");
    byte[] config = blob(a, configDigest, Json.size(configDesc, what + ": config descriptor"), "config");
    List<Digest> diffIds = ImageConfig.diffIds(config, a.describe() + ": config " + configDigest);
    JsonNode layers = manifest.get("layers");
    if (layers == null || !layers.isArray()) {
      throw new BadInputException(what + ": no layers array");
    }
    if (layers.size() != diffIds.size()) {
      throw new BadInputException(what + ": " + layers.size() + " layers but the config lists "
          + diffIds.size() + " diff_ids");
    }
    List<ImageSource.LayerSource> out = new ArrayList<>();
    for (int i = 0; i < layers.size(); i++) {
      JsonNode l = layers.get(i);
      Digest d = Json.digest(l, "digest", what + ": layer " + (i + 1));
      long size = Json.size(l, what + ": layer " + (i + 1));
      String path = blobPath(d);
      if (!a.exists(path)) {
        throw new BadInputException(a.describe() + ": layer " + (i + 1) + " blob " + d
            + " is missing");
      }
      out.add(new ImageSource.LayerSource("layer " + (i + 1) + " (" + d.shortHex() + ")",
          d, size, diffIds.get(i), () -> a.open(path)));
    }
    return new ImageSource(a.describe(), out, config, configDigest, manifestDigest, names);
  }

  private static JsonNode choose(Archive a, JsonNode index, String wantedRef, String what,
      int depth) throws IOException {
    if (depth > 4) {
      throw new BadInputException(what + ": indexes nested too deeply");
    }
    JsonNode manifests = index.get("manifests");
    if (manifests == null || !manifests.isArray() || manifests.isEmpty()) {
      throw new BadInputException(what + ": no manifests");
    }
    List<JsonNode> candidates = new ArrayList<>();
    for (JsonNode m : manifests) {
      String ref = m.path("annotations").path(REF_NAME).asText(null);
      if (wantedRef != null && depth == 0 && ref != null && !matchesRef(ref, wantedRef)) {
        continue;
      }
      String os = m.path("platform").path("os").asText("linux");
      String arch = m.path("platform").path("architecture").asText(ImageConfig.goArch());
      if (os.equals("linux") && arch.equals(ImageConfig.goArch())) {
        candidates.add(m);
      }
    }
    if (candidates.isEmpty()) {
      throw new BadInputException(what + ": no manifest for linux/" + ImageConfig.goArch()
          + (wantedRef != null ? " named " + wantedRef : ""));
    }
    if (candidates.size() > 1) {
      List<String> refs = new ArrayList<>();
      for (JsonNode c : candidates) {
        refs.add(c.path("annotations").path(REF_NAME).asText(c.path("digest").asText()));
      }
      throw new BadInputException(what + ": holds " + candidates.size()
          + " images; pick one with --ref (one of " + Text.clip(refs.toString()) + ")");
    }
    JsonNode chosen = candidates.get(0);
    String type = chosen.path("mediaType").asText("");
    if (type.equals(MediaTypes.OCI_INDEX) || type.equals(MediaTypes.DOCKER_LIST)) {
      Digest d = Json.digest(chosen, "digest", what);
      JsonNode nested = Json.parse(blob(a, d, Json.size(chosen, what), "index"),
          what + " -> " + d);
      JsonNode inner = choose(a, nested, wantedRef, what + " -> " + d, depth + 1);
      if (!inner.has("annotations") && chosen.has("annotations")) {
        ((com.fasterxml.jackson.databind.node.ObjectNode) inner).set("annotations",
            chosen.get("annotations"));
      }
      return inner;
    }
    return chosen;
  }

  private static boolean matchesRef(String ref, String wanted) {
    return ref.equals(wanted) || wanted.endsWith(":" + ref);
  }

  static String blobPath(Digest d) {
    return "blobs/sha256/" + d.hex();
  }

  /** Reads a small blob and checks its size and digest against its descriptor. */
  static byte[] blob(Archive a, Digest d, long declaredSize, String what) throws IOException {
    String path = blobPath(d);
    if (!a.exists(path)) {
      throw new BadInputException(a.describe() + ": " + what + " blob " + d + " is missing");
    }
    byte[] bytes = a.readDocument(path, what);
    if (declaredSize >= 0 && bytes.length != declaredSize) {
      throw new BadInputException(a.describe() + ": " + what + " blob " + d + " is "
          + bytes.length + " bytes, the descriptor says " + declaredSize);
    }
    Digest actual = Digest.of(bytes);
    if (!actual.equals(d)) {
      throw new BadInputException(a.describe() + ": " + what + " blob digest mismatch: expected "
          + d + ", got " + actual);
    }
    return bytes;
  }
}
