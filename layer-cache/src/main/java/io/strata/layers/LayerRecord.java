package io.strata.layers;

import io.strata.layers.base.Digest;

/**
 * A stored layer: its DiffID, the size of its uncompressed tar, the bytes its files take, how
 * many tar entries it had, and when it was first imported.
 */
public record LayerRecord(Digest diffId, long tarSize, long contentSize, long entries,
    String importedAt) {}
