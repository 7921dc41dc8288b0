package io.strata.bench;

import io.strata.union.view.FsException;
import io.strata.union.view.UnionView;
import java.nio.file.Files;
import java.nio.file.Path;
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
 * Lookup through the union view itself (no FUSE): a hit on a file in the bottom layer and a
 * miss, over 1 to 128 lowers, path depths and directory sizes. Defaults fit 2 cores:
 * {@code java -jar bench/target/benchmarks.jar Lookup}.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class LookupBenchmark {
  @Param({"1", "8", "32", "128"})
  int layers;

  @Param({"1", "8"})
  int depth;

  @Param({"10", "1000"})
  int width;

  Path root;
  UnionView view;
  String hit;
  String miss;

  @Setup(Level.Trial)
  public void setUp() throws Exception {
    root = Files.createTempDirectory("strata-lookup");
    view = UnionView.open(Layers.stack(root, layers, depth, width), null, null,
        UnionView.Options.defaults());
    String dir = depth == 0 ? "" : "/" + Layers.chain(depth);
    hit = dir + "/f" + (width / 2);
    miss = dir + "/nope";
    view.getattr(hit); // fail early on a broken setup
  }

  @TearDown(Level.Trial)
  public void tearDown() throws Exception {
    view.close();
    Layers.delete(root);
  }

  @Benchmark
  public Object lookupHit() throws FsException {
    return view.getattr(hit);
  }

  @Benchmark
  public int lookupMiss() {
    try {
      view.getattr(miss);
      return 0;
    } catch (FsException e) {
      return e.errno();
    }
  }
}
