/**
 * The command-line commands of unionfs: mount, umount, overlay (and strata-overlay). Uses {@code
 * mount} and below.
 */
package io.strata.union.cli;
