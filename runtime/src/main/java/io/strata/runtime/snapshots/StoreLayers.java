package io.strata.runtime.snapshots;

import io.strata.layers.BlobInfoCache;
import io.strata.layers.LayerRecord;
import io.strata.layers.LayerStore;
import io.strata.layers.base.Digest;
import io.strata.layers.base.Progress;
import io.strata.layers.registry.Distribution;
import io.strata.layers.registry.Reference;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Consumer;

/**
 * The snapshotter's committed snapshots taken from strata's layer store: containerd's CRI
 * labels the snapshot it prepares for each layer with the layer's blob digest and the image's
 * reference and manifest; the blob is looked up among the blobs the store knows decompress to
 * each layer ({@link BlobInfoCache}), and if no stored layer has it, the image is pulled into
 * the store (unnamed: its layers are held by the snapshots, not by an image) by its manifest
 * digest, which fetches only the layers the store lacks. So a layer is stored and extracted
 * once for strata and containerd, whichever pulls first.
 *
 * <p>The layers that snapshots are stay pinned in the store for as long as the snapshotter's
 * records exist, whether the snapshotter runs or not: {@code strata gc} leaves them, and they
 * are released when containerd removes the snapshots.
 */
public final class StoreLayers implements SnapshotStore.Layers {
  static final String IMAGE_REF_LABEL = "containerd.io/snapshot/cri.image-ref";
  static final String MANIFEST_LABEL = "containerd.io/snapshot/cri.manifest-digest";

  private final LayerStore store;
  private final Distribution.Options options;
  private final Consumer<String> log;
  private final String owner;
  private final Map<Digest, Digest> diffIdOfBlob = new ConcurrentHashMap<>();
  private final Map<String, Object> pulls = new ConcurrentHashMap<>();
  /** Images pulled unnamed, with their layers: their records go once snapshots hold those. */
  private final Map<Digest, Set<Digest>> unnamed = new ConcurrentHashMap<>();

  /**
   * @param owner names the pin that holds the snapshots' layers (one per snapshotter root)
   */
  public StoreLayers(LayerStore store, Distribution.Options options, String owner,
      Consumer<String> log) {
    this.store = store;
    this.options = options;
    this.owner = owner;
    this.log = log;
  }

  @Override
  public Digest find(Map<String, String> labels) {
    Digest blob;
    try {
      blob = Digest.parse(labels.get(SnapshotStore.LAYER_DIGEST_LABEL));
    } catch (RuntimeException bad) {
      log.accept("containerd's label " + SnapshotStore.LAYER_DIGEST_LABEL + " is not a digest ("
          + bad.getMessage() + "): the layer is unpacked through the mount");
      return null;
    }
    Digest found = byBlob(blob);
    if (found != null) {
      return found;
    }
    String ref = labels.get(IMAGE_REF_LABEL);
    if (ref == null || ref.isEmpty()) {
      return null;
    }
    String manifest = labels.get(MANIFEST_LABEL);
    String pull;
    try {
      Reference r = Reference.parse(ref, Reference.DOCKER_HUB);
      pull = manifest == null || manifest.isEmpty() ? r.toString()
          : new Reference(r.registry(), r.repository(), null, Digest.parse(manifest)).toString();
    } catch (RuntimeException bad) {
      log.accept("containerd's image labels name no image strata can pull (" + bad.getMessage()
          + "): the layer is unpacked through the mount");
      return null;
    }
    // the CRI prepares an image's layers one after the other: the first pulls them all
    synchronized (pulls.computeIfAbsent(pull, k -> new Object())) {
      found = byBlob(blob);
      if (found != null) {
        return found;
      }
      long start = System.nanoTime();
      try {
        Distribution.PullResult r = Distribution.pullLayers(store, pull, options, Progress.NONE);
        unnamed.put(r.image().id(), java.util.Set.copyOf(r.image().diffIds()));
        io.strata.layers.base.Log.info(String.format(java.util.Locale.ROOT,
            "pulled %s into the store for containerd: %d layers fetched, %d there already,"
            + " %.1f s", pull, r.layersFetched(), r.layersSkipped(),
            (System.nanoTime() - start) / 1e9));
      } catch (RuntimeException e) {
        log.accept("cannot pull " + pull + " into strata's store (" + e.getMessage()
            + "): containerd unpacks its layers through the mount");
        return null;
      }
      found = byBlob(blob);
      if (found == null) {
        log.accept(pull + " has no layer of blob " + blob + ": containerd unpacks it through"
            + " the mount");
      }
      return found;
    }
  }

  /** The stored layer this blob is known to decompress to, or null. */
  private Digest byBlob(Digest blob) {
    Digest known = diffIdOfBlob.get(blob);
    if (known != null && store.hasLayer(known)) {
      return known;
    }
    for (LayerRecord l : store.layers()) {
      for (BlobInfoCache.Blob b : store.blobInfos().blobs(l.diffId())) {
        diffIdOfBlob.put(b.digest(), l.diffId());
      }
    }
    known = diffIdOfBlob.get(blob);
    return known != null && store.hasLayer(known) ? known : null;
  }

  @Override
  public Path tree(Digest diffId) {
    return store.layerTree(diffId);
  }

  @Override
  public boolean has(Digest diffId) {
    return store.hasLayer(diffId);
  }

  @Override
  public void hold(Set<Digest> diffIds, Path records) {
    store.pin(owner, new ArrayList<>(diffIds), records);
    // an image pulled for containerd whose layers are all held now needs no record of its own
    // (it would show in strata images as <none> until a gc)
    for (Map.Entry<Digest, Set<Digest>> e : unnamed.entrySet()) {
      if (diffIds.containsAll(e.getValue())) {
        store.removeIfUnnamed(e.getKey());
        unnamed.remove(e.getKey());
      }
    }
  }

  /** The pin owner for a snapshotter root: one per root, the same after a restart. */
  public static String ownerFor(Path snapshotterRoot) {
    return "snapshotter-" + Digest.of(snapshotterRoot.toAbsolutePath().normalize().toString()
        .getBytes(java.nio.charset.StandardCharsets.UTF_8)).hex().substring(0, 16);
  }
}
