package io.strata.layers.registry;

import io.strata.layers.ImageRecord;
import io.strata.layers.LayerStore;
import io.strata.layers.base.Digest;
import io.strata.layers.base.Progress;
import io.strata.layers.base.StoreException;
import io.strata.layers.base.Text;
import java.io.IOException;
import java.nio.file.Path;
import java.util.function.Consumer;

/**
 * The OCI distribution API on a store: pull an image into it, push one out of it, check a
 * login. Each uses the store ({@link LayerStore#withScratch}, {@link LayerStore#store}); the
 * store knows nothing of registries.
 */
public final class Distribution {
  private Distribution() {}

  /** How pulls and pushes reach registries. */
  public record Options(boolean tlsVerify, Path certDir, Path authFile,
      Credentials.Login login, java.time.Duration stall) {
    public Options {
      if (stall == null) {
        stall = java.time.Duration.ofSeconds(60);
      }
    }

    Registry.Options with(Consumer<String> log) {
      return new Registry.Options(tlsVerify, certDir, authFile, login, stall, log);
    }
  }

  /** What a pull did. */
  public record PullResult(ImageRecord image, String reference, int layersFetched,
      int layersSkipped, long bytesFetched) {}

  /** What a push did. */
  public record PushResult(String target, Digest manifestDigest, int blobsSent, int blobsPresent,
      int blobsMounted, long bytesSent) {}

  /**
   * Pulls an image from a registry into {@code store}; layers the store has are not fetched.
   * Everything is checked before anything is stored, as for an import.
   *
   * @param name the NAME[:TAG] to give it; null names it HOST/PATH:TAG
   * @param platform OS/ARCH[/VARIANT] to take from an index; null for this machine's
   * @param registriesConf where short names are looked up (registries.conf)
   */
  public static PullResult pull(LayerStore store, String reference, String name,
      String platform, Options options, Path registriesConf, Progress progress) {
    String tag = name == null ? null : LayerStore.normalizeName(name);
    return store.withScratch("pull of " + Text.clip(reference), staging -> {
      Pull.Result r = new Pull(store, staging, progress, options.with(store.log()), platform)
          .run(reference, registriesConf, tag);
      return new PullResult(r.image(), r.reference().toString(), r.layersFetched(),
          r.layersSkipped(), r.bytesFetched());
    });
  }

  /**
   * Pulls an image's layers into {@code store} without naming the image (its record goes at
   * the next gc): for a holder that pins the layers itself, such as the snapshotter unpacking
   * for containerd. Returns the image's DiffIDs, bottom first.
   */
  public static PullResult pullLayers(LayerStore store, String reference, Options options,
      Progress progress) {
    return store.withScratch("pull of " + Text.clip(reference), staging -> {
      Pull.Result r = new Pull(store, staging, progress, options.with(store.log()), null)
          .run(reference, null, "");
      return new PullResult(r.image(), r.reference().toString(), r.layersFetched(),
          r.layersSkipped(), r.bytesFetched());
    });
  }

  /**
   * Pushes an image of {@code store} to {@code destination} ([HOST/]PATH[:TAG]); blobs the
   * registry has, or can mount, are not sent.
   *
   * @param chunk upload in PATCH requests of this many bytes; 0 sends each blob in one
   */
  public static PushResult push(LayerStore store, String image, String destination,
      Options options, long chunk, Progress progress) {
    ImageRecord record = store.resolve(image);
    Reference target = Reference.parse(destination, Reference.DOCKER_HUB);
    return store.withScratch("push of " + image, scratch -> {
      Push.Result r = new Push(store, store.imageWriter(scratch, progress),
          options.with(store.log()), progress, chunk).run(record, target);
      return new PushResult(r.target().toString(), r.manifestDigest(), r.blobsSent(),
          r.blobsPresent(), r.blobsMounted(), r.bytesSent());
    });
  }

  /** Checks a login against a registry (nothing is stored). */
  public static void checkLogin(String host, Options options, Consumer<String> log) {
    try (Registry r = new Registry(host, options.with(log))) {
      r.checkLogin("strata/login-check");
    } catch (IOException e) {
      throw new StoreException("login to " + host + " failed: " + e.getMessage(), e);
    }
  }
}
