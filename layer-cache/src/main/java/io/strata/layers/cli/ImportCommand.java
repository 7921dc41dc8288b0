package io.strata.layers.cli;

import io.strata.layers.ImageRecord;
import io.strata.layers.LayerStore;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code strata import}: brings an image or a bare layer into the store. */
@Command(name = "import", mixinStandardHelpOptions = true,
    description = {
        "Import an image or a bare layer into the store.",
        "SOURCE is an OCI image layout (directory or tar), a docker-archive tarball (docker save, skopeo copy … docker-archive:), or a bare",
        "layer tar (plain, gzip or zstd, told from its bytes). Every declared digest is",
        "checked; on any error nothing is stored."})
public final class ImportCommand implements Callable<Integer> {
  @Mixin StoreOptions store;

  @Parameters(paramLabel = "SOURCE", description = "Directory or file to import.")
  Path source;

  @Option(names = "--name", paramLabel = "NAME[:TAG]",
      description = "Name to give the image (default: the source's own names, else its file name).")
  String name;

  @Option(names = "--ref", paramLabel = "REF",
      description = "Which image to take from a source that holds several (a tag or ref.name).")
  String ref;

  @Option(names = {"-q", "--quiet"}, description = "Print only the image id.")
  boolean quiet;

  @Override
  public Integer call() {
    if (name != null) {
      LayerStore.normalizeName(name); // refuse a bad name before reading a byte
    }
    LayerStore s = store.open();
    long start = System.nanoTime();
    ImageRecord r = s.importImage(source, name, ref, quiet ? io.strata.layers.base.Progress.NONE
        : TerminalProgress.forConsole());
    if (quiet) {
      System.out.println(r.id());
    } else {
      double secs = (System.nanoTime() - start) / 1e9;
      System.out.printf("imported %s as %s (%d layers, %.1fs)%n", r.id(),
          String.join(", ", r.names()), r.diffIds().size(), secs);
    }
    return 0;
  }
}
