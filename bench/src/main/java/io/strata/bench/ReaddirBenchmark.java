package io.strata.bench;

import io.strata.union.view.UnionView;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
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
 * Readdir of a large directory merged over several layers, each holding its share of the
 * entries plus whiteouts of some of the layer below: warm (merged once, cached) listings.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class ReaddirBenchmark {
  @Param({"1", "4", "16"})
  int layers;

  @Param({"10000"})
  int entries;

  Path root;
  UnionView view;

  @Setup(Level.Trial)
  public void setUp() throws Exception {
    root = Files.createTempDirectory("strata-readdir");
    List<Path> lowers = new ArrayList<>();
    int per = entries / layers;
    for (int l = 0; l < layers; l++) {
      Path dir = Files.createDirectories(root.resolve("layer" + l + "/big"));
      for (int i = 0; i < per; i++) {
        Files.writeString(dir.resolve("l" + l + "-e" + i), "");
      }
      if (l + 1 < layers) {
        for (int i = 0; i < per / 10; i++) {
          Files.writeString(dir.resolve(".wh.l" + (l + 1) + "-e" + i), "");
        }
      }
      lowers.add(root.resolve("layer" + l));
    }
    view = UnionView.open(lowers, null, null, UnionView.Options.defaults());
  }

  @TearDown(Level.Trial)
  public void tearDown() throws Exception {
    view.close();
    Layers.delete(root);
  }

  @Benchmark
  public int readdirMerged() throws Exception {
    return view.readdir("/big").size();
  }
}
