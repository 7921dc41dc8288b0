package io.strata.union.mount;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Many threads on one mount through libfuse's multithreaded loop: copy-ups of the same lower
 * file, creates, renames and deletes in shared and private directories. Every thread's own
 * work must be there afterwards, and the shared file must be whole.
 */
class ConcurrencyTest {
  @TempDir Path tmp;

  @Test
  void parallelWorkOnOneMountLosesNothing() throws Exception {
    LayerSpec lower = LayerSpec.layer().dir("shared");
    for (int i = 0; i < 50; i++) {
      lower.file("shared/f" + i, "lower " + i);
    }
    Path l = lower.writeTo(tmp.resolve("lower"), LayerSpec.Form.OCI);
    int threads = 8;
    try (Mounted m = Mounted.strata(List.of(l), tmp.resolve("upper"), tmp.resolve("work"),
        tmp.resolve("mnt"))) {
      ExecutorService pool = Executors.newFixedThreadPool(threads);
      List<Future<?>> done = new ArrayList<>();
      for (int t = 0; t < threads; t++) {
        final int id = t;
        done.add(pool.submit(() -> {
          Path mine = Files.createDirectories(m.mountpoint.resolve("t" + id + "/a/b"));
          for (int i = 0; i < 50; i++) {
            Files.writeString(mine.resolve("n" + i), "thread " + id + " file " + i);
            Files.move(mine.resolve("n" + i), mine.resolve("m" + i));
            // Every thread appends to every shared lower file: concurrent copy-ups of one file.
            Files.writeString(m.mountpoint.resolve("shared/f" + i), "+" + id,
                java.nio.file.StandardOpenOption.APPEND);
            if (i % 2 == 0) {
              Files.delete(mine.resolve("m" + i));
            }
          }
          return null;
        }));
      }
      for (Future<?> f : done) {
        f.get(120, TimeUnit.SECONDS);
      }
      pool.shutdown();
      for (int t = 0; t < threads; t++) {
        try (var s = Files.list(m.mountpoint.resolve("t" + t + "/a/b"))) {
          assertThat(s.count()).isEqualTo(25);
        }
        assertThat(m.mountpoint.resolve("t" + t + "/a/b/m1")).hasContent("thread " + t + " file 1");
      }
      for (int i = 0; i < 50; i++) {
        String content = Files.readString(m.mountpoint.resolve("shared/f" + i));
        assertThat(content).startsWith("lower " + i);
        for (int t = 0; t < threads; t++) {
          assertThat(content).contains("+" + t);
        }
        assertThat(content.length()).isEqualTo(("lower " + i).length() + 2 * threads);
      }
      try (var s = Files.list(tmp.resolve("work/strata-staging"))) {
        assertThat(s).isEmpty();
      }
    }
  }
}
