/**
 * The Linux file calls strata makes, names as bytes and every call relative to a held directory
 * ({@code RawFs}, {@code Posix}), recursive removal ({@code Trees}), the mount table ({@code
 * Mounts}) and whose directories a process uses ({@code Places}: the system's for the host's
 * root, the user's otherwise). Uses only {@code base}.
 */
package io.strata.layers.fs;
