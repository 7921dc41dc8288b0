/**
 * The life of a mount: starting either transport and proving it answers ({@code FuseMount}),
 * background mount daemons, the lock per mountpoint, and fuse-overlayfs's options. Uses the
 * transports and {@code view}.
 */
package io.strata.union.mount;
