/**
 * The OCI distribution API: references, the HTTP client with its authentication and TLS,
 * credentials, pull into a store and push out of it ({@code Distribution}). Uses the store and the
 * packages below it.
 */
package io.strata.layers.registry;
