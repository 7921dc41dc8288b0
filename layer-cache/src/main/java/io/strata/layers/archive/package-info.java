/**
 * Image and layer formats: tar read, written and split (tar-split), layer extraction into a tree,
 * OCI image layouts, docker-archives, compression, image configs and media types, and the space
 * budget an extraction is charged against. Uses {@code fs} and {@code base}; knows no store.
 */
package io.strata.layers.archive;
