package io.strata.layers;

import io.strata.layers.archive.ImageConfig;
import io.strata.layers.archive.MediaTypes;
import io.strata.layers.archive.OciLayout;
import io.strata.layers.base.Digest;
import io.strata.layers.base.Json;
import io.strata.layers.base.Progress;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.DigestOutputStream;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.zip.GZIPOutputStream;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;

/**
 * Writes stored images out: as a docker-archive ({@code docker save}'s form, which {@code docker
 * load}, {@code podman load} and skopeo read), as an OCI image layout directory, or as an
 * oci-archive (that layout in a tar). Layer tars are rebuilt byte for byte from the store, so
 * every DiffID and image id stays what it was. Files are written beside their target and renamed
 * into place, so a failed save leaves nothing half-written.
 */
public final class ImageWriter {

  /** One image to write and the name it goes out under (null for none). */
  record Item(ImageRecord image, String name) {}

  /** A blob ready to be written or sent: where its bytes are, its digest and size. */
  public record Blob(Path file, Digest digest, long size, String mediaType) {}

  private final LayerStore store;
  private final Path scratch;
  private final Progress progress;
  /** The layers written so far and the layers this writer is to go through, for "layer i/n". */
  private int done;
  private int count;

  ImageWriter(LayerStore store, Path scratch, Progress progress) {
    this.store = store;
    this.scratch = scratch;
    this.progress = progress;
  }

  /** How many layers the work ahead goes through (progress says "layer i/n"). */
  void expectLayers(int n) {
    done = 0;
    count = n;
  }

  /**
   * A stored layer's tar for {@code verb} ("compressing", "writing"): progress hears of its
   * start, of every byte read, and of its end.
   */
  private InputStream layerTar(Digest d, String verb) {
    int index = ++done;
    return layerTar(d, verb, index, Math.max(count, index));
  }

  private InputStream layerTar(Digest d, String verb, int index, int of) {
    String label = d.shortHex();
    progress.layerWork(verb, index, of, label, store.layer(d).tarSize());
    InputStream in = store.openLayerTar(d);
    return new java.io.FilterInputStream(in) {
      long n;
      boolean closed;

      @Override
      public int read() throws IOException {
        int b = super.read();
        if (b >= 0) {
          counted(1);
        }
        return b;
      }

      @Override
      public int read(byte[] buf, int off, int len) throws IOException {
        int r = super.read(buf, off, len);
        if (r > 0) {
          counted(r);
        }
        return r;
      }

      private void counted(int k) {
        n += k;
        progress.bytesRead(k);
      }

      @Override
      public void close() throws IOException {
        super.close();
        if (!closed) {
          closed = true;
          progress.layerWorkDone(verb, index, of, label, n);
        }
      }
    };
  }

  /** The distinct layers of some images, for {@link #expectLayers}. */
  static int distinctLayers(List<Item> items) {
    Set<Digest> all = new LinkedHashSet<>();
    for (Item i : items) {
      all.addAll(i.image().diffIds());
    }
    return all.size();
  }

  public Path scratch() {
    return scratch;
  }

  /** A layer as a gzip blob in the scratch directory (deterministic: no name, no time). */
  public Blob gzipLayer(Digest diffId) throws IOException {
    int index = ++done;
    return gzipLayer(diffId, index, Math.max(count, index));
  }

  /** The same, said in progress as layer {@code index} of {@code of}. */
  public Blob gzipLayer(Digest diffId, int index, int of) throws IOException {
    Path file = scratch.resolve("gz-" + diffId.hex());
    MessageDigest sha = Digest.newSha256();
    try (InputStream in = layerTar(diffId, "compressing", index, of);
        OutputStream out = new GZIPOutputStream(new DigestOutputStream(
            new java.io.BufferedOutputStream(Files.newOutputStream(file), 1 << 16), sha), 1 << 16)) {
      in.transferTo(out);
    }
    return new Blob(file, Digest.fromBytes(sha.digest()), Files.size(file), MediaTypes.OCI_LAYER_GZIP);
  }

  /** An OCI manifest for an image whose layers are {@code layers}. */
  public static byte[] manifest(byte[] config, List<Blob> layers) throws IOException {
    ObjectNode m = Json.MAPPER.createObjectNode();
    m.put("schemaVersion", 2);
    m.put("mediaType", MediaTypes.OCI_MANIFEST);
    ObjectNode c = m.putObject("config");
    c.put("mediaType", MediaTypes.OCI_CONFIG);
    c.put("digest", Digest.of(config).toString());
    c.put("size", config.length);
    ArrayNode ls = m.putArray("layers");
    for (Blob b : layers) {
      ObjectNode l = ls.addObject();
      l.put("mediaType", b.mediaType());
      l.put("digest", b.digest().toString());
      l.put("size", b.size());
    }
    return compact(m);
  }

  static byte[] compact(JsonNode n) throws IOException {
    return Json.MAPPER.writer().withoutFeatures(
        com.fasterxml.jackson.databind.SerializationFeature.INDENT_OUTPUT).writeValueAsBytes(n);
  }

  // ---------------------------------------------------------------- docker-archive

  /** Writes a docker-archive to {@code out} (replaced whole at the end). */
  void dockerArchive(List<Item> items, Path out) throws IOException {
    Path tmp = out.resolveSibling("." + out.getFileName() + ".strata-" + ProcessHandle.current().pid());
    try {
      try (TarArchiveOutputStream tar = tar(Files.newOutputStream(tmp))) {
        ArrayNode manifest = Json.MAPPER.createArrayNode();
        Set<Digest> written = new LinkedHashSet<>();
        for (Item item : items) {
          byte[] config = store.config(item.image());
          String configName = item.image().id().hex() + ".json";
          if (written.add(item.image().id())) {
            bytesEntry(tar, configName, config);
          }
          ObjectNode m = manifest.addObject();
          m.put("Config", configName);
          ArrayNode tags = m.putArray("RepoTags");
          if (item.name() != null) {
            tags.add(item.name());
          }
          ArrayNode layers = m.putArray("Layers");
          for (Digest d : item.image().diffIds()) {
            String name = d.hex() + ".tar";
            layers.add(name);
            if (written.add(d)) {
              layerEntry(tar, name, d);
            }
          }
        }
        bytesEntry(tar, "manifest.json", compact(manifest));
      }
      Files.move(tmp, out, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    } finally {
      Files.deleteIfExists(tmp);
    }
  }

  // ---------------------------------------------------------------- OCI layout

  /**
   * Writes (or adds to) an OCI image layout directory. Blobs already there are kept; index.json
   * is replaced last, in one rename, so a reader sees the old layout or the new one.
   */
  void ociDirectory(List<Item> items, Path dir, boolean gzip) throws IOException {
    Path blobs = dir.resolve("blobs").resolve("sha256");
    if (Files.exists(dir) && !Files.isDirectory(dir)) {
      throw new IllegalArgumentException(dir + " exists and is not a directory");
    }
    if (Files.isDirectory(dir) && !Files.exists(dir.resolve("oci-layout"))
        && Files.list(dir).findAny().isPresent()) {
      throw new IllegalArgumentException(dir + " is a directory that is neither empty nor an"
          + " OCI image layout; refusing to write into it");
    }
    Files.createDirectories(blobs);
    Map<String, JsonNode> entries = new LinkedHashMap<>();
    Path index = dir.resolve("index.json");
    if (Files.isRegularFile(index)) {
      for (JsonNode e : Json.parse(Files.readAllBytes(index), index.toString()).path("manifests")) {
        entries.put(e.path("annotations").path(OciLayout.REF_NAME).asText(
            e.path("digest").asText()), e);
      }
    }
    for (Item item : items) {
      byte[] config = store.config(item.image());
      putBlob(blobs, Digest.of(config), out -> out.write(config));
      List<Blob> layers = new ArrayList<>();
      for (Digest d : item.image().diffIds()) {
        if (gzip) {
          Blob b = gzipLayer(d);
          putBlob(blobs, b.digest(), out -> Files.copy(b.file(), out));
          Files.deleteIfExists(b.file());
          layers.add(b);
        } else {
          putBlob(blobs, d, out -> {
            try (InputStream in = layerTar(d, "writing")) {
              in.transferTo(out);
            }
          });
          layers.add(new Blob(null, d, store.layer(d).tarSize(), MediaTypes.OCI_LAYER));
        }
      }
      byte[] manifest = manifest(config, layers);
      Digest md = Digest.of(manifest);
      putBlob(blobs, md, out -> out.write(manifest));
      ObjectNode e = Json.MAPPER.createObjectNode();
      e.put("mediaType", MediaTypes.OCI_MANIFEST);
      e.put("digest", md.toString());
      e.put("size", manifest.length);
      ObjectNode platform = e.putObject("platform");
      platform.put("architecture", ImageConfig.goArch());
      platform.put("os", "linux");
      if (item.name() != null) {
        e.putObject("annotations").put(OciLayout.REF_NAME, item.name());
      }
      entries.put(item.name() != null ? item.name() : md.toString(), e);
    }
    ObjectNode idx = Json.MAPPER.createObjectNode();
    idx.put("schemaVersion", 2);
    idx.put("mediaType", MediaTypes.OCI_INDEX);
    ArrayNode ms = idx.putArray("manifests");
    entries.values().forEach(ms::add);
    Json.writeAtomically(dir.resolve("oci-layout"),
        "{\"imageLayoutVersion\":\"1.0.0\"}".getBytes(java.nio.charset.StandardCharsets.US_ASCII));
    Json.writeAtomically(index, compact(idx));
  }

  /** Writes an oci-archive: the layout built in scratch, then put in a tar. */
  void ociArchive(List<Item> items, Path out, boolean gzip) throws IOException {
    Path layout = scratch.resolve("oci-layout");
    ociDirectory(items, layout, gzip);
    Path tmp = out.resolveSibling("." + out.getFileName() + ".strata-" + ProcessHandle.current().pid());
    try {
      try (TarArchiveOutputStream tar = tar(Files.newOutputStream(tmp))) {
        fileEntry(tar, "oci-layout", layout.resolve("oci-layout"));
        fileEntry(tar, "index.json", layout.resolve("index.json"));
        dirEntry(tar, "blobs/");
        dirEntry(tar, "blobs/sha256/");
        try (var files = Files.list(layout.resolve("blobs/sha256"))) {
          for (Path p : files.sorted().toList()) {
            fileEntry(tar, "blobs/sha256/" + p.getFileName(), p);
          }
        }
      }
      Files.move(tmp, out, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    } finally {
      Files.deleteIfExists(tmp);
    }
  }

  @FunctionalInterface
  private interface Writer {
    void write(OutputStream out) throws IOException;
  }

  /** Writes a blob unless present, checking what was written against its digest. */
  private void putBlob(Path blobs, Digest d, Writer w) throws IOException {
    Path target = blobs.resolve(d.hex());
    if (Files.isRegularFile(target)) {
      return;
    }
    Path tmp = blobs.resolve("." + d.hex() + ".tmp-" + ProcessHandle.current().pid());
    MessageDigest sha = Digest.newSha256();
    try {
      try (OutputStream out = new DigestOutputStream(new java.io.BufferedOutputStream(
          Files.newOutputStream(tmp), 1 << 16), sha)) {
        w.write(out);
      }
      Digest got = Digest.fromBytes(sha.digest());
      if (!got.equals(d)) {
        throw new IOException("blob " + d + " came out as " + got);
      }
      Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
    } finally {
      Files.deleteIfExists(tmp);
    }
  }

  // ---------------------------------------------------------------- tar helpers

  private static TarArchiveOutputStream tar(OutputStream out) {
    TarArchiveOutputStream t = new TarArchiveOutputStream(new java.io.BufferedOutputStream(out,
        1 << 16));
    t.setLongFileMode(TarArchiveOutputStream.LONGFILE_POSIX);
    t.setBigNumberMode(TarArchiveOutputStream.BIGNUMBER_POSIX);
    return t;
  }

  private static TarArchiveEntry entry(String name, long size) {
    TarArchiveEntry e = new TarArchiveEntry(name);
    e.setSize(size);
    e.setMode(0644);
    e.setModTime(0);
    return e;
  }

  private static void bytesEntry(TarArchiveOutputStream tar, String name, byte[] bytes)
      throws IOException {
    tar.putArchiveEntry(entry(name, bytes.length));
    tar.write(bytes);
    tar.closeArchiveEntry();
  }

  private static void fileEntry(TarArchiveOutputStream tar, String name, Path file)
      throws IOException {
    tar.putArchiveEntry(entry(name, Files.size(file)));
    Files.copy(file, tar);
    tar.closeArchiveEntry();
  }

  private static void dirEntry(TarArchiveOutputStream tar, String name) throws IOException {
    TarArchiveEntry e = new TarArchiveEntry(name);
    e.setMode(040755);
    e.setModTime(0);
    tar.putArchiveEntry(e);
    tar.closeArchiveEntry();
  }

  private void layerEntry(TarArchiveOutputStream tar, String name, Digest d) throws IOException {
    long size = store.layer(d).tarSize();
    tar.putArchiveEntry(entry(name, size));
    long n;
    try (InputStream in = layerTar(d, "writing")) {
      n = in.transferTo(tar);
    }
    if (n != size) {
      throw new IOException("layer " + d + " rebuilt to " + n + " bytes, its record says " + size);
    }
    tar.closeArchiveEntry();
  }
}
