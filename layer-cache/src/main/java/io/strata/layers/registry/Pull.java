package io.strata.layers.registry;

import io.strata.layers.BlobInfoCache;
import io.strata.layers.ImageRecord;
import io.strata.layers.LayerStore;
import io.strata.layers.archive.ChunkInputStream;
import io.strata.layers.archive.ImageConfig;
import io.strata.layers.archive.ImageSource;
import io.strata.layers.archive.MediaTypes;
import io.strata.layers.base.BadInputException;
import io.strata.layers.base.Digest;
import io.strata.layers.base.Json;
import io.strata.layers.base.NotFoundException;
import io.strata.layers.base.Progress;
import io.strata.layers.base.Text;
import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicLong;

/**
 * One pull: the manifest (through an index to this machine's platform), the config, then the
 * layer blobs the store lacks, downloaded a few at a time into the staging directory while the
 * importer extracts them in order. Every blob is checked as it streams; the image is stored
 * the way a file import stores it, all or nothing.
 */
public final class Pull {
  private static final int PARALLEL = 3;

  /** What a pull did, for the command line and the measurements. */
  record Result(ImageRecord image, Reference reference, int layersFetched, int layersSkipped,
      long bytesFetched) {}

  private final LayerStore store;
  private final Path staging;
  private final Progress progress;
  private final Registry.Options options;
  private final String platform;

  Pull(LayerStore store, Path staging, Progress progress, Registry.Options options,
      String platform) {
    this.store = store;
    this.staging = staging;
    this.progress = progress;
    this.options = options;
    this.platform = platform != null ? platform : "linux/" + ImageConfig.goArch();
    checkPlatform(this.platform);
  }

  static void checkPlatform(String p) {
    if (!p.matches("[a-z0-9]+/[a-z0-9]+(/[a-z0-9]+)?")) {
      throw new IllegalArgumentException("--platform '" + Text.clip(p) + "' is not OS/ARCH[/VARIANT]"
          + " (such as linux/amd64 or linux/arm64/v8)");
    }
  }

  Result run(String text, Path registriesConf, String name) throws IOException {
    List<Reference> candidates = Reference.candidates(text, registriesConf);
    NotFoundException notFound = null;
    for (Reference ref : candidates) {
      try (Registry registry = new Registry(ref.registry(), options)) {
        Registry.Manifest top;
        try {
          top = registry.manifest(ref.repository(), ref.manifestRef());
        } catch (NotFoundException e) {
          if (candidates.size() > 1) {
            options.log().accept(ref + ": " + e.getMessage());
          }
          notFound = e;
          continue;
        }
        return pull(registry, ref, top, name != null ? name : ref.storeName());
      }
    }
    throw notFound != null ? notFound : new NotFoundException("no registry to pull " + text + " from");
  }

  private Result pull(Registry registry, Reference ref, Registry.Manifest top, String name)
      throws IOException {
    String repo = ref.repository();
    Registry.Manifest m = top;
    for (int depth = 0; isIndex(m); depth++) {
      if (depth > 2) {
        throw new BadInputException(ref + ": indexes nested too deeply");
      }
      JsonNode chosen = choose(Json.parse(m.bytes(), ref + ": index " + m.digest()), ref, m);
      Digest d = Json.digest(chosen, "digest", ref + ": index entry");
      m = registry.manifest(repo, d.toString());
    }
    String what = ref + ": manifest " + m.digest();
    JsonNode manifest = Json.parse(m.bytes(), what);
    String type = type(m, manifest);
    if (type.contains("distribution.manifest.v1")) {
      throw new BadInputException(what + ": Docker schema 1 manifests are not supported (the"
          + " registry must serve schema 2 or OCI)");
    }
    if (!MediaTypes.OCI_MANIFEST.equals(type) && !MediaTypes.DOCKER_MANIFEST.equals(type)) {
      throw new BadInputException(what + ": unknown media type '" + Text.clip(type) + "'");
    }
    JsonNode configDesc = manifest.get("config");
    if (configDesc == null || !configDesc.isObject()) {
      throw new BadInputException(what + ": no config descriptor");
    }
    String configType = configDesc.path("mediaType").asText("");
    if (!MediaTypes.CONFIGS.contains(configType)) {
      throw new BadInputException(what + ": the config's media type '" + Text.clip(configType)
          + "' is not an image config (is this an artifact rather than an image?)");
    }
    Digest configDigest = Json.digest(configDesc, "digest", what + ": config");
    byte[] config = registry.smallBlob(repo, configDigest, Json.size(configDesc, what + ": config"),
        "config");
    List<Digest> diffIds = ImageConfig.diffIds(config, ref + ": config " + configDigest);
    JsonNode layers = manifest.get("layers");
    if (layers == null || !layers.isArray()) {
      throw new BadInputException(what + ": no layers array");
    }
    if (layers.size() != diffIds.size()) {
      throw new BadInputException(what + ": " + layers.size() + " layers but the config lists "
          + diffIds.size() + " diff_ids");
    }
    // Check every descriptor before fetching a byte.
    List<Digest> blobs = new ArrayList<>();
    List<Long> sizes = new ArrayList<>();
    for (int i = 0; i < layers.size(); i++) {
      JsonNode l = layers.get(i);
      String lw = what + ": layer " + (i + 1);
      String lt = l.path("mediaType").asText("");
      if (!MediaTypes.LAYERS.contains(lt)) {
        throw new BadInputException(lw + ": media type '" + Text.clip(lt) + "' is not a layer"
            + " strata can read" + (lt.contains("nondistributable") || lt.contains("foreign")
                ? " (a foreign layer lives outside the registry)" : ""));
      }
      Digest blob = Json.digest(l, "digest", lw);
      long size = Json.size(l, lw);
      // a blob this store has seen decompress to this layer has one size: another is a lie
      for (BlobInfoCache.Blob known : store.blobInfos().blobs(diffIds.get(i))) {
        if (known.digest().equals(blob) && known.size() != size) {
          throw new BadInputException(lw + ": the descriptor says blob " + blob.shortHex()
              + " is " + size + " bytes; it is " + known.size());
        }
      }
      blobs.add(blob);
      sizes.add(size);
    }

    ExecutorService pool = Executors.newFixedThreadPool(PARALLEL, r -> {
      Thread t = new Thread(r, "pull");
      t.setDaemon(true);
      return t;
    });
    AtomicLong fetched = new AtomicLong();
    int skipped = 0;
    List<ImageSource.LayerSource> sources = new ArrayList<>();
    List<CompletableFuture<Path>> downloads = new ArrayList<>();
    try {
      for (int i = 0; i < blobs.size(); i++) {
        Digest blob = blobs.get(i);
        long size = sizes.get(i);
        String label = "layer " + (i + 1) + " (" + blob.shortHex() + ")";
        if (store.hasLayer(diffIds.get(i))) {
          skipped++;
          sources.add(new ImageSource.LayerSource(label, blob, size, diffIds.get(i), null));
          continue;
        }
        Path file = staging.resolve("blob-" + i);
        int index = i + 1;
        int count = blobs.size();
        Object grew = new Object();
        CompletableFuture<Path> f = CompletableFuture.supplyAsync(() -> {
          long start = System.nanoTime();
          try {
            registry.blob(repo, blob, size, file, n -> {
              fetched.addAndGet(n);
              progress.bytesFetched(label, n, size);
              synchronized (grew) {
                grew.notifyAll();
              }
            });
          } catch (IOException e) {
            throw new java.util.concurrent.CompletionException(e);
          }
          progress.message(String.format(java.util.Locale.ROOT,
              "layer %d/%d %s: fetched %d bytes in %.1f s", index, count, blob.shortHex(), size,
              (System.nanoTime() - start) / 1e9));
          return file;
        }, pool);
        f.whenComplete((p, e) -> {
          synchronized (grew) {
            grew.notifyAll();
          }
        });
        downloads.add(f);
        // the download checks the blob's digest; the importer checks size and DiffID
        sources.add(new ImageSource.LayerSource(label, null, size, diffIds.get(i),
            () -> new Following(file, f, grew)));
      }
      ImageSource image = new ImageSource(ref.toString(), sources, config, configDigest,
          m.digest(), name.isEmpty() ? List.of() : List.of(name));
      ImageRecord record;
      try {
        record = store.store(image, staging, progress, ref.toString(), name);
      } catch (IOException | RuntimeException e) {
        throwDownloadFailure(downloads);
        throw e;
      }
      store.rememberManifest(record.id(), m.bytes(), ref.registry() + "/" + ref.repository());
      String location = ref.registry() + "/" + ref.repository();
      for (int i = 0; i < blobs.size(); i++) {
        store.blobInfos().record(diffIds.get(i), blobs.get(i), sizes.get(i),
            layers.get(i).path("mediaType").asText(), location);
      }
      return new Result(record, ref, downloads.size(), skipped, fetched.get());
    } finally {
      downloads.forEach(f -> f.cancel(true));
      pool.shutdownNow();
    }
  }

  /**
   * Reads a blob while its download still writes it, so a layer is extracted as it arrives;
   * it ends when the download has ended, and fails if the download failed. (The download only
   * appends; the importer checks the digest of what it read, the download that of what came.)
   */
  static final class Following extends ChunkInputStream {
    private final Path file;
    private final CompletableFuture<Path> download;
    private final Object grew;
    private java.nio.channels.FileChannel channel;
    private long position;

    Following(Path file, CompletableFuture<Path> download, Object grew) {
      this.file = file;
      this.download = download;
      this.grew = grew;
    }

    @Override
    public int read(byte[] b, int off, int len) throws IOException {
      if (len == 0) {
        return 0;
      }
      while (true) {
        boolean ended = download.isDone();
        if (ended) {
          await(download); // throws what the download threw
        }
        if (channel == null && Files.exists(file)) {
          channel = java.nio.channels.FileChannel.open(file);
        }
        if (channel != null) {
          int n = channel.read(java.nio.ByteBuffer.wrap(b, off, len), position);
          if (n > 0) {
            position += n;
            return n;
          }
        }
        if (ended) {
          return -1;
        }
        synchronized (grew) {
          try {
            grew.wait(20);
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
          }
        }
      }
    }

    @Override
    public void close() throws IOException {
      if (channel != null) {
        channel.close();
      }
    }
  }

  /**
   * Throws, when the import failed, a download's own failure if one failed (a blob
   * whose digest lies also makes a corrupt stream, and the importer, reading as the blob
   * arrives, may see the corruption before the download has checked the digest); else the
   * caller reports the importer's. Waits a little for downloads still ending.
   */
  private static void throwDownloadFailure(List<CompletableFuture<Path>> downloads)
      throws IOException {
    for (CompletableFuture<Path> f : downloads) {
      try {
        f.get(10, java.util.concurrent.TimeUnit.SECONDS);
      } catch (ExecutionException failed) {
        await(f); // throws the download's failure
      } catch (java.util.concurrent.TimeoutException | java.util.concurrent.CancellationException
          e) {
        // still running or cancelled: the importer's failure stands
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return;
      }
    }
  }

  private static Path await(CompletableFuture<Path> f) throws IOException {
    try {
      return f.get();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted", e);
    } catch (ExecutionException e) {
      Throwable c = e.getCause() instanceof java.util.concurrent.CompletionException
          && e.getCause().getCause() != null ? e.getCause().getCause() : e.getCause();
      if (c instanceof RuntimeException r) {
        throw r;
      }
      if (c instanceof IOException io) {
        throw new IOException(io.getMessage(), io);
      }
      throw new IOException(c);
    }
  }

  private static boolean isIndex(Registry.Manifest m) {
    if (m.mediaType().equals(MediaTypes.OCI_INDEX) || m.mediaType().equals(MediaTypes.DOCKER_LIST)) {
      return true;
    }
    if (m.mediaType().isEmpty() || m.mediaType().equals("application/json")) {
      JsonNode doc = Json.parse(m.bytes(), "manifest " + m.digest());
      String t = doc.path("mediaType").asText("");
      return t.equals(MediaTypes.OCI_INDEX) || t.equals(MediaTypes.DOCKER_LIST)
          || (t.isEmpty() && doc.has("manifests"));
    }
    return false;
  }

  private static String type(Registry.Manifest m, JsonNode doc) {
    String inDoc = doc.path("mediaType").asText("");
    if (!m.mediaType().isEmpty() && !m.mediaType().equals("application/json")) {
      return m.mediaType();
    }
    if (!inDoc.isEmpty()) {
      return inDoc;
    }
    return doc.has("config") ? MediaTypes.OCI_MANIFEST : "";
  }

  private JsonNode choose(JsonNode index, Reference ref, Registry.Manifest m) {
    JsonNode manifests = index.get("manifests");
    if (manifests == null || !manifests.isArray() || manifests.isEmpty()) {
      throw new BadInputException(ref + ": index " + m.digest() + " lists no manifests");
    }
    String[] want = platform.split("/");
    List<String> offered = new ArrayList<>();
    JsonNode best = null;
    for (JsonNode e : manifests) {
      JsonNode p = e.path("platform");
      String os = p.path("os").asText("");
      String arch = p.path("architecture").asText("");
      String variant = p.path("variant").asText("");
      offered.add(os + "/" + arch + (variant.isEmpty() ? "" : "/" + variant));
      if (os.equals(want[0]) && arch.equals(want[1])
          && (want.length < 3 || variant.equals(want[2]))) {
        if (best == null) {
          best = e;
        }
      }
    }
    if (best == null) {
      throw new NotFoundException(ref + " has no image for " + platform + " (it has "
          + Text.clip(String.join(", ", offered)) + "; choose with --platform)");
    }
    return best;
  }
}
