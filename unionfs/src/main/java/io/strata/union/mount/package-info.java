/**
 * The life of a mount: starting either transport and proving it answers ({@code FuseMount}),
 * background mount daemons, the lock per mountpoint, fuse-overlayfs's options, and the
 * hand-over of mounts from a stopping daemon to the next ({@code Handover}). Uses the
 * transports and {@code view}.
 */
package io.strata.union.mount;
