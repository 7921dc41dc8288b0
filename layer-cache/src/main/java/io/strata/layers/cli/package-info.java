/**
 * The command-line commands of layer-cache (import, images, layers, inspect, rmi, gc, pull, push,
 * save, tag, login) and what every command shares: store options, output, terminal progress. Uses
 * every package of layer-cache.
 */
package io.strata.layers.cli;
