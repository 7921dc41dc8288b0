package io.strata.bench.side;

/** How big the benchmark's images and workloads are. */
record Sizes(int treeFiles, int bigDirEntries, long bigFileBytes, int repoFiles, int tarFiles,
    int smallFiles, int randomReads, int scaleFiles) {
  static final Sizes FULL = new Sizes(100_000, 10_000, 2L << 30, 20_000, 20_000, 5_000, 5_000, 1_000);
  static final Sizes QUICK = new Sizes(2_000, 500, 8L << 20, 300, 300, 100, 200, 50);
}
