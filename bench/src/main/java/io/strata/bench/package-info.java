/** Benchmarks of strata's hot path and of strata beside its peers (issue 5; skeleton so far). */
package io.strata.bench;
