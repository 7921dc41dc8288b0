package io.strata.bench;

import io.strata.layers.LayerStore;
import io.strata.layers.base.Progress;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Layer import throughput: a generated plain tar of 64 MiB in files of the given size, into a
 * fresh store each time (extract, hash, verify, publish). Score per import; MiB/s = 64 / s.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.SingleShotTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 2)
@Measurement(iterations = 6)
@Fork(1)
public class ImportBenchmark {
  @Param({"4096", "1048576"})
  int fileSize;

  Path root;
  Path tar;
  int round;

  @Setup(Level.Trial)
  public void makeTar() throws Exception {
    root = Files.createTempDirectory("strata-import");
    tar = root.resolve("layer.tar");
    byte[] data = new byte[fileSize];
    new java.util.Random(7).nextBytes(data);
    try (OutputStream out = Files.newOutputStream(tar);
        TarArchiveOutputStream t = new TarArchiveOutputStream(out)) {
      long total = 64L << 20;
      for (int i = 0; (long) i * fileSize < total; i++) {
        TarArchiveEntry e = new TarArchiveEntry("d" + (i / 1000) + "/f" + i);
        e.setSize(fileSize);
        t.putArchiveEntry(e);
        t.write(data);
        t.closeArchiveEntry();
      }
    }
  }

  @TearDown(Level.Trial)
  public void tearDown() throws Exception {
    Layers.delete(root);
  }

  @Benchmark
  public Object importLayer() {
    round++;
    LayerStore store = LayerStore.open(root.resolve("store" + round), line -> { });
    return store.importImage(tar, "bench:" + round, null, Progress.NONE);
  }
}
