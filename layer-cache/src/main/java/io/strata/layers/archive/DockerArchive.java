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
 * Reads a docker-archive ({@code docker save}, {@code skopeo copy … docker-archive:}): its
 * {@code manifest.json} names a config file and layer tars for each image. A member named by
 * its digest ({@code blobs/sha256/HEX} of docker 25+, {@code sha256:HEX} and {@code HEX.tar.gz}
 * of go-containerregistry's crane) has that digest checked too.
 */
public final class DockerArchive {
  private DockerArchive() {}

  public static ImageSource read(Archive a, String wantedRef) throws IOException {
    String what = a.describe() + ": manifest.json";
    JsonNode manifest = Json.parse(a.readDocument("manifest.json", "manifest.json"), what);
    if (!manifest.isArray() || manifest.isEmpty()) {
      throw new BadInputException(what + ": expected a non-empty array");
    }
    JsonNode chosen = null;
    if (manifest.size() == 1) {
      chosen = manifest.get(0);
    } else {
      List<String> all = new ArrayList<>();
      for (JsonNode m : manifest) {
        for (JsonNode tag : m.path("RepoTags")) {
          all.add(tag.asText());
          if (wantedRef != null && tag.asText().equals(wantedRef)) {
            chosen = m;
          }
        }
      }
      if (chosen == null) {
        throw new BadInputException(what + ": holds " + manifest.size()
            + " images; pick one with --ref (one of " + Text.clip(all.toString()) + ")");
      }
    }
    String configPath = Json.text(chosen, "Config", what);
    byte[] config = a.readDocument(configPath, "config");
    Digest configDigest = Digest.of(config);
    Digest named = digestInName(configPath);
    if (named != null && !named.equals(configDigest)) {
      throw new BadInputException(a.describe() + ": config '" + configPath
          + "' digest mismatch: got " + configDigest);
    }
    List<Digest> diffIds = ImageConfig.diffIds(config, a.describe() + ": config " + configPath);
    JsonNode layers = chosen.get("Layers");
    if (layers == null || !layers.isArray()) {
      throw new BadInputException(what + ": no Layers array");
    }
    if (layers.size() != diffIds.size()) {
      throw new BadInputException(what + ": " + layers.size() + " layers but the config lists "
          + diffIds.size() + " diff_ids");
    }
    List<ImageSource.LayerSource> out = new ArrayList<>();
    for (int i = 0; i < layers.size(); i++) {
      String path = layers.get(i).asText();
      if (!a.exists(path)) {
        throw new BadInputException(a.describe() + ": layer " + (i + 1) + " '" + path
            + "' is missing");
      }
      out.add(new ImageSource.LayerSource("layer " + (i + 1) + " (" + path + ")",
          digestInName(path), a.size(path), diffIds.get(i), () -> a.open(path)));
    }
    List<String> names = new ArrayList<>();
    for (JsonNode tag : chosen.path("RepoTags")) {
      names.add(tag.asText());
    }
    if (wantedRef != null && names.contains(wantedRef)) {
      names = List.of(wantedRef);
    }
    return new ImageSource(a.describe(), out, config, configDigest, null, names);
  }

  /** The digest a content-addressed member name carries, or null for a legacy name. */
  private static Digest digestInName(String path) {
    String p = path.startsWith("./") ? path.substring(2) : path;
    if (p.startsWith("blobs/sha256/")) {
      String hex = p.substring("blobs/sha256/".length());
      if (!hex.matches("[0-9a-f]{64}")) {
        throw new BadInputException("layer path '" + path + "' is not a sha256 blob name");
      }
      return new Digest(hex);
    }
    // docker: HEX.json configs; go-containerregistry (crane): sha256:HEX configs and
    // HEX.tar.gz layers, each named by the digest of its bytes.
    java.util.regex.Matcher m = java.util.regex.Pattern
        .compile("(?:sha256:)?([0-9a-f]{64})(?:\\.json|\\.tar\\.gz)?").matcher(p);
    if (m.matches() && !p.matches("[0-9a-f]{64}")) {
      return new Digest(m.group(1));
    }
    return null;
  }
}
