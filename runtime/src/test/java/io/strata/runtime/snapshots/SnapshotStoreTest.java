package io.strata.runtime.snapshots;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The snapshotter's records and directories, as containerd's snapshotter contract wants them. */
class SnapshotStoreTest {
  @TempDir Path tmp;

  SnapshotStore open() throws Exception {
    return new SnapshotStore(tmp, "fuse3.strata-overlay", l -> { });
  }

  @Test
  void prepareCommitViewAndTheirMounts() throws Exception {
    SnapshotStore s = open();
    List<SnapshotStore.Mount> m = s.prepare("a", "", Map.of("x", "1"));
    assertThat(m).singleElement().satisfies(b -> {
      assertThat(b.type()).isEqualTo("bind");
      assertThat(b.options()).contains("rw");
    });
    Files.writeString(Path.of(m.get(0).source()).resolve("f"), "1");
    s.commit("L1", "a", Map.of("y", "2"));
    assertThat(s.stat("L1").kind()).isEqualTo(SnapshotStore.Kind.COMMITTED);
    assertThat(s.stat("L1").labels()).containsEntry("x", "1").containsEntry("y", "2");
    assertThatThrownBy(() -> s.stat("a")).isInstanceOf(SnapshotStore.Refused.class);
    s.prepare("b", "L1", Map.of());
    s.commit("L2", "b", Map.of());
    List<SnapshotStore.Mount> c = s.prepare("c", "L2", Map.of());
    assertThat(c).singleElement().satisfies(u -> {
      assertThat(u.type()).isEqualTo("fuse3.strata-overlay");
      assertThat(u.options().get(0)).startsWith("lowerdir=").contains(":");
      assertThat(u.options()).anyMatch(o -> o.startsWith("upperdir="))
          .anyMatch(o -> o.startsWith("workdir="));
    });
    assertThat(s.view("v", "L1", Map.of())).singleElement()
        .satisfies(v -> assertThat(v.options()).contains("ro"));
    assertThat(s.usage("L1")[1]).isEqualTo(1); // one file
  }

  @Test
  void refusalsCarryContainerdsMeaning() throws Exception {
    SnapshotStore s = open();
    s.prepare("a", "", Map.of());
    assertThatThrownBy(() -> s.prepare("a", "", Map.of())).isInstanceOf(SnapshotStore.Refused.class)
        .satisfies(e -> assertThat(((SnapshotStore.Refused) e).why)
            .isEqualTo(SnapshotStore.Refused.Why.ALREADY_EXISTS));
    assertThatThrownBy(() -> s.prepare("b", "a", Map.of()))
        .satisfies(e -> assertThat(((SnapshotStore.Refused) e).why)
            .isEqualTo(SnapshotStore.Refused.Why.FAILED_PRECONDITION));
    s.commit("L", "a", Map.of());
    s.prepare("child", "L", Map.of());
    assertThatThrownBy(() -> s.remove("L"))
        .satisfies(e -> assertThat(((SnapshotStore.Refused) e).why)
            .isEqualTo(SnapshotStore.Refused.Why.FAILED_PRECONDITION));
    assertThatThrownBy(() -> s.mounts("nope"))
        .satisfies(e -> assertThat(((SnapshotStore.Refused) e).why)
            .isEqualTo(SnapshotStore.Refused.Why.NOT_FOUND));
    s.remove("child");
    s.remove("L");
    assertThat(s.list()).isEmpty();
    try (var d = Files.list(tmp.resolve("snapshots"))) {
      assertThat(d).isEmpty();
    }
  }

  @Test
  void recordsOutliveTheProcessAndOrphansAreRemoved() throws Exception {
    SnapshotStore s = open();
    s.prepare("a", "", Map.of());
    s.commit("L", "a", Map.of("k", "v"));
    s.updateLabels("L", Map.of("k2", "v2"), false, List.of("labels.k2"));
    Path orphan = Files.createDirectories(tmp.resolve("snapshots/left-by-a-kill/fs"));
    SnapshotStore again = open();
    assertThat(again.stat("L").labels()).containsEntry("k", "v").containsEntry("k2", "v2");
    assertThat(orphan).doesNotExist();
  }

  /** A layer store of in-memory trees under tmp/layers, with what the snapshot store asked. */
  static final class FakeLayers implements SnapshotStore.Layers {
    final Path dir;
    final Map<String, io.strata.layers.base.Digest> byBlob = new java.util.HashMap<>();
    final java.util.Set<io.strata.layers.base.Digest> present = new java.util.HashSet<>();
    java.util.Set<io.strata.layers.base.Digest> held = java.util.Set.of();
    Path heldWhile;
    int finds;

    FakeLayers(Path dir) {
      this.dir = dir;
    }

    io.strata.layers.base.Digest add(String blob, String file) throws Exception {
      io.strata.layers.base.Digest d = io.strata.layers.base.Digest.of(file.getBytes());
      Files.createDirectories(dir.resolve(d.hex()));
      Files.writeString(dir.resolve(d.hex()).resolve(file), file);
      byBlob.put(blob, d);
      present.add(d);
      return d;
    }

    @Override
    public io.strata.layers.base.Digest find(Map<String, String> labels) {
      finds++;
      return byBlob.get(labels.get(SnapshotStore.LAYER_DIGEST_LABEL));
    }

    @Override
    public Path tree(io.strata.layers.base.Digest diffId) {
      return dir.resolve(diffId.hex());
    }

    @Override
    public boolean has(io.strata.layers.base.Digest diffId) {
      return present.contains(diffId);
    }

    @Override
    public void hold(java.util.Set<io.strata.layers.base.Digest> diffIds, Path records) {
      held = java.util.Set.copyOf(diffIds);
      heldWhile = records;
    }
  }

  static final String BLOB1 = "sha256:" + "1".repeat(64);
  static final String BLOB2 = "sha256:" + "2".repeat(64);

  static Map<String, String> cri(String blob, String target) {
    return Map.of(SnapshotStore.REF_LABEL, target, SnapshotStore.LAYER_DIGEST_LABEL, blob,
        "containerd.io/snapshot/cri.image-ref", "example.org/x:1");
  }

  @Test
  void aLayerTheStoreHasBecomesTheTargetSnapshotAndContainerdIsToldItExists() throws Exception {
    FakeLayers layers = new FakeLayers(tmp.resolve("layers"));
    io.strata.layers.base.Digest d1 = layers.add(BLOB1, "one");
    io.strata.layers.base.Digest d2 = layers.add(BLOB2, "two");
    SnapshotStore s = new SnapshotStore(tmp.resolve("snap"), "fuse3.strata-overlay", null, layers,
        l -> { });
    String chain1 = d1.toString();
    assertThatThrownBy(() -> s.prepare("extract-1 " + chain1, "", cri(BLOB1, chain1)))
        .satisfies(e -> assertThat(((SnapshotStore.Refused) e).why)
            .isEqualTo(SnapshotStore.Refused.Why.ALREADY_EXISTS));
    SnapshotStore.Snapshot t1 = s.stat(chain1);
    assertThat(t1.kind()).isEqualTo(SnapshotStore.Kind.COMMITTED);
    assertThat(t1.layer()).isEqualTo(d1.toString());
    assertThat(t1.labels()).containsEntry(SnapshotStore.REF_LABEL, chain1)
        .containsEntry(SnapshotStore.STORE_LAYER_LABEL, d1.toString());
    assertThat(layers.held).containsExactly(d1);
    assertThat(layers.heldWhile).isEqualTo(tmp.resolve("snap/metadata.json"));
    // the next layer on it: its ChainID is checked against the target
    String chain2 = io.strata.layers.base.Digest.chainId(List.of(d1, d2)).toString();
    assertThatThrownBy(() -> s.prepare("extract-2 " + chain2, chain1, cri(BLOB2, chain2)))
        .isInstanceOf(SnapshotStore.Refused.class);
    assertThat(s.stat(chain2).parent()).isEqualTo(chain1);
    assertThat(layers.held).containsExactlyInAnyOrder(d1, d2);
    // a container on them sees both trees, writes to its own upper only
    List<SnapshotStore.Mount> m = s.prepare("c", chain2, Map.of());
    assertThat(m.get(0).options().get(0)).isEqualTo("lowerdir=" + layers.tree(d2) + ":"
        + layers.tree(d1));
    // asked again (another namespace): it exists, nothing is looked up
    int finds = layers.finds;
    assertThatThrownBy(() -> s.prepare("extract-3 " + chain1, "", cri(BLOB1, chain1)))
        .isInstanceOf(SnapshotStore.Refused.class);
    assertThat(layers.finds).isEqualTo(finds);
    // records survive a restart; removal releases the layers and leaves their trees alone
    s.remove("c");
    SnapshotStore again = new SnapshotStore(tmp.resolve("snap"), "fuse3.strata-overlay", null,
        layers, l -> { });
    assertThat(again.stat(chain2).layer()).isEqualTo(d2.toString());
    again.remove(chain2);
    assertThat(layers.held).containsExactly(d1);
    again.remove(chain1);
    assertThat(layers.held).isEmpty();
    assertThat(layers.tree(d1).resolve("one")).hasContent("one");
    assertThat(again.list()).isEmpty();
  }

  @Test
  void whereTheStoreCannotServeTheLayerContainerdUnpacksItAsBefore() throws Exception {
    FakeLayers layers = new FakeLayers(tmp.resolve("layers"));
    io.strata.layers.base.Digest d1 = layers.add(BLOB1, "one");
    java.util.List<String> said = new java.util.ArrayList<>();
    SnapshotStore s = new SnapshotStore(tmp.resolve("snap"), "fuse3.strata-overlay", null, layers,
        said::add);
    // a blob the store does not know: an active snapshot to unpack into
    String other = "sha256:" + "9".repeat(64);
    assertThat(s.prepare("k1", "", cri(BLOB2, other))).singleElement()
        .satisfies(b -> assertThat(b.type()).isEqualTo("bind"));
    assertThat(s.stat("k1").kind()).isEqualTo(SnapshotStore.Kind.ACTIVE);
    // a layer whose ChainID is not the target's: not used
    assertThat(s.prepare("k2", "", cri(BLOB1, other))).hasSize(1);
    assertThat(said).anyMatch(l -> l.contains("not " + other));
    // no blob label (a ctr pull): unpacked, said once
    s.prepare("k3", "", Map.of(SnapshotStore.REF_LABEL, other));
    s.prepare("k4", "", Map.of(SnapshotStore.REF_LABEL, other));
    assertThat(said.stream().filter(l -> l.contains("names no layer blob"))).hasSize(1);
    // a layer gone from the store between the lookup and the pin (a strata gc)
    layers.present.remove(d1);
    assertThat(s.prepare("k5", "", cri(BLOB1, d1.toString()))).hasSize(1);
    assertThat(said).anyMatch(l -> l.contains("removed from the store meanwhile"));
    assertThatThrownBy(() -> s.stat(d1.toString())).isInstanceOf(SnapshotStore.Refused.class);
    assertThat(layers.held).isEmpty();
  }
}
