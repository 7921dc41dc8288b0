package io.strata.layers;

import io.strata.layers.archive.ImageConfig;
import io.strata.layers.archive.ImageSource;
import io.strata.layers.archive.TarSplit;
import io.strata.layers.base.Digest;
import io.strata.layers.base.Json;
import io.strata.layers.base.NotFoundException;
import io.strata.layers.base.Progress;
import io.strata.layers.base.StoreException;
import io.strata.layers.fs.Trees;
import com.fasterxml.jackson.core.type.TypeReference;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.DirectoryStream;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.UUID;
import java.util.function.Consumer;

/**
 * The local store of read-only layers and the images made of them.
 *
 * <p>Layout under the root:
 * <pre>
 *   layers/HEX/diff/…        a layer's extracted tree (OCI whiteouts kept), HEX its DiffID
 *   layers/HEX/layer.json    its {@link LayerRecord}
 *   images/HEX/config.json   an image's config, HEX = sha256 of it (the image id)
 *   images/HEX/image.json    its {@link ImageRecord}, names left out
 *   images/HEX/manifest.json the manifest it came with, if any
 *   repositories.json        NAME:TAG → image id
 *   tmp/                     staging; whatever is here when nobody holds store.lock is garbage
 *   store.lock, meta.lock    see below
 * </pre>
 *
 * <p>Locking: {@code store.lock} is held shared by every import for its whole run and
 * exclusively by {@code gc} and by the start-up cleaner, so gc never removes a layer an import
 * has just put in place, and the cleaner never removes a running import's staging area.
 * {@code meta.lock} is held exclusively, briefly, by whoever rewrites {@code repositories.json}
 * or removes an image directory. Every directory that appears under {@code layers/} or
 * {@code images/} got there by one rename of a complete, verified staging directory.
 */
public final class LayerStore {
  private final Path root;
  private final Path layers;
  private final Path images;
  private final Path tmp;
  private final FileMutex storeLock;
  private final FileMutex metaLock;
  private final Consumer<String> log;
  private final BlobInfoCache blobInfos;

  private LayerStore(Path root, Consumer<String> log) {
    this.root = root;
    this.layers = root.resolve("layers");
    this.images = root.resolve("images");
    this.tmp = root.resolve("tmp");
    this.storeLock = FileMutex.at(root.resolve("store.lock"));
    this.metaLock = FileMutex.at(root.resolve("meta.lock"));
    this.log = log;
    this.blobInfos = new BlobInfoCache(d -> layers.resolve(d.hex()), metaLock);
  }

  /** The compressed forms known of each layer and where they are (for push). */
  public BlobInfoCache blobInfos() {
    return blobInfos;
  }

  /**
   * Opens (creating if needed) the store at {@code root} and removes what an interrupted
   * command left in its staging area.
   *
   * @param log receives one line for each thing the store does that a person should know
   */
  public static LayerStore open(Path root, Consumer<String> log) {
    Path abs = root.toAbsolutePath().normalize();
    LayerStore store = new LayerStore(abs, log);
    try {
      StoreLayout.secure(abs);
    } catch (IOException e) {
      throw new StoreException("cannot create the store at " + abs + ": " + e.getMessage()
          + " (choose another with --root or $STRATA_ROOT)", e);
    }
    store.cleanStaleStaging();
    return store;
  }

  /**
   * Picks the store root from an explicit option, then $STRATA_ROOT, then the default of whoever
   * runs the command ({@link io.strata.layers.fs.Places#defaultStore}).
   */
  public static Path rootFrom(Path option) {
    if (option != null) {
      return option;
    }
    String env = io.strata.layers.base.Invocation.current().getenv("STRATA_ROOT");
    return env != null && !env.isBlank() ? Path.of(env) : io.strata.layers.fs.Places.defaultStore();
  }

  public Path root() {
    return root;
  }

  /**
   * Imports an OCI image layout (directory or tar), a docker-archive, or a bare layer tar
   * (plain, gzip or zstd). Everything is verified before anything is stored.
   *
   * @param name the NAME[:TAG] to give the image; null keeps the source's own names
   * @param ref which image of a multi-image source to take; null when there is one
   */
  public ImageRecord importImage(Path source, String name, String ref, Progress progress) {
    String tag = name == null ? null : normalizeName(name);
    Path staging = tmp.resolve("import-" + UUID.randomUUID());
    try (FileMutex.Held held = storeLock.shared();
        Unfinished u = Unfinished.begin(staging, "import of " + source.getFileName(), log)) {
      Files.createDirectory(staging);
      return new Importer(this, staging, progress).run(source, tag, ref);
    } catch (IOException e) {
      throw new StoreException("import of " + source + " failed: " + e.getMessage(), e);
    } finally {
      try {
        Trees.deleteRecursively(staging);
      } catch (IOException e) {
        log.accept("could not remove staging area " + staging + ": " + e.getMessage()
            + " (the next strata command will)");
      }
    }
  }

  /** Work that needs a scratch directory in the store and the store's layers kept meanwhile. */
  @FunctionalInterface
  public interface ScratchWork<T> {
    T run(Path scratch) throws IOException;
  }

  /**
   * Runs {@code work} with a scratch directory of its own under {@code tmp/}, the store's
   * layers kept from gc meanwhile (the store lock held shared); the directory is removed after,
   * and by a shutdown hook if the process is asked to end first. An I/O failure becomes a
   * {@link StoreException} naming {@code what}.
   */
  public <T> T withScratch(String what, ScratchWork<T> work) {
    Path scratch = tmp.resolve(what.replaceFirst(" .*", "") + "-" + UUID.randomUUID());
    try (FileMutex.Held held = storeLock.shared();
        Unfinished u = Unfinished.begin(scratch, what, log)) {
      Files.createDirectory(scratch);
      return work.run(scratch);
    } catch (IOException e) {
      throw new StoreException(what + " failed: " + e.getMessage(), e);
    } finally {
      try {
        Trees.deleteRecursively(scratch);
      } catch (IOException e) {
        log.accept("could not remove " + scratch + ": " + e.getMessage()
            + " (the next strata command will)");
      }
    }
  }

  /**
   * Stores an image from {@code source}, verified as an import is (all or nothing), staging
   * in {@code staging}; {@code name} is the NAME:TAG to give it, or null for the source's own.
   */
  public ImageRecord store(ImageSource source, Path staging, Progress progress, String origin,
      String name) throws IOException {
    return new Importer(this, staging, progress).storeFrom(source, origin, name);
  }

  /** A writer of images out of this store (save, push), working in {@code scratch}. */
  public ImageWriter imageWriter(Path scratch, Progress progress) {
    return new ImageWriter(this, scratch, progress);
  }

  /** The forms {@link #save} writes. */
  public enum SaveFormat { DOCKER_ARCHIVE, OCI_DIR, OCI_ARCHIVE }

  /**
   * Writes images out, each under the name it was asked by (an id names none).
   *
   * @param gzip compress layers (OCI forms only; a docker-archive holds plain tars)
   */
  public void save(List<String> refs, Path out, SaveFormat format, boolean gzip,
      Progress progress) {
    List<ImageWriter.Item> items = new ArrayList<>();
    for (String ref : refs) {
      ImageRecord r = resolve(ref);
      String asked = normalizeNameOrNull(ref);
      String n = null;
      for (String x : r.names()) {
        if (asked != null && (x.equals(asked) || x.endsWith("/" + asked))) {
          n = x;
          break;
        }
      }
      items.add(new ImageWriter.Item(r, n));
    }
    withScratch("save of " + String.join(", ", refs), scratch -> {
      ImageWriter w = new ImageWriter(this, scratch, progress);
      w.expectLayers(ImageWriter.distinctLayers(items));
      switch (format) {
        case DOCKER_ARCHIVE -> w.dockerArchive(items, out);
        case OCI_DIR -> w.ociDirectory(items, out, gzip);
        case OCI_ARCHIVE -> w.ociArchive(items, out, gzip);
        default -> throw new AssertionError(format);
      }
      return null;
    });
  }

  /** Writes a layer tar for {@link #commit}. */
  @FunctionalInterface
  public interface LayerTarWriter {
    void write(OutputStream out) throws IOException;
  }

  /** What a commit made. */
  public record CommitResult(ImageRecord image, Digest diffId, long tarBytes) {}

  /**
   * Makes a new image of {@code base}'s layers plus one: the tar {@code writer} writes (a
   * container's changes). The config is the base's with the DiffID and a history entry
   * appended, and {@code changes} applied (Cmd, Entrypoint, Env, WorkingDir, User, Labels).
   *
   * @param base the image the changes were made on, or null for a layer on its own
   */
  public CommitResult commit(ImageRecord base, LayerTarWriter writer, String name,
      String comment, String author, Map<String, Object> changes, Progress progress) {
    String tag = normalizeName(name);
    return withScratch("commit of " + tag, scratch -> {
      Path tar = scratch.resolve("layer.tar");
      java.security.MessageDigest sha = Digest.newSha256();
      progress.layerWork("reading the changes into", 1, 1, "a layer tar", -1);
      long[] written = {0};
      try (OutputStream out = new java.security.DigestOutputStream(new java.io.BufferedOutputStream(
          new java.io.FilterOutputStream(Files.newOutputStream(tar)) {
            @Override
            public void write(byte[] b, int off, int len) throws IOException {
              out.write(b, off, len);
              written[0] += len;
              progress.bytesRead(len);
            }
          }, 1 << 16), sha)) {
        writer.write(out);
      }
      progress.layerWorkDone("reading the changes into", 1, 1, "a layer tar", written[0]);
      Digest diffId = Digest.fromBytes(sha.digest());
      List<Digest> diffIds = new ArrayList<>(base != null ? base.diffIds() : List.of());
      diffIds.add(diffId);
      byte[] config = ImageConfig.committed(base != null ? config(base) : null, diffIds, comment,
          author, changes);
      List<ImageSource.LayerSource> layers = new ArrayList<>();
      for (int i = 0; i < diffIds.size() - 1; i++) {
        layers.add(new ImageSource.LayerSource("layer " + (i + 1), null, -1, diffIds.get(i), null));
      }
      layers.add(new ImageSource.LayerSource("the committed changes", null, Files.size(tar),
          diffId, () -> Files.newInputStream(tar)));
      Path staging = Files.createDirectory(scratch.resolve("import"));
      ImageRecord r = new Importer(this, staging, progress).storeFrom(new ImageSource(
          "commit", layers, config, Digest.of(config), null, List.of(tag)), "commit", tag);
      return new CommitResult(r, diffId, Files.size(tar));
    });
  }

  /** All images, newest first. */
  public List<ImageRecord> images() {
    Map<Digest, List<String>> names = namesByImage();
    List<ImageRecord> out = new ArrayList<>();
    for (Path dir : list(images)) {
      Digest id = hexDir(dir);
      if (id == null) {
        continue;
      }
      try {
        ImageRecord r = Json.read(dir.resolve("image.json"), ImageRecord.class);
        out.add(r.withNames(names.getOrDefault(id, List.of())));
      } catch (NoSuchFileException gone) {
        // removed while we listed
      } catch (IOException e) {
        throw new StoreException("unreadable image record " + dir + ": " + e.getMessage(), e);
      }
    }
    out.sort(Comparator.comparing(ImageRecord::importedAt).reversed()
        .thenComparing(ImageRecord::id));
    return out;
  }

  /** All stored layers, by DiffID. */
  public List<LayerRecord> layers() {
    List<LayerRecord> out = new ArrayList<>();
    for (Path dir : list(layers)) {
      if (hexDir(dir) == null) {
        continue;
      }
      try {
        out.add(Json.read(dir.resolve("layer.json"), LayerRecord.class));
      } catch (NoSuchFileException gone) {
        // removed while we listed
      } catch (IOException e) {
        throw new StoreException("unreadable layer record " + dir + ": " + e.getMessage(), e);
      }
    }
    out.sort(Comparator.comparing(LayerRecord::diffId));
    return out;
  }

  /** Whether the layer with this DiffID is stored whole. */
  public boolean hasLayer(Digest diffId) {
    return Files.isRegularFile(layers.resolve(diffId.hex()).resolve("layer.json"));
  }

  /** The read-only tree of a stored layer, or an error if the store does not hold it. */
  public Path layerTree(Digest diffId) {
    if (!hasLayer(diffId)) {
      throw new NotFoundException("layer " + diffId + " is not in the store " + root);
    }
    return layers.resolve(diffId.hex()).resolve("diff");
  }

  /**
   * The layer's tar exactly as it was imported (its sha256 is the DiffID), rebuilt from the
   * layer's tree and its {@link TarSplit}. The stream fails at its end if the bytes are not the
   * layer's.
   */
  public InputStream openLayerTar(Digest diffId) {
    Path dir = layerTree(diffId).getParent();
    if (!TarSplit.exists(dir)) {
      throw new StoreException("layer " + diffId + " was stored by a strata that kept no"
          + " tar-split record, so its tar cannot be rebuilt; remove its images (`strata rmi`,"
          + " `strata gc`) and import or pull them again");
    }
    try {
      return TarSplit.open(dir, diffId);
    } catch (IOException e) {
      throw new StoreException("cannot read layer " + diffId + ": " + e.getMessage(), e);
    }
  }

  /** The record of a stored layer. */
  public LayerRecord layer(Digest diffId) {
    try {
      return Json.read(layerTree(diffId).resolveSibling("layer.json"), LayerRecord.class);
    } catch (IOException e) {
      throw new StoreException("unreadable record of layer " + diffId + ": " + e.getMessage(), e);
    }
  }

  /**
   * The manifest an image was pulled with, or null (imported from a file, committed). A push
   * to a registry that has its blobs sends it unchanged.
   */
  public byte[] pulledManifest(ImageRecord image) {
    Path f = images.resolve(image.id().hex()).resolve("manifest.json");
    try {
      return Files.isRegularFile(f) ? Files.readAllBytes(f) : null;
    } catch (IOException e) {
      throw new StoreException("cannot read " + f + ": " + e.getMessage(), e);
    }
  }

  /** Where an image was pulled from ({@code HOST/PATH}), or null. */
  public String pulledFrom(ImageRecord image) {
    Path f = images.resolve(image.id().hex()).resolve("pulled-from");
    try {
      return Files.isRegularFile(f) ? Files.readString(f).trim() : null;
    } catch (IOException e) {
      return null;
    }
  }

  /** Keeps the manifest an image was pulled with, and where from ({@code HOST/PATH}). */
  public void rememberManifest(Digest imageId, byte[] manifest, String from) throws IOException {
    Path dir = images.resolve(imageId.hex());
    Json.writeAtomically(dir.resolve("manifest.json"), manifest);
    Json.writeAtomically(dir.resolve("pulled-from"),
        from.getBytes(java.nio.charset.StandardCharsets.UTF_8));
  }

  /** Gives an image one more name (a NAME[:TAG] already in use moves to this image). */
  public String tag(String ref, String newName) {
    ImageRecord image = resolve(ref);
    String n = normalizeName(newName);
    try {
      tag(image.id(), List.of(n));
    } catch (IOException e) {
      throw new StoreException("cannot tag " + ref + ": " + e.getMessage(), e);
    }
    return n;
  }

  /**
   * Finds an image by NAME[:TAG] (":latest" when no tag is given), by full id
   * ({@code sha256:HEX} or HEX), or by a unique id prefix of at least 4 hex digits.
   */
  public ImageRecord resolve(String ref) {
    if (ref == null || ref.isBlank()) {
      throw new NotFoundException("no image named");
    }
    Map<String, Digest> repos = repositories();
    Digest byName = repos.get(normalizeNameOrNull(ref));
    if (byName != null) {
      return image(byName);
    }
    String shortName = normalizeNameOrNull(ref);
    if (shortName != null && isShortName(ref)) {
      // A pulled image is named HOST/PATH:TAG; its short name finds it if only one image has it.
      Set<Digest> found = new HashSet<>();
      for (Map.Entry<String, Digest> e : repos.entrySet()) {
        String n = e.getKey();
        if (n.endsWith("/" + shortName)) {
          String prefix = n.substring(0, n.length() - shortName.length() - 1);
          if (prefix.equals("docker.io/library") || !isShortName(prefix + "/x")) {
            found.add(e.getValue());
          }
        }
      }
      if (found.size() == 1) {
        return image(found.iterator().next());
      }
    }
    String hex = ref.startsWith("sha256:") ? ref.substring(7) : ref;
    if (hex.matches("[0-9a-f]{4,64}")) {
      List<ImageRecord> matches = new ArrayList<>();
      for (ImageRecord r : images()) {
        if (r.id().hex().startsWith(hex)) {
          matches.add(r);
        }
      }
      if (matches.size() == 1) {
        return matches.get(0);
      }
      if (matches.size() > 1) {
        throw new NotFoundException("image id prefix " + ref + " is ambiguous: " + matches.size()
            + " images match; give more digits");
      }
    }
    throw new NotFoundException("no image " + ref + " in " + root
        + " (see `strata images`)");
  }

  /** The raw config of an image, as imported (or as written for a bare layer). */
  public byte[] config(ImageRecord image) {
    try {
      return Files.readAllBytes(images.resolve(image.id().hex()).resolve("config.json"));
    } catch (IOException e) {
      throw new StoreException("cannot read the config of " + image.id() + ": " + e.getMessage(), e);
    }
  }

  /**
   * Removes a name; the image goes when its last name does. An id removes every name of that
   * image and the image. Layers stay until {@link #gc}. Returns the names removed.
   */
  public List<String> removeImage(String ref) {
    ImageRecord image = resolve(ref);
    String asName = normalizeNameOrNull(ref);
    try (FileMutex.Held held = metaLock.exclusive(log)) {
      Map<String, Digest> repos = new TreeMap<>(repositories());
      List<String> removed = new ArrayList<>();
      boolean byName = asName != null && image.id().equals(repos.get(asName));
      repos.entrySet().removeIf(e -> {
        boolean drop = byName ? e.getKey().equals(asName) : e.getValue().equals(image.id());
        if (drop) {
          removed.add(e.getKey());
        }
        return drop;
      });
      Json.writeAtomically(root.resolve("repositories.json"), repos);
      if (!repos.containsValue(image.id())) {
        retire(images.resolve(image.id().hex()));
        removed.add(image.id().toString());
      }
      return removed;
    } catch (IOException e) {
      throw new StoreException("cannot remove " + ref + ": " + e.getMessage(), e);
    }
  }

  /**
   * Removes the record of image {@code id} if no name points to it (its layers stay): for a
   * holder that pulled an image unnamed and now pins its layers itself. Returns whether it went.
   */
  public boolean removeIfUnnamed(Digest id) {
    try (FileMutex.Held held = metaLock.exclusive(log)) {
      if (repositories().containsValue(id) || !Files.isDirectory(images.resolve(id.hex()))) {
        return false;
      }
      retire(images.resolve(id.hex()));
      return true;
    } catch (IOException e) {
      throw new StoreException("cannot remove image " + id + ": " + e.getMessage(), e);
    }
  }

  /** What {@link #gc} did. */
  public record GcResult(List<Digest> removedLayers, long freedBytes, int removedImages) {}

  /**
   * Removes every layer that no image uses, and every image record without a name (such as
   * one whose import was killed after its layers were in place). Waits for running imports.
   */
  public GcResult gc() {
    List<Path> graves = new ArrayList<>();
    GcResult result;
    try (FileMutex.Held held = storeLock.exclusive(log)) {
      int removedImages = 0;
      try (FileMutex.Held meta = metaLock.exclusive(log)) {
        Set<Digest> named = new HashSet<>(repositories().values());
        for (Path dir : list(images)) {
          Digest id = hexDir(dir);
          if (id != null && !named.contains(id)) {
            moveAside(dir, graves);
            removedImages++;
          }
        }
      }
      Set<Digest> used = new HashSet<>(pinned());
      for (ImageRecord r : images()) {
        used.addAll(r.diffIds());
      }
      List<Digest> removed = new ArrayList<>();
      long freed = 0;
      for (LayerRecord l : layers()) {
        if (!used.contains(l.diffId())) {
          moveAside(layers.resolve(l.diffId().hex()), graves);
          removed.add(l.diffId());
          freed += l.contentSize();
        }
      }
      result = new GcResult(removed, freed, removedImages);
    } catch (IOException e) {
      throw new StoreException("gc failed: " + e.getMessage(), e);
    }
    // Deleted after the lock is released: out of sight already (one rename each), they no
    // longer keep imports waiting. A gc killed meanwhile leaves them in tmp/ for the next start.
    for (Path grave : graves) {
      try {
        Trees.deleteRecursively(grave);
      } catch (IOException e) {
        log.accept("could not remove " + grave + ": " + e.getMessage()
            + " (the next strata command will)");
      }
    }
    return result;
  }

  /** Which images use each layer, for showing how layers are shared. */
  public Map<Digest, List<ImageRecord>> layerUsage() {
    Map<Digest, List<ImageRecord>> usage = new LinkedHashMap<>();
    for (ImageRecord r : images()) {
      for (Digest d : new java.util.LinkedHashSet<>(r.diffIds())) {
        usage.computeIfAbsent(d, k -> new ArrayList<>()).add(r);
      }
    }
    return usage;
  }

  /**
   * Keeps layers from {@link #gc} while something outside the store (a mount, a container)
   * uses them, even if their image is removed. {@code owner} names the user, such as a mount
   * id. The pin belongs to this process: once it is gone (killed, say), the pin no longer
   * counts and the next gc removes it.
   */
  public void pin(String owner, List<Digest> diffIds) {
    pin(owner, diffIds, null);
  }

  /**
   * Keeps layers from {@link #gc} for as long as the file {@code whileExists} exists, whatever
   * process wrote the pin: for holders that outlive a process, such as the records of
   * containerd's snapshots that use stored layers (the snapshotter's metadata file). Null
   * ties the pin to this process, as {@link #pin(String, List)} does. Writing the pin again
   * replaces its layers.
   */
  public void pin(String owner, List<Digest> diffIds, Path whileExists) {
    checkOwner(owner);
    try {
      Path pins = root.resolve("pins");
      ProcessHandle self = ProcessHandle.current();
      Json.writeAtomically(pins.resolve(owner + ".json"), new Pin(self.pid(),
          self.info().startInstant().map(Object::toString).orElse(null), diffIds,
          whileExists == null ? null : whileExists.toAbsolutePath().toString()));
    } catch (IOException e) {
      throw new StoreException("cannot pin layers for " + owner + ": " + e.getMessage(), e);
    }
  }

  /**
   * A pin's file: the process that holds it (pid and start time, as pids are reused) and the
   * layers; or, with {@code whileExists}, the file whose existence holds it.
   */
  record Pin(long pid, String started, List<Digest> layers, String whileExists) {
    boolean holderAlive() {
      if (whileExists != null) {
        return Files.exists(Path.of(whileExists));
      }
      return ProcessHandle.of(pid).filter(ProcessHandle::isAlive)
          .map(p -> started == null
              || p.info().startInstant().map(Object::toString).orElse("").equals(started))
          .orElse(false);
    }
  }

  public void unpin(String owner) {
    checkOwner(owner);
    try {
      Files.deleteIfExists(root.resolve("pins").resolve(owner + ".json"));
    } catch (IOException e) {
      throw new StoreException("cannot unpin " + owner + ": " + e.getMessage(), e);
    }
  }

  private static void checkOwner(String owner) {
    if (!owner.matches("[A-Za-z0-9._-]{1,128}")) {
      throw new IllegalArgumentException("bad pin owner '" + owner + "'");
    }
  }

  /** The owners of the pins that hold each layer (pins whose holder is gone do not count). */
  public Map<Digest, List<String>> pinsByLayer() {
    Map<Digest, List<String>> out = new LinkedHashMap<>();
    try {
      livePins(false).forEach((owner, layers) -> {
        for (Digest d : new java.util.LinkedHashSet<>(layers)) {
          out.computeIfAbsent(d, k -> new ArrayList<>()).add(owner);
        }
      });
    } catch (IOException e) {
      throw new StoreException("cannot read the pins: " + e.getMessage(), e);
    }
    return out;
  }

  /** The layers of every pin whose holder is still there; the pins of gone holders are removed. */
  private Set<Digest> pinned() throws IOException {
    Set<Digest> out = new HashSet<>();
    livePins(true).values().forEach(out::addAll);
    return out;
  }

  /**
   * The layers of each pin whose holder is still there, by owner; with {@code removeGone}, the
   * pins of gone holders are removed.
   */
  private Map<String, List<Digest>> livePins(boolean removeGone) throws IOException {
    Map<String, List<Digest>> out = new LinkedHashMap<>();
    for (Path p : list(root.resolve("pins"))) {
      String file = p.getFileName().toString();
      if (!file.endsWith(".json")) {
        continue;
      }
      String owner = file.substring(0, file.length() - ".json".length());
      try {
        Pin pin = Json.MAPPER.readValue(p.toFile(), Pin.class);
        if (pin.holderAlive()) {
          out.put(owner, pin.layers());
        } else if (removeGone) {
          log.accept("removing the pin " + file + (pin.whileExists() != null
              ? ", whose holder " + pin.whileExists() + " is gone"
              : " of process " + pin.pid() + ", which is gone"));
          Files.deleteIfExists(p);
        }
      } catch (NoSuchFileException gone) {
        // unpinned while we read
      } catch (com.fasterxml.jackson.databind.exc.MismatchedInputException oldForm) {
        // a list of layers, as strata wrote before pins had holders: kept as it was
        out.put(owner, Json.MAPPER.readValue(p.toFile(), new TypeReference<List<Digest>>() {}));
      }
    }
    return out;
  }

  // ---- used by Importer ----

  Path tmp() {
    return tmp;
  }

  /** Where the store says what a person should know. */
  public Consumer<String> log() {
    return log;
  }

  /**
   * Puts a verified staging directory in place as layer {@code diffId}. Returns false when the
   * layer was already there (another import won the race); the staging copy is then left for
   * the caller's cleanup.
   */
  boolean publishLayer(Path staged, Digest diffId) throws IOException {
    return publish(staged, layers.resolve(diffId.hex()));
  }

  boolean publishImage(Path staged, Digest id) throws IOException {
    return publish(staged, images.resolve(id.hex()));
  }

  /** Points each name at {@code id}, taking it from whichever image had it. */
  void tag(Digest id, List<String> names) throws IOException {
    if (names.isEmpty()) {
      return;
    }
    try (FileMutex.Held held = metaLock.exclusive(log)) {
      Map<String, Digest> repos = new TreeMap<>(repositories());
      for (String n : names) {
        repos.put(n, id);
      }
      Json.writeAtomically(root.resolve("repositories.json"), repos);
    }
  }

  private boolean publish(Path staged, Path target) throws IOException {
    try {
      Files.move(staged, target, StandardCopyOption.ATOMIC_MOVE);
      return true;
    } catch (AtomicMoveNotSupportedException e) {
      throw new StoreException("the store's tmp and data directories must be on one filesystem: "
          + e.getMessage(), e);
    } catch (FileAlreadyExistsException | DirectoryNotEmptyException exists) {
      return false;
    } catch (java.nio.file.FileSystemException e) {
      // rename(2) onto a non-empty directory says ENOTEMPTY, which the JDK reports generically.
      if (Files.exists(target, LinkOption.NOFOLLOW_LINKS)) {
        return false;
      }
      throw e;
    }
  }

  /** Moves a directory out of sight in one rename, adding where it went to {@code graves}. */
  private void moveAside(Path dir, List<Path> graves) throws IOException {
    Path grave = tmp.resolve("removed-" + UUID.randomUUID());
    try {
      Files.move(dir, grave, StandardCopyOption.ATOMIC_MOVE);
      graves.add(grave);
    } catch (NoSuchFileException gone) {
      // removed meanwhile
    }
  }

  /** Moves a directory out of sight in one rename, then deletes it at leisure. */
  private void retire(Path dir) throws IOException {
    Path grave = tmp.resolve("removed-" + UUID.randomUUID());
    try {
      Files.move(dir, grave, StandardCopyOption.ATOMIC_MOVE);
    } catch (NoSuchFileException gone) {
      return;
    }
    Trees.deleteRecursively(grave);
  }

  private Map<String, Digest> repositories() {
    Path file = root.resolve("repositories.json");
    if (!Files.exists(file)) {
      return Map.of();
    }
    try {
      return Json.MAPPER.readValue(file.toFile(), new TypeReference<TreeMap<String, Digest>>() {});
    } catch (IOException e) {
      throw new StoreException("unreadable " + file + ": " + e.getMessage(), e);
    }
  }

  private Map<Digest, List<String>> namesByImage() {
    Map<Digest, List<String>> out = new LinkedHashMap<>();
    repositories().forEach((n, id) -> out.computeIfAbsent(id, k -> new ArrayList<>()).add(n));
    return out;
  }

  private void cleanStaleStaging() {
    FileMutex.Held held = storeLock.tryExclusive();
    if (held == null) {
      return; // an import or gc is running; its staging is not ours to touch
    }
    try (held) {
      for (Path p : list(tmp)) {
        log.accept("removing " + p.getFileName() + " left by an interrupted strata command");
        Trees.deleteRecursively(p);
      }
      try (DirectoryStream<Path> ds = Files.newDirectoryStream(root, ".*.tmp-*")) {
        for (Path p : ds) {
          Files.deleteIfExists(p);
        }
      }
    } catch (IOException e) {
      log.accept("could not clean " + tmp + ": " + e.getMessage());
    }
  }

  private static List<Path> list(Path dir) {
    List<Path> out = new ArrayList<>();
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir)) {
      ds.forEach(out::add);
    } catch (NoSuchFileException e) {
      return out;
    } catch (IOException e) {
      throw new UncheckedIOException("cannot list " + dir, e);
    }
    return out;
  }

  private static Digest hexDir(Path dir) {
    String n = dir.getFileName().toString();
    if (!n.matches("[0-9a-f]{64}") || !Files.isDirectory(dir, LinkOption.NOFOLLOW_LINKS)) {
      return null;
    }
    return new Digest(n);
  }

  /**
   * Whether a name names no registry ({@code busybox}, {@code library/busybox}), so that the
   * registry is a matter of configuration: its first component has no dot, no port and is not
   * localhost, as containers/image decides.
   */
  public static boolean isShortName(String text) {
    int slash = text.indexOf('/');
    if (slash < 0) {
      return true;
    }
    String first = text.substring(0, slash);
    return !(first.contains(".") || first.contains(":") || first.equals("localhost")
        || first.startsWith("["));
  }

  /**
   * Checks and completes an image name: lowercase repository path components as the
   * distribution spec allows, then ":latest" if no tag. Throws on a bad name.
   */
  public static String normalizeName(String name) {
    String n = normalizeNameOrNull(name);
    if (n == null) {
      throw new IllegalArgumentException("invalid image name '" + name
          + "': expected NAME[:TAG], NAME of lowercase letters, digits, '.', '_', '-' and '/'"
          + " (with an optional registry host[:port]/), TAG of up to 128 letters, digits, '.', '_', '-'");
    }
    return n;
  }

  private static final java.util.regex.Pattern NAME = java.util.regex.Pattern.compile(
      "(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
          + "(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*");
  private static final java.util.regex.Pattern TAG =
      java.util.regex.Pattern.compile("[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}");

  private static String normalizeNameOrNull(String name) {
    if (name == null || name.length() > 255 || name.contains("@")) {
      return null;
    }
    int slash = name.lastIndexOf('/');
    int colon = name.lastIndexOf(':');
    String repo = name;
    String tag = "latest";
    if (colon > slash) {
      repo = name.substring(0, colon);
      tag = name.substring(colon + 1);
    }
    if (!NAME.matcher(repo).matches() || !TAG.matcher(tag).matches()) {
      return null;
    }
    return repo + ":" + tag;
  }

  private ImageRecord image(Digest id) {
    try {
      ImageRecord r = Json.read(images.resolve(id.hex()).resolve("image.json"), ImageRecord.class);
      return r.withNames(namesByImage().getOrDefault(id, List.of()));
    } catch (IOException e) {
      throw new NotFoundException("image " + id + " is named but its record is missing ("
          + e.getMessage() + "); `strata rmi " + id.shortHex() + "` removes the name");
    }
  }
}
