/**
 * The side-by-side benchmark: the same workloads on strata, fuse-overlayfs, kernel overlayfs and a
 * plain directory, and its report.
 */
package io.strata.bench.side;
