/**
 * The {@code strata} command line: gathers every module's commands, adds run, ps, kill, rm, diff,
 * commit, snapshotter and version, and maps failures onto exit codes. The top of the reactor but
 * for the benchmarks.
 */
package io.strata.cli;
