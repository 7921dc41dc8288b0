/**
 * The union view as plain Java, with no FUSE in it: lookup across layers, markers (whiteouts,
 * opaque directories, redirects), merged listings, copy-up, open files, inode numbers, and an
 * upper read back as an OCI layer ({@code UpperChanges}). Uses layer-cache only.
 */
package io.strata.union.view;
