/**
 * The vocabulary every part of layer-cache speaks, using nothing of strata: digests, JSON
 * documents, text for people (names as bytes, numbers as typed), log lines, progress, and the
 * errors whose kinds are exit codes.
 */
package io.strata.layers.base;
