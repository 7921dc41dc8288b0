package io.strata.layers;

import io.strata.layers.base.Progress;
import java.nio.file.Path;

/** A separate JVM that imports one source, for tests that kill it or race two of them. */
public final class ImportProcess {
  private ImportProcess() {}

  public static void main(String[] args) {
    LayerStore store = LayerStore.open(Path.of(args[0]), System.err::println);
    ImageRecord r = store.importImage(Path.of(args[1]), args[2], null, Progress.NONE);
    System.out.println(r.id());
  }

  static ProcessBuilder command(Path root, Path source, String name) {
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    return new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"),
        ImportProcess.class.getName(), root.toString(), source.toString(), name);
  }
}
