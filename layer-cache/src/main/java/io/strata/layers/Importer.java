package io.strata.layers;

import io.strata.layers.archive.Archive;
import io.strata.layers.archive.Compression;
import io.strata.layers.archive.DigestingInputStream;
import io.strata.layers.archive.DockerArchive;
import io.strata.layers.archive.ImageConfig;
import io.strata.layers.archive.ImageSource;
import io.strata.layers.archive.LayerExtractor;
import io.strata.layers.archive.OciLayout;
import io.strata.layers.archive.ReadAhead;
import io.strata.layers.archive.SpaceBudget;
import io.strata.layers.archive.TarSplit;
import io.strata.layers.base.BadInputException;
import io.strata.layers.base.Digest;
import io.strata.layers.base.Json;
import io.strata.layers.base.NotFoundException;
import io.strata.layers.base.Progress;
import java.io.BufferedInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.regex.Pattern;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveInputStream;

/**
 * One import: finds what kind of source it is, reads and verifies every layer into the staging
 * directory, and only then publishes layers, image and names, in that order. A failure before
 * publishing leaves the store as it was; a kill during publishing leaves only whole layers and
 * at worst an unnamed image, both of which {@code gc} removes.
 */
final class Importer {
  /**
   * Member names of a docker-archive (docker's own, and go-containerregistry's as crane and
   * ko write it: {@code sha256:HEX} configs, {@code HEX.tar.gz} layers) or an oci-archive.
   */
  private static final Pattern ARCHIVE_MEMBER = Pattern.compile(
      "manifest\\.json|repositories|oci-layout|index\\.json|blobs|blobs/sha256"
          + "|blobs/sha256/[0-9a-f]{64}|[0-9a-f]{64}(\\.json|\\.tar|\\.tar\\.gz)?"
          + "|sha256:[0-9a-f]{64}|[0-9a-f]{64}/(VERSION|json|layer\\.tar)?");

  private final LayerStore store;
  private final Path staging;
  private final Progress progress;
  private final String now = Instant.now().toString();
  private final SpaceBudget budget;

  Importer(LayerStore store, Path staging, Progress progress) throws IOException {
    this.store = store;
    this.staging = staging;
    this.progress = progress;
    this.budget = SpaceBudget.of(staging);
  }

  ImageRecord run(Path source, String name, String ref) throws IOException {
    if (!Files.exists(source)) {
      throw new NotFoundException("no such file or directory: " + source);
    }
    if (Files.isDirectory(source)) {
      if (!Files.exists(source.resolve("oci-layout"))) {
        throw new BadInputException(source + ": a directory must be an OCI image layout"
            + " (it has no oci-layout file)");
      }
      try (Archive a = new Archive.Directory(source)) {
        return store(OciLayout.read(a, ref), source, name);
      }
    }
    Compression compression;
    try (BufferedInputStream in = new BufferedInputStream(Files.newInputStream(source))) {
      compression = Compression.detect(in, source.toString());
    }
    String kind = classify(source, compression);
    if (kind == null) {
      return store(bareLayer(source), source, name);
    }
    if (compression != Compression.NONE) {
      progress.message("reading " + source.getFileName());
    }
    try (Archive a = compression == Compression.NONE ? new Archive.Tar(source, source.toString())
        : new Archive.Streamed(source, compression, source.toString(), staging, budget)) {
      ImageSource image = kind.equals("docker") ? DockerArchive.read(a, ref) : OciLayout.read(a, ref);
      return store(image, source, name);
    }
  }

  /**
   * Tells a docker-archive ("docker") or oci-archive ("oci") from a bare layer (null) by its
   * member names. A top-level manifest.json makes a docker-archive, whatever else is beside it
   * (it must then parse as one: DockerArchive refuses it otherwise). The scan stops at the first
   * nested name that no image archive holds, as a root filesystem's {@code etc/passwd}.
   */
  private static String classify(Path source, Compression compression) {
    boolean manifest = false;
    boolean layout = false;
    try (InputStream raw = new BufferedInputStream(Files.newInputStream(source), 1 << 16);
        TarArchiveInputStream tar = new TarArchiveInputStream(compression.decompress(raw))) {
      TarArchiveEntry e;
      while ((e = tar.getNextEntry()) != null) {
        String n = e.getName();
        n = n.startsWith("./") ? n.substring(2) : n;
        n = n.endsWith("/") ? n.substring(0, n.length() - 1) : n;
        if (n.isEmpty() || n.equals(".")) {
          continue;
        }
        if (!ARCHIVE_MEMBER.matcher(n).matches() && n.indexOf('/') >= 0) {
          break; // a layer's tree, or an archive with a stray member: manifest.json decides
        }
        manifest |= n.equals("manifest.json");
        layout |= n.equals("oci-layout");
      }
    } catch (IOException | RuntimeException e) {
      return null; // not readable as an archive: the layer import reports the damage precisely
    }
    return manifest ? "docker" : layout ? "oci" : null;
  }

  private ImageSource bareLayer(Path file) throws IOException {
    long size = Files.size(file);
    ImageSource.LayerSource layer = new ImageSource.LayerSource(file.getFileName().toString(),
        null, size, null, () -> Files.newInputStream(file));
    return new ImageSource(file.toString(), List.of(layer), null, null, null, List.of());
  }

  private ImageRecord store(ImageSource image, Path source, String name) throws IOException {
    return store(image, source.toAbsolutePath().toString(), source, name);
  }

  /**
   * Stores an image read from somewhere other than a file (a registry, a commit). A layer whose
   * opener is null is one the store already holds and was not fetched.
   */
  ImageRecord storeFrom(ImageSource image, String sourceText, String name) throws IOException {
    // "" stores the image without a name: its layers stay for whoever pins them, the record
    // goes at the next gc
    return store(image, sourceText, null, java.util.Objects.requireNonNull(name));
  }

  private ImageRecord store(ImageSource image, String sourceText, Path source, String name)
      throws IOException {
    List<Digest> diffIds = new ArrayList<>();
    List<Path> staged = new ArrayList<>();
    int count = image.layers().size();
    if (count == 0) {
      throw new BadInputException(sourceText + ": the image has no layers");
    }
    for (int i = 0; i < count; i++) {
      ImageSource.LayerSource layer = image.layers().get(i);
      progress.layerStarted(i + 1, count, layer.label(), layer.size());
      boolean have = layer.diffId() != null && store.hasLayer(layer.diffId());
      Path dir = staging.resolve("layer-" + i);
      if (!have && layer.opener() == null) {
        throw new NotFoundException(layer.label() + " (" + layer.diffId() + ") is no longer in"
            + " the store");
      }
      Digest diffId = have && layer.opener() == null ? layer.diffId()
          : have ? verifyOnly(layer) : extract(layer, dir);
      diffIds.add(diffId);
      staged.add(have || store.hasLayer(diffId) ? null : dir);
      progress.layerDone(i + 1, count, layer.label(), staged.get(i) == null);
    }

    byte[] config = image.config() != null ? image.config() : ImageConfig.forLayers(diffIds);
    Digest id = image.configDigest() != null ? image.configDigest() : Digest.of(config);
    List<String> names = new ArrayList<>();
    if (name != null) {
      if (!name.isEmpty()) {
        names.add(name);
      }
    } else {
      for (String n : image.names()) {
        names.add(nameOrDefault(n, source));
      }
      if (names.isEmpty()) {
        names.add(nameOrDefault(null, source));
      }
    }

    // Everything is verified; from here on only whole things are renamed into place.
    for (int i = 0; i < staged.size(); i++) {
      if (staged.get(i) != null && !store.publishLayer(staged.get(i), diffIds.get(i))) {
        store.log().accept("layer " + diffIds.get(i) + " was stored meanwhile by another import");
      }
    }
    ImageRecord record = new ImageRecord(id, List.of(), image.manifestDigest(), diffIds,
        Digest.chainId(diffIds), sourceText, now);
    Path imageDir = staging.resolve("image");
    Files.createDirectory(imageDir);
    Files.write(imageDir.resolve("config.json"), config);
    Json.writeAtomically(imageDir.resolve("image.json"), record);
    if (!store.publishImage(imageDir, id)) {
      store.log().accept("image " + id.shortHex() + " was already stored; updating its names");
    }
    store.tag(id, names);
    return record.withNames(names);
  }

  /** Extracts a layer into {@code dir}/diff and checks every digest declared for it. */
  private Digest extract(ImageSource.LayerSource layer, Path dir) throws IOException {
    Files.createDirectory(dir);
    Path tree = dir.resolve("diff");
    Files.createDirectory(tree);
    String label = layer.diffId() != null ? layer.diffId().toString() : layer.label();
    LayerExtractor.Result result;
    DigestingInputStream raw;
    try (InputStream in = layer.opener().open()) {
      raw = new DigestingInputStream(new BufferedInputStream(in, 1 << 16), progress,
          layer.blobDigest() != null);
      BufferedInputStream peek = new BufferedInputStream(raw, 1 << 16);
      Compression c = Compression.detect(peek, label);
      // decompression in a thread of its own, beside hashing and extraction (a 95 MiB gzip
      // layer of Debian: see ReadAhead's commit)
      InputStream tar = c.decompress(peek);
      ReadAhead ahead = c == Compression.NONE ? null : ReadAhead.of(tar, "decompress " + label);
      try (java.io.OutputStream split = TarSplit.create(dir.resolve(TarSplit.FILE))) {
        result = new LayerExtractor(label, tree, budget).extract(ahead != null ? ahead : tar,
            split);
      } finally {
        if (ahead != null) {
          ahead.close(); // its thread stops; the streams under it stay open for the drain below
        }
      }
      raw.drain();
    }
    check(layer, label, raw, result.diffId());
    LayerRecord record = new LayerRecord(result.diffId(), result.tarBytes(), result.diskBytes(),
        result.entries(), now);
    Json.writeAtomically(dir.resolve("layer.json"), record);
    return result.diffId();
  }

  /** Reads a layer the store already has, checking its digests without writing anything. */
  private Digest verifyOnly(ImageSource.LayerSource layer) throws IOException {
    String label = layer.diffId().toString();
    DigestingInputStream raw;
    DigestingInputStream tar;
    try (InputStream in = layer.opener().open()) {
      raw = new DigestingInputStream(new BufferedInputStream(in, 1 << 16), progress);
      BufferedInputStream peek = new BufferedInputStream(raw, 1 << 16);
      Compression c = Compression.detect(peek, label);
      tar = new DigestingInputStream(c.decompress(peek), null);
      tar.drain();
      raw.drain();
    } catch (BadInputException e) {
      throw e;
    } catch (IOException e) {
      throw new BadInputException("layer " + label + ": corrupt or truncated stream: "
          + e.getMessage(), e);
    }
    check(layer, label, raw, tar.digest());
    return tar.digest();
  }

  private static void check(ImageSource.LayerSource layer, String label, DigestingInputStream raw,
      Digest diffId) {
    if (layer.blobDigest() != null) {
      Digest blob = raw.digest();
      if (!blob.equals(layer.blobDigest())) {
        throw new BadInputException("layer " + label + " (" + layer.label()
            + "): blob digest mismatch: the manifest says " + layer.blobDigest() + ", the blob is "
            + blob);
      }
    }
    if (layer.size() >= 0 && raw.count() != layer.size()) {
      throw new BadInputException("layer " + label + " (" + layer.label() + "): blob is "
          + raw.count() + " bytes, the manifest says " + layer.size());
    }
    if (layer.diffId() != null && !layer.diffId().equals(diffId)) {
      throw new BadInputException("layer " + layer.label() + ": DiffID mismatch: the config says "
          + layer.diffId() + ", the uncompressed tar is " + diffId);
    }
  }

  /**
   * A valid name from the source, or one made from the source's file name. An OCI ref.name
   * without ':' or '/' is a bare tag and is put on the file-derived name.
   */
  private static String nameOrDefault(String candidate, Path source) {
    String base = source.getFileName().toString().toLowerCase(Locale.ROOT)
        .replaceAll("\\.(tar|tgz|gz|zst|zstd|oci)$", "").replaceAll("\\.(tar)$", "")
        .replaceAll("[^a-z0-9._-]", "-").replaceAll("^[^a-z0-9]+|[^a-z0-9]+$", "");
    base = base.isEmpty() ? "image" : base;
    if (candidate != null) {
      String full = candidate.contains(":") || candidate.contains("/")
          ? candidate : base + ":" + candidate;
      try {
        return LayerStore.normalizeName(full);
      } catch (IllegalArgumentException notAName) {
        // not usable as a name: fall back to the file name
      }
    }
    return LayerStore.normalizeName(base);
  }
}
