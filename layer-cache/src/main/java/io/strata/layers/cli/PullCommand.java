package io.strata.layers.cli;

import io.strata.layers.registry.Distribution;
import io.strata.layers.LayerStore;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code strata pull}: brings an image from a registry into the store. */
@Command(name = "pull", mixinStandardHelpOptions = true,
    description = {
        "Pull an image from a registry (the OCI distribution API).",
        "",
        "REF is [HOST[:PORT]/]NAME[:TAG][@sha256:HEX]. A name without a host is looked up in"
            + " registries.conf's unqualified-search-registries, else on docker.io. Layers the"
            + " store already has are not fetched; every blob is checked while it streams, and a"
            + " broken download resumes where it stopped. On any error nothing is stored."})
public final class PullCommand implements Callable<Integer> {
  @Mixin StoreOptions store;
  @Mixin RegistryOptions registry;

  @Parameters(paramLabel = "REF", description = "The image to pull.")
  String reference;

  @Option(names = "--name", paramLabel = "NAME[:TAG]",
      description = "Name to give the image (default: HOST/NAME:TAG).")
  String name;

  @Option(names = "--platform", paramLabel = "OS/ARCH[/VARIANT]",
      description = "Which image of a multi-platform index to take (default: this machine's).")
  String platform;

  @Option(names = "--registries-conf", paramLabel = "FILE", hidden = true,
      description = "registries.conf for short names (default: /etc/containers/registries.conf).")
  Path registriesConf = Path.of("/etc/containers/registries.conf");

  @Option(names = {"-q", "--quiet"}, description = "Print only the image id.")
  boolean quiet;

  @Override
  public Integer call() {
    if (name != null) {
      LayerStore.normalizeName(name);
    }
    Distribution.Options options = registry.toOptions();
    LayerStore s = store.open();
    long start = System.nanoTime();
    Distribution.PullResult r = Distribution.pull(s, reference, name, platform, options, registriesConf,
        quiet ? io.strata.layers.base.Progress.NONE : TerminalProgress.forConsole());
    if (quiet) {
      System.out.println(r.image().id());
    } else {
      System.out.printf("pulled %s as %s (%d layers fetched, %d already stored, %s, %.1fs)%n",
          r.reference(), String.join(", ", r.image().names()), r.layersFetched(),
          r.layersSkipped(), Output.size(r.bytesFetched()), (System.nanoTime() - start) / 1e9);
      System.out.println(r.image().id());
    }
    return 0;
  }
}
