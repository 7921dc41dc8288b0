package io.strata.layers;

import io.strata.layers.base.Digest;
import java.util.List;

/**
 * An image in the store: its id (the digest of its config), the names that point at it, the
 * manifest it came with (null for a bare layer), its layers bottom first, and their ChainID.
 */
public record ImageRecord(
    Digest id,
    List<String> names,
    Digest manifestDigest,
    List<Digest> diffIds,
    Digest chainId,
    String source,
    String importedAt) {

  public ImageRecord {
    names = List.copyOf(names);
    diffIds = List.copyOf(diffIds);
  }

  public ImageRecord withNames(List<String> newNames) {
    return new ImageRecord(id, newNames, manifestDigest, diffIds, chainId, source, importedAt);
  }
}
