package io.strata.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The CRI benchmark of issue 20 (not a test: it runs only with {@code
 * -Dstrata.bench.cri=ROOTFS.tar}, through {@code scripts/bench-cri.sh}): containerd's CRI on
 * the overlayfs snapshotter and on strata's, alternated within each round, each round with
 * fresh roots and a fresh strata store, driven through the CRI's gRPC API as {@link CriTest}
 * drives it (whose engines, client and image builder this uses). Measured:
 *
 * <ul>
 *   <li>PullImage of a Debian image (one gzip layer made from the root file system tar) from a
 *       docker-registry on loopback; for strata also with the layer already in strata's store
 *       ({@code strata pull} first);
 *   <li>RunPodSandbox + CreateContainer + StartContainer to the first ExecSync's answer, for
 *       the first pod after the engines start (the snapshotter's code still cold) and for the
 *       next;
 *   <li>disk used (du -x of containerd's root and state, the snapshotter's root and strata's
 *       store) once ten images that share the Debian layer (each adding a small layer of its
 *       own) are pulled.
 * </ul>
 */
class CriBench {
  @Test
  void bench() throws Exception {
    String rootfs = System.getProperty("strata.bench.cri", "");
    assumeTrue(!rootfs.isBlank(), "the CRI benchmark runs with -Dstrata.bench.cri=ROOTFS.tar");
    int rounds = Integer.getInteger("strata.bench.rounds", 3);
    CriTest n = new CriTest();
    n.tmp = Files.createTempDirectory(Path.of("/var/tmp"), "strata-cri-bench");
    Map<String, List<Double>> figures = new LinkedHashMap<>();
    try {
      n.setUp();
      Path gz = n.tmp.resolve("debian.tar.gz");
      try (var out = new java.util.zip.GZIPOutputStream(Files.newOutputStream(gz), 1 << 16)) {
        Files.copy(Path.of(rootfs), out);
      }
      n.push(n.image(List.of(gz), List.of("/bin/sleep", "100000")), "debian:1");
      for (int i = 1; i <= 10; i++) {
        n.push(n.image(List.of(gz, CriTest.gzip(n.layer("extra" + i, "image " + i))),
            List.of("/bin/sleep", "100000")), "debian-app" + i + ":1");
      }
      for (int r = 0; r < rounds; r++) {
        for (String snap : r % 2 == 0 ? List.of("overlayfs", "strata")
            : List.of("strata", "overlayfs")) {
          n.store = n.tmp.resolve("store-" + r + "-" + snap);
          n.start(snap, false, "run-" + r + "-" + snap);
          long t = System.nanoTime();
          n.pull("debian:1");
          add(figures, "PullImage debian, s: " + snap, (System.nanoTime() - t) / 1e9);
          n.pull("pause:1");
          // the first pod after the engines start, then one on warm engines (a node's case)
          for (String which : List.of("first pod", "next pod")) {
            t = System.nanoTime();
            String pod = n.runPod("bench-" + which.replace(' ', '-'));
            String c = n.createAndStart(pod, "c", "debian:1", "sleep 100000");
            assertThat(n.exec(c, "true")).isEqualTo("0||");
            add(figures, which + ": RunPodSandbox to first ExecSync, s: " + snap,
                (System.nanoTime() - t) / 1e9);
            n.removePod(pod);
          }
          for (int i = 1; i <= 10; i++) {
            n.pull("debian-app" + i + ":1");
          }
          long bytes = CriTest.du(n.runDir) + (Files.exists(n.store) ? CriTest.du(n.store) : 0);
          add(figures, "disk for 11 images sharing the Debian layer, MiB: " + snap,
              bytes / 1048576.0);
          n.stopEngines();
        }
        // strata with the layer already in its store: no fetch, no extraction
        n.store = n.tmp.resolve("store-" + r + "-warm");
        assertThat(Main.run("--root", n.store.toString(), "pull", "-q", n.reg + "/debian:1"))
            .isZero();
        n.start("strata", false, "run-" + r + "-warm");
        long t = System.nanoTime();
        n.pull("debian:1");
        add(figures, "PullImage debian, s: strata, layer already in strata's store",
            (System.nanoTime() - t) / 1e9);
        n.stopEngines();
      }
    } finally {
      try {
        n.tearDown();
      } finally {
        CommitTest.sh("rm -rf " + n.tmp);
      }
    }
    System.out.println("CRI benchmark, " + rounds + " rounds (medians; every value in order):");
    for (Map.Entry<String, List<Double>> e : figures.entrySet()) {
      List<Double> sorted = new ArrayList<>(e.getValue());
      sorted.sort(null);
      System.out.printf(java.util.Locale.ROOT, "  %-75s %10.3f   %s%n", e.getKey(),
          sorted.get(sorted.size() / 2), e.getValue());
    }
  }

  private static void add(Map<String, List<Double>> figures, String what, double value) {
    figures.computeIfAbsent(what, k -> new ArrayList<>()).add(value);
  }
}
