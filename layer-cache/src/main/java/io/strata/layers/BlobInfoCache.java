package io.strata.layers;

import io.strata.layers.base.Digest;
import io.strata.layers.base.Json;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.function.Function;

/**
 * What the store knows of each layer's compressed forms, as containers/image's blob-info
 * cache does: per DiffID, the blobs (digest, size, media type) known to decompress to it, and
 * the registry repositories known to hold each one ({@code HOST/PATH}). Pull records the blobs
 * it fetched and where from; push records what it sent or found. Push reads it to reuse a blob
 * (HEAD it, or mount it from another repository of the same registry) instead of compressing
 * and sending the layer again.
 *
 * <p>Kept in {@code layers/HEX/blobs.json} beside the layer's record; rewritten atomically under
 * the store's meta lock. It is a cache: a blob it names may have gone from a registry since,
 * which push then finds (HEAD 404) and falls back to sending.
 */
public final class BlobInfoCache {
  /** One compressed form of a layer and the repositories known to hold it. */
  public record Blob(Digest digest, long size, String mediaType, List<String> locations) {
    public Blob {
      locations = locations == null ? List.of() : List.copyOf(locations);
    }
  }

  private static final int MAX_LOCATIONS = 32;
  private final Function<Digest, Path> layerDir;
  private final FileMutex lock;

  BlobInfoCache(Function<Digest, Path> layerDir, FileMutex lock) {
    this.layerDir = layerDir;
    this.lock = lock;
  }

  /** The known blobs of a layer, most recently recorded first; none for an unknown layer. */
  public List<Blob> blobs(Digest diffId) {
    Path f = layerDir.apply(diffId).resolve("blobs.json");
    if (!Files.isRegularFile(f)) {
      return List.of();
    }
    try {
      return List.of(Json.read(f, Blob[].class));
    } catch (IOException e) {
      return List.of(); // a damaged cache is an empty one: push then sends the layer
    }
  }

  /**
   * Records that {@code blob} decompresses to the layer {@code diffId} and (when
   * {@code location} is not null) that the repository {@code location} holds it. Nothing is
   * recorded for a layer the store does not hold.
   */
  public void record(Digest diffId, Digest blob, long size, String mediaType, String location)
      throws IOException {
    Path dir = layerDir.apply(diffId);
    if (!Files.isDirectory(dir)) {
      return;
    }
    try (FileMutex.Held held = lock.exclusive(line -> { })) {
      List<Blob> out = new ArrayList<>();
      Set<String> where = new LinkedHashSet<>();
      if (location != null) {
        where.add(location);
      }
      for (Blob b : blobs(diffId)) {
        if (b.digest().equals(blob)) {
          where.addAll(b.locations());
        } else {
          out.add(b);
        }
      }
      List<String> locs = new ArrayList<>(where);
      out.add(0, new Blob(blob, size, mediaType,
          locs.subList(0, Math.min(locs.size(), MAX_LOCATIONS))));
      Json.writeAtomically(dir.resolve("blobs.json"), out);
    }
  }
}
