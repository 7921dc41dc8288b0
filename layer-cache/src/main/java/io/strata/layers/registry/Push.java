package io.strata.layers.registry;

import io.strata.layers.BlobInfoCache;
import io.strata.layers.ImageRecord;
import io.strata.layers.ImageWriter;
import io.strata.layers.LayerStore;
import io.strata.layers.archive.MediaTypes;
import io.strata.layers.base.Digest;
import io.strata.layers.base.Json;
import io.strata.layers.base.Progress;
import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;

/**
 * One push: every layer blob the target repository lacks is sent, then the config, then the
 * manifest. A layer is sent only when no blob the store knows for it ({@link BlobInfoCache}:
 * what it was pulled as, what was pushed of it before) is in the target repository or can be
 * mounted there from another repository of the registry; so the base layers of an image
 * committed on a pulled one are not sent again, and a second push compresses nothing. An image
 * that was pulled keeps its manifest where every original blob is reused, so pushing it back
 * gives the same manifest digest; otherwise layers are rebuilt from the store and
 * gzip-compressed, which gives the same blob for the same layer every time.
 */
public final class Push {
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
    Reference from = pulledFrom(store, image);
    List<JsonNode> original = originalLayers(pulled, image);
    int sent = 0;
    int present = 0;
    int mounted = 0;
    long bytes = 0;
    String here = target.registry() + "/" + repo;
    try (Registry r = new Registry(target.registry(), options)) {
      List<ImageWriter.Blob> layers = new ArrayList<>();
      boolean asPulled = original != null;
      for (int i = 0; i < image.diffIds().size(); i++) {
        Digest diffId = image.diffIds().get(i);
        String label = "layer " + (i + 1) + "/" + image.diffIds().size();
        List<BlobInfoCache.Blob> candidates = new ArrayList<>();
        if (original != null) {
          JsonNode o = original.get(i);
          candidates.add(new BlobInfoCache.Blob(Digest.parse(o.path("digest").asText()),
              o.path("size").asLong(), o.path("mediaType").asText(),
              from == null ? List.of() : List.of(from.registry() + "/" + from.repository())));
        }
        candidates.addAll(store.blobInfos().blobs(diffId));
        Reused reused = reuse(r, repo, target.registry(), candidates);
        if (reused != null) {
          BlobInfoCache.Blob b = reused.blob();
          if (reused.mountedFrom() != null) {
            mounted++;
            progress.message(label + " " + b.digest().shortHex() + ": mounted from "
                + reused.mountedFrom());
          } else {
            present++;
            progress.message(label + " " + b.digest().shortHex() + ": already in " + here);
          }
          asPulled &= original != null && b.digest().toString()
              .equals(original.get(i).path("digest").asText());
          layers.add(new ImageWriter.Blob(null, b.digest(), b.size(),
              asPulled ? b.mediaType() : MediaTypes.ociLayerType(b.mediaType())));
          store.blobInfos().record(diffId, b.digest(), b.size(), b.mediaType(), here);
          continue;
        }
        asPulled = false;
        ImageWriter.Blob b = writer.gzipLayer(diffId, i + 1, image.diffIds().size());
        try {
          if (r.hasBlob(repo, b.digest())) {
            present++;
            progress.message(label + " " + b.digest().shortHex() + ": already in " + here);
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
        store.blobInfos().record(diffId, b.digest(), b.size(), b.mediaType(), here);
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
        type = doc.path("mediaType").asText(MediaTypes.OCI_MANIFEST);
      } else {
        manifest = ImageWriter.manifest(config, layers);
        type = MediaTypes.OCI_MANIFEST;
      }
      Digest digest = r.putManifest(repo, target.manifestRef(), manifest, type);
      return new Result(target, digest, sent, present, mounted, bytes);
    }
  }

  /** Where an image was pulled from, or null (imported, committed, or not readable). */
  private static Reference pulledFrom(LayerStore store, ImageRecord image) {
    String f = store.pulledFrom(image);
    try {
      return f == null ? null : Reference.parse(f, Reference.DOCKER_HUB);
    } catch (IllegalArgumentException e) {
      return null;
    }
  }

  /** A blob the target repository has or was given: found there, or mounted from another. */
  private record Reused(BlobInfoCache.Blob blob, String mountedFrom) {}

  /**
   * Finds a known blob of a layer that the target repository has, or mounts one from another
   * repository of the same registry that holds it; null when none can be had without sending.
   * Candidates recorded in this very repository are asked first, then mounts, then the rest
   * by HEAD (a registry may hold a blob strata never saw there).
   */
  private static Reused reuse(Registry r, String repo, String registry,
      List<BlobInfoCache.Blob> candidates) throws IOException {
    String here = registry + "/" + repo;
    java.util.Set<Digest> asked = new java.util.HashSet<>();
    for (BlobInfoCache.Blob b : candidates) {
      if (b.locations().contains(here) && asked.add(b.digest()) && r.hasBlob(repo, b.digest())) {
        return new Reused(b, null);
      }
    }
    for (BlobInfoCache.Blob b : candidates) {
      for (String loc : b.locations()) {
        if (loc.startsWith(registry + "/") && !loc.equals(here)) {
          String fromRepo = loc.substring(registry.length() + 1);
          if (r.mountBlob(repo, b.digest(), fromRepo)) {
            return new Reused(b, fromRepo);
          }
        }
      }
    }
    for (BlobInfoCache.Blob b : candidates) {
      if (asked.add(b.digest()) && r.hasBlob(repo, b.digest())) {
        return new Reused(b, null);
      }
    }
    return null;
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
