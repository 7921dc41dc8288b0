/**
 * The store of read-only layers named by DiffID and the images made of them (layer-cache's API):
 * import, verify, publish by rename, records, names, pins, gc, locks, the store's directory modes,
 * writing images out, and what is known of each layer's compressed blobs. Uses {@code archive},
 * {@code fs} and {@code base}; knows no registry.
 */
package io.strata.layers;
