package io.strata.bench;

import io.strata.union.view.UnionView;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
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
 * Copy-up through the view: opening a lower file for writing (data copy, with the fsync the
 * kernel also does) from 4 KiB to 1 GiB, and a chmod (metadata only). Each invocation gets a
 * fresh upper, so every measurement is a real first copy-up.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.SingleShotTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3)
@Measurement(iterations = 8)
@Fork(1)
public class CopyUpBenchmark {
  @Param({"4096", "1048576", "67108864", "1073741824"})
  long size;

  Path root;
  Path lower;
  UnionView view;
  int round;

  @Setup(Level.Trial)
  public void makeLower() throws Exception {
    root = Files.createTempDirectory("strata-copyup");
    lower = Files.createDirectories(root.resolve("lower"));
    try (RandomAccessFile f = new RandomAccessFile(lower.resolve("file").toFile(), "rw")) {
      byte[] chunk = new byte[1 << 20];
      new java.util.Random(42).nextBytes(chunk);
      for (long done = 0; done < size; done += chunk.length) {
        f.write(chunk, 0, (int) Math.min(chunk.length, size - done));
      }
    }
  }

  @Setup(Level.Invocation)
  public void freshUpper() throws Exception {
    round++;
    Path upper = Files.createDirectories(root.resolve("upper" + round));
    Path work = Files.createDirectories(root.resolve("work" + round));
    view = UnionView.open(List.of(lower), upper, work, UnionView.Options.defaults());
  }

  @TearDown(Level.Invocation)
  public void dropUpper() throws Exception {
    view.close();
    Layers.delete(root.resolve("upper" + round));
    Layers.delete(root.resolve("work" + round));
  }

  @TearDown(Level.Trial)
  public void tearDown() throws Exception {
    Layers.delete(root);
  }

  @Benchmark
  public void copyUpData() throws Exception {
    view.release(view.open("/file", 1 /* O_WRONLY */));
  }

  @Benchmark
  public void copyUpMetadataOnly() throws Exception {
    view.chmod("/file", 0600);
    if (!Files.exists(root.resolve("upper" + round).resolve("file"))) {
      throw new IllegalStateException("no copy-up happened");
    }
  }
}
