/** JMH benchmarks of the hot path, through the view itself (no FUSE). */
package io.strata.bench;
