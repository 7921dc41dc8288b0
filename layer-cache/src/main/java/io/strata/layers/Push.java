package io.strata.layers;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;

/**
 * One push: every layer blob the target repository lacks is sent, then the config, then the
 * manifest. An image that was pulled keeps its manifest and blob digests where the target has
 * (or can mount) the original blobs, so pushing it back gives the same manifest digest; other
 * layers are rebuilt from the store and gzip-compressed, which gives the same blob for the same
 * layer every time, so a second push sends nothing.
 */
final class Push {
  /** What a push did. */
  record Result(Reference target, Digest manifestDigest, int blobsSent, int blobsPresent,
      int blobsMounted, long bytesSent) {}

  private final LayerStore store;
  private final ImageWriter writer;
  private final Registry.Options options;
  private final Progress progress;
  private final long chunk;

  Push(LayerStore store, ImageWriter writer, Registry.Options options, Progress progress,
      long chunk) {
    this.store = store;
    this.writer = writer;
    this.options = options;
    this.progress = progress;
    this.chunk = chunk;
  }

  Result run(ImageRecord image, Reference target) throws IOException {
    String repo = target.repository();
    byte[] config = store.config(image);
    byte[] pulled = store.pulledManifest(image);
    Reference from = store.pulledFrom(image);
    List<JsonNode> original = originalLayers(pulled, image);
    int sent = 0;
    int present = 0;
    int mounted = 0;
    long bytes = 0;
    try (Registry r = new Registry(target.registry(), options)) {
      List<ImageWriter.Blob> layers = new ArrayList<>();
      boolean asPulled = original != null;
      for (int i = 0; i < image.diffIds().size(); i++) {
        Digest diffId = image.diffIds().get(i);
        String label = "layer " + (i + 1) + "/" + image.diffIds().size();
        if (original != null) {
          JsonNode o = original.get(i);
          Digest d = Digest.parse(o.path("digest").asText());
          ImageWriter.Blob b = new ImageWriter.Blob(null, d, o.path("size").asLong(),
              o.path("mediaType").asText());
          if (r.hasBlob(repo, d)) {
            present++;
            layers.add(b);
            progress.message(label + " " + d.shortHex() + ": already in " + target.registry());
            continue;
          }
          if (from != null && from.registry().equals(target.registry())
              && r.mountBlob(repo, d, from.repository())) {
            mounted++;
            layers.add(b);
            progress.message(label + " " + d.shortHex() + ": mounted from " + from.repository());
            continue;
          }
        }
        asPulled = false;
        ImageWriter.Blob b = writer.gzipLayer(diffId);
        try {
          if (r.hasBlob(repo, b.digest())) {
            present++;
            progress.message(label + " " + b.digest().shortHex() + ": already in "
                + target.registry());
          } else {
            long start = System.nanoTime();
            r.uploadBlob(repo, b.digest(), b.file(), chunk,
                n -> progress.bytesSent(label, n, b.size()));
            sent++;
            bytes += b.size();
            progress.message(String.format(java.util.Locale.ROOT, "%s %s: sent %d bytes in %.1f s",
                label, b.digest().shortHex(), b.size(), (System.nanoTime() - start) / 1e9));
          }
        } finally {
          Files.deleteIfExists(b.file());
        }
        layers.add(new ImageWriter.Blob(null, b.digest(), b.size(), b.mediaType()));
      }
      Digest configDigest = Digest.of(config);
      if (r.hasBlob(repo, configDigest)) {
        present++;
      } else if (from != null && from.registry().equals(target.registry())
          && r.mountBlob(repo, configDigest, from.repository())) {
        mounted++;
      } else {
        java.nio.file.Path f = java.nio.file.Files.createTempFile(writer.scratch(), "config", "");
        try {
          Files.write(f, config);
          r.uploadBlob(repo, configDigest, f, 0, n -> { });
          sent++;
          bytes += config.length;
        } finally {
          Files.deleteIfExists(f);
        }
      }
      byte[] manifest;
      String type;
      if (asPulled) {
        manifest = pulled;
        JsonNode doc = Json.parse(pulled, "the pulled manifest");
        type = doc.path("mediaType").asText(Registry.OCI_MANIFEST);
      } else {
        manifest = ImageWriter.manifest(config, layers);
        type = Registry.OCI_MANIFEST;
      }
      Digest digest = r.putManifest(repo, target.manifestRef(), manifest, type);
      return new Result(target, digest, sent, present, mounted, bytes);
    }
  }

  /** The layer descriptors of the manifest an image was pulled with, if they fit it. */
  private static List<JsonNode> originalLayers(byte[] pulled, ImageRecord image) {
    if (pulled == null) {
      return null;
    }
    try {
      JsonNode doc = Json.parse(pulled, "the pulled manifest");
      if (!doc.path("config").path("digest").asText("").equals(image.id().toString())) {
        return null;
      }
      List<JsonNode> out = new ArrayList<>();
      doc.path("layers").forEach(out::add);
      return out.size() == image.diffIds().size() ? out : null;
    } catch (RuntimeException e) {
      return null;
    }
  }
}
