package io.strata.bench;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Stream;

/** Builds lower layers on disk for the benchmarks and removes them afterwards. */
public final class Layers {
  private Layers() {}

  /**
   * {@code count} layers, top first. The bottom layer holds a chain of {@code depth}
   * directories ending in {@code width} files; every other layer holds the same directory chain
   * with one file of its own, so a lookup of a bottom file merges every layer on the way.
   */
  public static List<Path> stack(Path root, int count, int depth, int width) throws IOException {
    List<Path> layers = new ArrayList<>();
    for (int i = 0; i < count; i++) {
      Path layer = Files.createDirectories(root.resolve("layer" + i));
      Path dir = Files.createDirectories(layer.resolve(chain(depth)));
      if (i == count - 1) {
        for (int f = 0; f < width; f++) {
          Files.writeString(dir.resolve("f" + f), "x");
        }
      } else {
        Files.writeString(dir.resolve("own" + i), "y");
      }
      layers.add(layer);
    }
    return layers;
  }

  public static String chain(int depth) {
    StringBuilder sb = new StringBuilder();
    for (int d = 0; d < depth; d++) {
      sb.append(d == 0 ? "" : "/").append("d").append(d);
    }
    return sb.length() == 0 ? "." : sb.toString();
  }

  public static void delete(Path root) throws IOException {
    if (root == null || !Files.exists(root)) {
      return;
    }
    try (Stream<Path> s = Files.walk(root)) {
      for (Path p : (Iterable<Path>) s.sorted(Comparator.reverseOrder())::iterator) {
        Files.delete(p);
      }
    }
  }
}
