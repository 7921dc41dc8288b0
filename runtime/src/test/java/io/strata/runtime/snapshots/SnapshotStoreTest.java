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
}
