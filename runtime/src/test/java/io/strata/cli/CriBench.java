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
 *       docker-registry on loopback, the first after the engines start (strata's snapshotter
 *       a fresh JVM: its pull runs cold) and the next (another layer of the same size); for
 *       strata also with the layer already in strata's store ({@code strata pull} first);
 *   <li>RunPodSandbox + CreateContainer + StartContainer to the first ExecSync's answer, for
 *       the first pod after the engines start (the snapshotter's code still cold), the five
 *       after it, and five more after twenty others (the JIT has compiled more of the
 *       snapshotter; broken down into its calls);
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
      // a second Debian-sized layer (the same tar and one file more: another DiffID), for a
      // pull on engines that have pulled before
      Path other = n.tmp.resolve("debian-b.tar");
      Files.copy(Path.of(rootfs), other);
      Files.writeString(Files.createDirectories(n.tmp.resolve("marker/etc"))
          .resolve("bench-marker"), "b\n");
      CommitTest.sh("tar -C " + n.tmp.resolve("marker") + " -rf " + other + " ./etc/bench-marker");
      n.push(n.image(List.of(CriTest.gzip(other)), List.of("/bin/sleep", "100000")),
          "debian-b:1");
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
          add(figures, "first PullImage after the engines start (Debian), s: " + snap,
              (System.nanoTime() - t) / 1e9);
          t = System.nanoTime();
          n.pull("debian-b:1");
          add(figures, "next PullImage (another Debian layer), s: " + snap,
              (System.nanoTime() - t) / 1e9);
          n.pull("pause:1");
          // the first pod after the engines start, then five more on warmer engines (a node
          // that has run pods before: the snapshotter's code compiled by the JIT)
          for (int p = 1; p <= 31; p++) {
            // 7 to 26 only warm the engines (a node's snapshotter has served pods before)
            String which = p == 1 ? "first pod" : p <= 6 ? "pods 2 to 6" : p >= 27
                ? "pods 27 to 31" : null;
            t = System.nanoTime();
            String pod = n.runPod("bench-" + p);
            long sandbox = System.nanoTime();
            String c = n.createAndStart(pod, "c", "debian:1", "sleep 100000");
            long started = System.nanoTime();
            assertThat(n.exec(c, "true")).isEqualTo("0||");
            long answered = System.nanoTime();
            if (which != null) {
              add(figures, which + ": RunPodSandbox to first ExecSync, s: " + snap,
                  (answered - t) / 1e9);
            }
            if (p >= 27) {
              add(figures, "  of which RunPodSandbox, s: " + snap, (sandbox - t) / 1e9);
              add(figures, "  of which CreateContainer + StartContainer, s: " + snap,
                  (started - sandbox) / 1e9);
              add(figures, "  of which ExecSync, s: " + snap, (answered - started) / 1e9);
            }
            n.removePod(pod);
          }
          for (int i = 1; i <= 10; i++) {
            n.pull("debian-app" + i + ":1");
          }
          long bytes = CriTest.du(n.runDir) + (Files.exists(n.store) ? CriTest.du(n.store) : 0);
          add(figures, "disk for 11 images sharing a Debian layer (+1 other), MiB: " + snap,
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
        add(figures, "first PullImage (Debian), s: strata, the layer already in its store",
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
