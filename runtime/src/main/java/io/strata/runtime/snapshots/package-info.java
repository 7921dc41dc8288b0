/**
 * containerd's snapshots API: the snapshot store, the unions it serves, and the gRPC service. Uses
 * unionfs and layer-cache; nothing of the containers package.
 */
package io.strata.runtime.snapshots;
