package io.strata.layers;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

/** Helpers for tests that open a store in a temporary directory and compare its contents. */
public final class StoreFixture {
  private StoreFixture() {}

  public static LayerStore open(Path root) {
    return LayerStore.open(root, line -> System.err.println("store: " + line));
  }

  /**
   * Everything the store holds, as sorted "path size" lines, leaving out the staging area and
   * the lock files: two equal snapshots mean the store was not changed.
   */
  public static List<String> snapshot(Path root) throws IOException {
    List<String> out = new ArrayList<>();
    try (Stream<Path> all = Files.walk(root)) {
      all.sorted().forEach(p -> {
        Path rel = root.relativize(p);
        String r = rel.toString();
        if (r.isEmpty() || r.startsWith("tmp") || r.endsWith(".lock")) {
          return;
        }
        try {
          long size = Files.isRegularFile(p, LinkOption.NOFOLLOW_LINKS) ? Files.size(p) : -1;
          out.add(r + " " + size);
        } catch (IOException e) {
          out.add(r + " ?");
        }
      });
    }
    return out;
  }

  public static List<String> tmpContents(Path root) throws IOException {
    try (Stream<Path> s = Files.list(root.resolve("tmp"))) {
      return s.map(p -> p.getFileName().toString()).sorted().toList();
    }
  }
}
