/**
 * The Linux file calls strata makes, names as bytes and every call relative to a held directory
 * ({@code RawFs}, {@code Posix}), recursive removal ({@code Trees}) and the mount table ({@code
 * Mounts}). Uses only {@code base}.
 */
package io.strata.layers.fs;
