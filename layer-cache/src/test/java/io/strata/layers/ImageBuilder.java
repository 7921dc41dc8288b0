package io.strata.layers;

import io.strata.layers.base.Digest;
import io.strata.layers.base.Json;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * Writes OCI image layouts, oci-archives and docker-archives from layer tars, with correct
 * digests unless a test asks for a broken one.
 */
public final class ImageBuilder {
  private final List<byte[]> layerBlobs = new ArrayList<>();
  private final List<byte[]> layerTars = new ArrayList<>();
  private Consumer<ObjectNode> configTweak = c -> {};
  private Consumer<ObjectNode> manifestTweak = m -> {};
  private String refName = "test:1";

  public static ImageBuilder image() {
    return new ImageBuilder();
  }

  /** Adds a layer stored gzip-compressed, as registries do. */
  public ImageBuilder layer(TarBuilder tar) {
    byte[] plain = tar.bytes();
    layerTars.add(plain);
    layerBlobs.add(TarBuilder.gzip(plain));
    return this;
  }

  ImageBuilder config(Consumer<ObjectNode> tweak) {
    this.configTweak = tweak;
    return this;
  }

  ImageBuilder manifest(Consumer<ObjectNode> tweak) {
    this.manifestTweak = tweak;
    return this;
  }

  public ImageBuilder ref(String name) {
    this.refName = name;
    return this;
  }

  List<Digest> diffIds() {
    List<Digest> out = new ArrayList<>();
    layerTars.forEach(t -> out.add(Digest.of(t)));
    return out;
  }

  byte[] configBytes() throws IOException {
    ObjectNode c = Json.MAPPER.createObjectNode();
    c.put("architecture", "amd64");
    c.put("os", "linux");
    c.putObject("config").putArray("Cmd").add("/bin/sh");
    ObjectNode rootfs = c.putObject("rootfs");
    rootfs.put("type", "layers");
    ArrayNode ids = rootfs.putArray("diff_ids");
    diffIds().forEach(d -> ids.add(d.toString()));
    configTweak.accept(c);
    return Json.MAPPER.writeValueAsBytes(c);
  }

  /** Writes an OCI image layout directory and returns it. */
  public Path ociLayout(Path dir) throws IOException {
    Path blobs = dir.resolve("blobs/sha256");
    Files.createDirectories(blobs);
    Files.writeString(dir.resolve("oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}");
    byte[] config = configBytes();
    Files.write(blobs.resolve(Digest.of(config).hex()), config);
    ObjectNode m = Json.MAPPER.createObjectNode();
    m.put("schemaVersion", 2);
    m.put("mediaType", "application/vnd.oci.image.manifest.v1+json");
    ObjectNode cd = m.putObject("config");
    cd.put("mediaType", "application/vnd.oci.image.config.v1+json");
    cd.put("digest", Digest.of(config).toString());
    cd.put("size", config.length);
    ArrayNode layers = m.putArray("layers");
    for (byte[] blob : layerBlobs) {
      Files.write(blobs.resolve(Digest.of(blob).hex()), blob);
      ObjectNode l = layers.addObject();
      l.put("mediaType", "application/vnd.oci.image.layer.v1.tar+gzip");
      l.put("digest", Digest.of(blob).toString());
      l.put("size", blob.length);
    }
    manifestTweak.accept(m);
    byte[] manifest = Json.MAPPER.writeValueAsBytes(m);
    Files.write(blobs.resolve(Digest.of(manifest).hex()), manifest);
    ObjectNode index = Json.MAPPER.createObjectNode();
    index.put("schemaVersion", 2);
    ObjectNode d = index.putArray("manifests").addObject();
    d.put("mediaType", "application/vnd.oci.image.manifest.v1+json");
    d.put("digest", Digest.of(manifest).toString());
    d.put("size", manifest.length);
    if (refName != null) {
      d.putObject("annotations").put("org.opencontainers.image.ref.name", refName);
    }
    Files.write(dir.resolve("index.json"), Json.MAPPER.writeValueAsBytes(index));
    return dir;
  }

  /** Writes a legacy docker-archive ({@code docker save} before v25) and returns it. */
  Path dockerArchive(Path file, String repoTag) throws IOException {
    TarBuilder tar = TarBuilder.layer();
    byte[] config = configBytes();
    String configName = Digest.of(config).hex() + ".json";
    tar.file(configName, config, 0644, e -> {});
    StringBuilder layers = new StringBuilder();
    for (int i = 0; i < layerTars.size(); i++) {
      String id = Digest.of(("layer" + i).getBytes(StandardCharsets.UTF_8)).hex();
      tar.dir(id);
      tar.file(id + "/VERSION", "1.0");
      tar.file(id + "/layer.tar", layerTars.get(i), 0644, e -> {});
      layers.append(i == 0 ? "" : ",").append('"').append(id).append("/layer.tar\"");
    }
    String manifest = "[{\"Config\":\"" + configName + "\",\"RepoTags\":[\"" + repoTag
        + "\"],\"Layers\":[" + layers + "]}]";
    tar.file("manifest.json", manifest);
    return tar.writeTo(file);
  }
}
