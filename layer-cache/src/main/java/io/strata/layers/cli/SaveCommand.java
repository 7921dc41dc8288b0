package io.strata.layers.cli;

import io.strata.layers.LayerStore;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code strata save}: writes images out as a docker-archive or an OCI layout. */
@Command(name = "save", mixinStandardHelpOptions = true,
    description = {
        "Write images out: a docker-archive (docker load, podman load, skopeo), an OCI image"
            + " layout directory or an oci-archive.",
        "",
        "Layers are the exact tars they were imported as, so image ids and DiffIDs stay the"
            + " same. The output appears whole or not at all."})
public final class SaveCommand implements Callable<Integer> {
  @Mixin StoreOptions store;

  @Parameters(arity = "1..*", paramLabel = "IMAGE", description = "Names or ids of stored images.")
  List<String> images;

  @Option(names = {"-o", "--output"}, required = true, paramLabel = "PATH",
      description = "The archive file, or the directory for oci-dir (added to if it is a layout).")
  Path output;

  @Option(names = "--format", paramLabel = "FORMAT", defaultValue = "docker-archive",
      description = "docker-archive (default), oci-dir or oci-archive.")
  String format;

  @Option(names = "--compress", description = "gzip the layers (OCI formats).")
  boolean compress;

  @Option(names = {"-q", "--quiet"}, description = "No progress and no summary.")
  boolean quiet;

  @Override
  public Integer call() {
    LayerStore.SaveFormat f = switch (format) {
      case "docker-archive" -> LayerStore.SaveFormat.DOCKER_ARCHIVE;
      case "oci-dir" -> LayerStore.SaveFormat.OCI_DIR;
      case "oci-archive" -> LayerStore.SaveFormat.OCI_ARCHIVE;
      default -> throw new IllegalArgumentException("--format must be docker-archive, oci-dir or"
          + " oci-archive, not '" + format + "'");
    };
    if (compress && f == LayerStore.SaveFormat.DOCKER_ARCHIVE) {
      throw new IllegalArgumentException("--compress applies to oci-dir and oci-archive");
    }
    store.open().save(images, output, f, compress, quiet ? io.strata.layers.base.Progress.NONE
        : TerminalProgress.forConsole());
    if (!quiet) {
      Output.note("saved " + String.join(", ", images) + " to " + output + " (" + format + ")");
    }
    return 0;
  }
}
