package io.strata.layers.cli;

import io.strata.layers.registry.Distribution;
import io.strata.layers.LayerStore;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code strata push}: sends an image to a registry. */
@Command(name = "push", mixinStandardHelpOptions = true,
    description = {
        "Push an image to a registry and print the manifest digest.",
        "",
        "Blobs the repository already has are not sent (HEAD, then a cross-repository mount"
            + " from where the image was pulled); the rest are sent gzip-compressed, then the"
            + " manifest. A pulled image whose blobs are all there keeps its manifest digest."})
public final class PushCommand implements Callable<Integer> {
  @Mixin StoreOptions store;
  @Mixin RegistryOptions registry;

  @Parameters(index = "0", paramLabel = "IMAGE", description = "Name or id of a stored image.")
  String image;

  @Parameters(index = "1", arity = "0..1", paramLabel = "DEST",
      description = "[HOST[:PORT]/]NAME[:TAG] to push to (default: IMAGE's own name).")
  String destination;

  @Option(names = "--chunk-size", paramLabel = "BYTES",
      description = "Upload in chunks of this many bytes (PATCH requests); 0 (default) sends a"
          + " blob in one request.")
  long chunk;

  @Option(names = "--digestfile", paramLabel = "FILE",
      description = "Also write the manifest digest to FILE.")
  java.nio.file.Path digestFile;

  @Option(names = {"-q", "--quiet"}, description = "Print only the digest.")
  boolean quiet;

  @Override
  public Integer call() throws java.io.IOException {
    if (chunk < 0) {
      throw new IllegalArgumentException("--chunk-size must be 0 or more");
    }
    Distribution.Options options = registry.toOptions();
    LayerStore s = store.open();
    String dest = destination != null ? destination : image;
    long start = System.nanoTime();
    Distribution.PushResult r = Distribution.push(s, image, dest, options, chunk,
        quiet ? io.strata.layers.base.Progress.NONE : TerminalProgress.forConsole());
    if (!quiet) {
      System.err.printf("strata: pushed %s: %d blobs sent (%s), %d already there, %d mounted,"
              + " %.1fs%n", r.target(), r.blobsSent(), Output.size(r.bytesSent()),
          r.blobsPresent(), r.blobsMounted(), (System.nanoTime() - start) / 1e9);
    }
    System.out.println(r.manifestDigest());
    if (digestFile != null) {
      java.nio.file.Files.writeString(digestFile, r.manifestDigest().toString());
    }
    return 0;
  }
}
