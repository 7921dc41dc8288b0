package io.strata.runtime.snapshots;

import io.strata.layers.base.Json;
import io.strata.layers.fs.RawFs;
import io.strata.layers.fs.Trees;
import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.UUID;
import java.util.function.Consumer;

/**
 * containerd's snapshots as strata keeps them: each snapshot a directory {@code
 * ROOT/snapshots/ID/} with its tree ({@code fs}, the upper of an active snapshot, frozen once
 * committed) and a work directory, and one metadata file ({@code ROOT/metadata.json}: key,
 * parent, kind, labels, times, id) replaced in one rename after every change. A directory
 * appears before the metadata names it and goes after, so a snapshotter killed at any point
 * loses no committed snapshot, and the next start removes what no record names.
 *
 * <p>An active snapshot over parents is served as a strata union (lower: the parents' trees,
 * top first; upper: its own tree); one without parents, and a view of a single snapshot, as a
 * bind mount.
 */
public final class SnapshotStore {
  /** What a snapshot is, in containerd's terms. */
  public enum Kind { VIEW, ACTIVE, COMMITTED }

  /**
   * One snapshot's record; {@code parent} is a key or null; {@code layer} the DiffID of the
   * stored layer whose tree a committed snapshot is (see {@link Layers}), else null.
   */
  public record Snapshot(String id, String key, String parent, Kind kind,
      Map<String, String> labels, String created, String updated, String layer) {
    Snapshot with(String newKey, Kind newKind, Map<String, String> newLabels) {
      return new Snapshot(id, newKey, parent, newKind, newLabels, created,
          Instant.now().toString(), layer);
    }
  }

  /** The label containerd's unpacker puts on the snapshot it prepares: the layer's ChainID. */
  public static final String REF_LABEL = "containerd.io/snapshot.ref";
  /** The label containerd's CRI puts there (unless disable_snapshot_annotations): the blob. */
  public static final String LAYER_DIGEST_LABEL = "containerd.io/snapshot/cri.layer-digest";
  /** The label strata puts on a snapshot that is a stored layer: its DiffID. */
  public static final String STORE_LAYER_LABEL = "containerd.io/snapshot/strata.layer";

  /**
   * strata's layer store as the source of committed snapshots, as remote snapshotters such as
   * stargz-snapshotter serve theirs: when containerd's CRI prepares a snapshot to unpack a
   * layer into, labelled with the layer's blob, the layer is found in (or fetched into) the
   * store, and the snapshot is committed at once as that layer's tree; containerd is told it
   * exists and neither fetches nor unpacks the blob.
   */
  public interface Layers {
    /**
     * The DiffID of the stored layer that the blob named in {@code labels} decompresses to,
     * fetching the image into the store if need be; null (having said why) if there is none.
     */
    io.strata.layers.base.Digest find(Map<String, String> labels);

    /** The read-only tree of a stored layer. */
    Path tree(io.strata.layers.base.Digest diffId);

    /** Whether the store still holds the layer. */
    boolean has(io.strata.layers.base.Digest diffId);

    /** Keeps exactly these layers from strata's gc for as long as {@code records} exists. */
    void hold(java.util.Set<io.strata.layers.base.Digest> diffIds, Path records);
  }

  /** A mount for containerd: type, source and options, as its Mount message. */
  public record Mount(String type, String source, List<String> options) {}

  /** A request containerd may not make: the gRPC layer maps these to status codes. */
  public static final class Refused extends RuntimeException {
    public enum Why { NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, INVALID_ARGUMENT }

    public final Why why;

    Refused(Why why, String message) {
      super(message);
      this.why = why;
    }
  }

  private final Path root;
  private final Path dirs;
  private final Path metadata;
  private final String mountType;
  private final Consumer<String> log;
  private final Map<String, Snapshot> byKey = new TreeMap<>();
  private final Unions unions;
  private final Layers layers;
  private java.util.Set<io.strata.layers.base.Digest> held;
  private boolean saidNoLabels;

  /**
   * Serves unions in the snapshotter's own process: containerd then gets a bind mount of
   * {@code ROOT/snapshots/ID/merged}, and no process is started per mount.
   */
  public interface Unions {
    /** Mounts the union of {@code lowers} (top first) and {@code upper} (null: read-only). */
    void serve(String id, List<Path> lowers, Path upper, Path work, Path mountpoint)
        throws IOException;

    /** Unmounts the union of snapshot {@code id}, if served. */
    void stop(String id, Path mountpoint) throws IOException;
  }

  /**
   * @param mountType the mount type of a union, as containerd runs it through its helper:
   *     {@code fuse3.strata-overlay} makes containerd run {@code mount.fuse3}, which runs
   *     {@code strata-overlay} from PATH
   */
  public SnapshotStore(Path root, String mountType, Consumer<String> log) throws IOException {
    this(root, mountType, null, log);
  }

  /** @param unions serves unions in this process; null has containerd mount them itself */
  public SnapshotStore(Path root, String mountType, Unions unions, Consumer<String> log)
      throws IOException {
    this(root, mountType, unions, null, log);
  }

  /**
   * @param layers takes committed snapshots from strata's layer store where containerd's
   *     labels name the layer (see {@link Layers}); null, or no labels, has containerd unpack
   *     every layer into a snapshot of this directory
   */
  public SnapshotStore(Path root, String mountType, Unions unions, Layers layers,
      Consumer<String> log) throws IOException {
    this.unions = unions;
    this.layers = layers;
    this.root = root.toAbsolutePath().normalize();
    // Private, as containerd's own snapshotters keep theirs: committed snapshots are image
    // layers (setuid files, device nodes), active ones containers' uppers.
    io.strata.layers.StoreLayout.ensure(this.root, 0700);
    this.dirs = this.root.resolve("snapshots");
    io.strata.layers.StoreLayout.ensure(this.dirs, 0700);
    this.metadata = this.root.resolve("metadata.json");
    this.mountType = mountType;
    this.log = log;
    if (Files.exists(metadata)) {
      Snapshot[] all = Json.MAPPER.readValue(metadata.toFile(), Snapshot[].class);
      for (Snapshot s : all) {
        byKey.put(s.key(), s);
      }
    }
    cleanup();
    if (layers != null) {
      for (Snapshot s : byKey.values()) {
        if (s.layer() != null && !layers.has(io.strata.layers.base.Digest.parse(s.layer()))) {
          log.accept("snapshot " + s.key() + " is the layer " + s.layer() + ", which strata's"
              + " store no longer holds: what is built on it fails until it is pulled again");
        }
      }
      holdLayers();
    }
    if (unions != null) {
      for (Snapshot snap : byKey.values()) {
        if (isUnion(snap)) {
          if (snap.kind() == Kind.ACTIVE
              && io.strata.layers.fs.Mounts.isMountpoint(merged(snap))) {
            log.accept("snapshot " + snap.key() + " was served by a snapshotter that was"
                + " killed: a container running on it loses its root and fails until restarted"
                + " (new containers are served; --mount-helper keeps roots across restarts)");
          }
          try {
            serve(snap); // after a restart: what containers use is served again
          } catch (IOException | RuntimeException e) {
            log.accept("cannot serve snapshot " + snap.key() + " again: " + e.getMessage()
                + " (its mounts will fail until it is removed)");
          }
        }
      }
    }
  }

  public Path root() {
    return root;
  }

  /** The key of the snapshot with this id (for messages), or the id. */
  public synchronized String keyOfId(String id) {
    for (Snapshot s : byKey.values()) {
      if (s.id().equals(id)) {
        return s.key();
      }
    }
    return id;
  }

  // ---------------------------------------------------------------- the snapshotter interface

  public List<Mount> prepare(String key, String parent, Map<String, String> labels)
      throws IOException {
    Layers source = layers;
    String target = labels.get(REF_LABEL);
    if (source != null && target != null) {
      if (labels.containsKey(LAYER_DIGEST_LABEL)) {
        fromStore(source, key, parent == null || parent.isEmpty() ? null : parent, target, labels);
      } else {
        synchronized (this) {
          if (!saidNoLabels) {
            saidNoLabels = true;
            log.accept("containerd names no layer blob on the snapshots it unpacks into (a ctr"
                + " pull, or the CRI with disable_snapshot_annotations = true): those layers"
                + " are unpacked through the mount and kept here, not in strata's store");
          }
        }
      }
    }
    synchronized (this) {
      return create(key, parent, labels, Kind.ACTIVE);
    }
  }

  /**
   * Commits snapshot {@code target} as the stored layer the labels name and refuses the
   * prepare with AlreadyExists (containerd then uses the target and skips the blob); returns
   * to let containerd unpack the layer itself where the store cannot serve it.
   */
  private void fromStore(Layers source, String key, String parent, String target,
      Map<String, String> labels) throws IOException {
    String parentChain;
    synchronized (this) {
      Snapshot have = byKey.get(target);
      if (have != null && have.kind() == Kind.COMMITTED && java.util.Objects.equals(
          have.parent(), parent)) {
        throw new Refused(Refused.Why.ALREADY_EXISTS, "target snapshot " + target
            + " already exists");
      }
      if (have != null || byKey.containsKey(key)
          || (parent != null && !byKey.containsKey(parent))) {
        return; // the usual checks answer it
      }
      parentChain = parent == null ? null : get(parent).labels().get(REF_LABEL);
      if (parent != null && parentChain == null) {
        return; // a parent of unknown ChainID: the layer cannot be checked against the target
      }
    }
    io.strata.layers.base.Digest diffId = source.find(labels); // may fetch: not under the lock
    if (diffId == null) {
      return;
    }
    String chain = parentChain == null ? diffId.toString()
        : io.strata.layers.base.Digest.chainId(List.of(
            io.strata.layers.base.Digest.parse(parentChain), diffId)).toString();
    if (!chain.equals(target)) {
      log.accept("the stored layer " + diffId + " of blob " + labels.get(LAYER_DIGEST_LABEL)
          + " makes ChainID " + chain + ", not " + target + " as containerd expects: it"
          + " unpacks the layer through the mount instead");
      return;
    }
    synchronized (this) {
      Snapshot have = byKey.get(target);
      if (have != null) {
        if (have.kind() == Kind.COMMITTED && java.util.Objects.equals(have.parent(), parent)) {
          throw new Refused(Refused.Why.ALREADY_EXISTS, "target snapshot " + target
              + " already exists");
        }
        return;
      }
      if (parent != null && !byKey.containsKey(parent)) {
        return;
      }
      Map<String, String> l = new TreeMap<>(labels);
      l.put(STORE_LAYER_LABEL, diffId.toString());
      String now = Instant.now().toString();
      byKey.put(target, new Snapshot(UUID.randomUUID().toString(), target, parent,
          Kind.COMMITTED, l, now, now, diffId.toString()));
      save();
      if (!source.has(diffId)) { // a strata gc between finding the layer and pinning it
        byKey.remove(target);
        save();
        log.accept("the layer " + diffId + " was removed from the store meanwhile: containerd"
            + " unpacks it through the mount instead");
        return;
      }
    }
    throw new Refused(Refused.Why.ALREADY_EXISTS, "target snapshot " + target
        + " is the stored layer " + diffId);
  }

  public synchronized List<Mount> view(String key, String parent, Map<String, String> labels)
      throws IOException {
    return create(key, parent, labels, Kind.VIEW);
  }

  private List<Mount> create(String key, String parent, Map<String, String> labels, Kind kind)
      throws IOException {
    checkKey(key);
    if (byKey.containsKey(key)) {
      throw new Refused(Refused.Why.ALREADY_EXISTS, "snapshot " + key + " already exists");
    }
    String p = parent == null || parent.isEmpty() ? null : parent;
    if (p != null) {
      Snapshot ps = get(p);
      if (ps.kind() != Kind.COMMITTED) {
        throw new Refused(Refused.Why.FAILED_PRECONDITION, "parent " + p + " is not committed");
      }
    }
    String id = UUID.randomUUID().toString();
    Path dir = dirs.resolve(id);
    Files.createDirectories(dir.resolve("fs"));
    Files.createDirectories(dir.resolve("work"));
    String now = Instant.now().toString();
    Snapshot created = new Snapshot(id, key, p, kind, new TreeMap<>(labels), now, now, null);
    byKey.put(key, created);
    save();
    if (unions != null && isUnion(created)) {
      try {
        serve(created);
      } catch (IOException | RuntimeException e) {
        byKey.remove(key);
        save();
        retire(dir);
        throw e;
      }
    }
    return mounts(created);
  }

  public synchronized List<Mount> mounts(String key) {
    Snapshot s = get(key);
    if (s.kind() == Kind.COMMITTED) {
      throw new Refused(Refused.Why.FAILED_PRECONDITION, "snapshot " + key
          + " is committed; only active and view snapshots have mounts");
    }
    return mounts(s);
  }

  private List<Path> lowers(Snapshot s) {
    List<Path> lowers = new ArrayList<>();
    for (String p = s.parent(); p != null; p = get(p).parent()) {
      lowers.add(fs(get(p)));
    }
    return lowers;
  }

  /** Whether the snapshot is mounted as a union (not a bind of one directory). */
  private boolean isUnion(Snapshot s) {
    int parents = lowers(s).size();
    return s.kind() == Kind.ACTIVE ? parents > 0 : s.kind() == Kind.VIEW && parents > 1;
  }

  private Path merged(Snapshot s) {
    return dirs.resolve(s.id()).resolve("merged");
  }

  private void serve(Snapshot s) throws IOException {
    Path mp = Files.createDirectories(merged(s));
    unions.stop(s.id(), mp); // a mount left by a killed snapshotter is dead: replace it
    unions.serve(s.id(), lowers(s), s.kind() == Kind.ACTIVE ? fs(s) : null,
        dirs.resolve(s.id()).resolve("work"), mp);
  }

  private List<Mount> mounts(Snapshot s) {
    List<Path> lowers = lowers(s);
    if (unions != null && isUnion(s)) {
      return List.of(new Mount("bind", merged(s).toString(),
          List.of("rbind", s.kind() == Kind.ACTIVE ? "rw" : "ro")));
    }
    if (s.kind() == Kind.VIEW) {
      if (lowers.isEmpty()) {
        return List.of(new Mount("bind", fs(s).toString(), List.of("rbind", "ro")));
      }
      if (lowers.size() == 1) {
        return List.of(new Mount("bind", lowers.get(0).toString(), List.of("rbind", "ro")));
      }
      return List.of(new Mount(mountType, "strata", List.of("lowerdir=" + join(lowers))));
    }
    if (lowers.isEmpty()) {
      return List.of(new Mount("bind", fs(s).toString(), List.of("rbind", "rw")));
    }
    return List.of(new Mount(mountType, "strata", List.of("lowerdir=" + join(lowers),
        "upperdir=" + fs(s), "workdir=" + dirs.resolve(s.id()).resolve("work"))));
  }

  private static String join(List<Path> lowers) {
    List<String> out = new ArrayList<>();
    for (Path p : lowers) {
      out.add(p.toString());
    }
    return String.join(":", out);
  }

  public synchronized void commit(String name, String key, Map<String, String> labels)
      throws IOException {
    checkKey(name);
    Snapshot s = get(key);
    if (s.kind() != Kind.ACTIVE) {
      throw new Refused(Refused.Why.FAILED_PRECONDITION, "snapshot " + key + " is not active");
    }
    if (byKey.containsKey(name)) {
      throw new Refused(Refused.Why.ALREADY_EXISTS, "snapshot " + name + " already exists");
    }
    Map<String, String> l = new TreeMap<>(s.labels());
    l.putAll(labels);
    if (unions != null && isUnion(s)) {
      unions.stop(s.id(), merged(s)); // everything written is in the upper once unmounted
    }
    byKey.remove(key);
    byKey.put(name, s.with(name, Kind.COMMITTED, l));
    save();
    // the work directory holds nothing a committed snapshot needs
    Trees.deleteRecursively(dirs.resolve(s.id()).resolve("work"));
  }

  /**
   * Removes a snapshot. Its union is unmounted outside the store's lock (an unmount waits for
   * the FUSE loop to end): containerd removes the last pod's snapshots while it prepares the
   * next pod's, which need not wait for that.
   */
  public void remove(String key) throws IOException {
    Snapshot s;
    synchronized (this) {
      s = get(key);
      for (Snapshot o : byKey.values()) {
        if (key.equals(o.parent())) {
          throw new Refused(Refused.Why.FAILED_PRECONDITION, "snapshot " + key
              + " has children (" + o.key() + ")");
        }
      }
      if (removing.contains(key)) {
        throw new Refused(Refused.Why.FAILED_PRECONDITION, "snapshot " + key
            + " is being removed");
      }
      if (unions == null || !isUnion(s)) { // nothing slow: all under the lock
        forget(s);
        return;
      }
      // a union is an active snapshot or a view: nothing can be made on it meanwhile
      removing.add(key);
    }
    try {
      unions.stop(s.id(), merged(s));
      synchronized (this) {
        forget(s);
      }
    } finally {
      synchronized (this) {
        removing.remove(s.key());
      }
    }
  }

  private void forget(Snapshot s) throws IOException {
    byKey.remove(s.key());
    committedUsage.remove(s.id());
    save();
    retire(dirs.resolve(s.id()));
  }

  private final java.util.Set<String> removing = new java.util.HashSet<>();

  public synchronized Snapshot stat(String key) {
    return get(key);
  }

  /** Replaces the labels (the only mutable field); returns the new record. */
  public synchronized Snapshot updateLabels(String key, Map<String, String> labels,
      boolean replaceAll, List<String> paths) throws IOException {
    Snapshot s = get(key);
    Map<String, String> l = new TreeMap<>(s.labels());
    if (replaceAll) {
      l = new TreeMap<>(labels);
    } else {
      for (String path : paths) {
        if (path.equals("labels")) {
          l = new TreeMap<>(labels);
        } else if (path.startsWith("labels.")) {
          String k = path.substring("labels.".length());
          if (labels.containsKey(k)) {
            l.put(k, labels.get(k));
          } else {
            l.remove(k);
          }
        } else {
          throw new Refused(Refused.Why.INVALID_ARGUMENT, "cannot update field " + path
              + " of a snapshot (only labels)");
        }
      }
    }
    Snapshot n = s.with(key, s.kind(), l);
    byKey.put(key, n);
    save();
    return n;
  }

  public synchronized List<Snapshot> list() {
    return new ArrayList<>(byKey.values());
  }

  /**
   * What a snapshot adds: bytes of its tree (allocated blocks) and inodes. A committed
   * snapshot's tree no longer changes: it is walked once (containerd's CRI asks for every
   * snapshot's usage every stats_collect_period, 10 s by default).
   */
  public long[] usage(String key) throws IOException {
    Path fs;
    String id;
    synchronized (this) {
      Snapshot s = get(key);
      fs = fs(s);
      id = s.kind() == Kind.COMMITTED ? s.id() : null;
      long[] known = id == null ? null : committedUsage.get(id);
      if (known != null) {
        return known.clone();
      }
    }
    long[] out = new long[2];
    usage(fs, "", out);
    if (id != null) {
      committedUsage.put(id, out.clone());
    }
    return out;
  }

  private final Map<String, long[]> committedUsage = new java.util.concurrent.ConcurrentHashMap<>();

  private static void usage(Path fs, String rel, long[] out) throws IOException {
    int dirfd = RawFs.open(RawFs.AT_FDCWD, RawFs.raw(fs), RawFs.O_PATH | RawFs.O_DIRECTORY, 0);
    try {
      walk(dirfd, rel, out, new java.util.HashSet<>());
    } finally {
      RawFs.close(dirfd);
    }
  }

  private static void walk(int root, String rel, long[] out, java.util.Set<Long> seen)
      throws IOException {
    for (RawFs.DirEntry e : RawFs.list(root, rel)) {
      String child = rel.isEmpty() ? e.name() : rel + "/" + e.name();
      RawFs.Statx st = RawFs.lstat(root, child);
      if (st == null || (st.nlink() > 1 && (st.mode() & 0170000) != 0040000 && !seen.add(st.ino()))) {
        continue; // gone, or a hard link already counted
      }
      out[0] += st.blocks() * 512;
      out[1]++;
      if ((st.mode() & 0170000) == 0040000) {
        walk(root, child, out, seen);
      }
    }
  }

  /** Removes snapshot directories that no record names (left by a killed snapshotter). */
  public synchronized int cleanup() throws IOException {
    java.util.Set<String> ids = new java.util.HashSet<>();
    byKey.values().forEach(s -> ids.add(s.id()));
    int removed = 0;
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(dirs)) {
      for (Path p : ds) {
        if (!ids.contains(p.getFileName().toString())) {
          log.accept("removing " + p.getFileName() + ", which no snapshot names");
          if (io.strata.layers.fs.Mounts.isMountpoint(p.resolve("merged"))) {
            io.strata.layers.fs.Mounts.unmount(p.resolve("merged"), true); // dead: its server is gone
          }
          retire(p);
          removed++;
        }
      }
    }
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(root, "removed-*")) {
      for (Path p : ds) {
        Trees.deleteRecursively(p); // a removal a killed snapshotter did not finish
      }
    }
    return removed;
  }

  // ---------------------------------------------------------------- helpers

  private Snapshot get(String key) {
    Snapshot s = key == null ? null : byKey.get(key);
    if (s == null) {
      throw new Refused(Refused.Why.NOT_FOUND, "snapshot " + key + " does not exist");
    }
    return s;
  }

  private Path fs(Snapshot s) {
    if (s.layer() != null) {
      return layers != null ? layers.tree(io.strata.layers.base.Digest.parse(s.layer()))
          : dirs.resolve(s.id()).resolve("missing-store"); // not served without the store
    }
    return dirs.resolve(s.id()).resolve("fs");
  }

  private static void checkKey(String key) {
    if (key == null || key.isEmpty() || key.length() > 4096 || key.indexOf('\0') >= 0) {
      throw new Refused(Refused.Why.INVALID_ARGUMENT, "a snapshot key must be 1 to 4096"
          + " characters without NUL");
    }
  }

  private void save() throws IOException {
    Path tmp = root.resolve(".metadata.json.tmp-" + ProcessHandle.current().pid());
    Files.write(tmp, Json.MAPPER.writeValueAsBytes(byKey.values()));
    try (var ch = java.nio.channels.FileChannel.open(tmp, java.nio.file.StandardOpenOption.WRITE)) {
      ch.force(true);
    }
    Files.move(tmp, metadata, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    holdLayers();
  }

  /** Pins the stored layers that snapshots are, when they changed (after the records say so). */
  private void holdLayers() {
    if (layers == null) {
      return;
    }
    java.util.Set<io.strata.layers.base.Digest> now = new java.util.TreeSet<>();
    for (Snapshot s : byKey.values()) {
      if (s.layer() != null) {
        now.add(io.strata.layers.base.Digest.parse(s.layer()));
      }
    }
    if (!now.equals(held)) {
      layers.hold(now, metadata);
      held = now;
    }
  }

  /** Moves a directory aside in one rename, then deletes it. */
  private void retire(Path dir) throws IOException {
    Path grave = root.resolve("removed-" + UUID.randomUUID());
    try {
      Files.move(dir, grave, StandardCopyOption.ATOMIC_MOVE);
    } catch (java.nio.file.NoSuchFileException gone) {
      return;
    }
    Trees.deleteRecursively(grave);
  }
}
