package io.strata.layers.archive;

import io.strata.layers.base.Digest;
import java.io.IOException;
import java.io.InputStream;
import java.util.List;

/**
 * An image as read from its source, before anything is stored: what each layer blob claims to
 * be, the config (null for a bare layer, whose config the store writes), and the names it came
 * with.
 */
public record ImageSource(
    String description,
    List<LayerSource> layers,
    byte[] config,
    Digest configDigest,
    Digest manifestDigest,
    List<String> names) {

  /** Opens a blob once more; blobs are read once to import and may be read again to verify. */
  @FunctionalInterface
  public interface Opener {
    InputStream open() throws IOException;
  }

  /**
   * One layer blob. {@code blobDigest} and {@code size} are what the manifest declares (null and
   * -1 when nothing does); {@code diffId} is what the config declares (null for a bare layer).
   */
  public record LayerSource(String label, Digest blobDigest, long size, Digest diffId, Opener opener) {}
}
