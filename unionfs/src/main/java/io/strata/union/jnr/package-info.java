/**
 * The jnr-fuse transport: libfuse2's path API mapped onto the view, names kept as bytes ({@code
 * RawCallbacks}). Uses {@code view}; nothing of the other transport.
 */
package io.strata.union.jnr;
