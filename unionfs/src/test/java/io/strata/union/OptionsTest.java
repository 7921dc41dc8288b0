package io.strata.union;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** fuse-overlayfs's options and id mappings, checked before anything is mounted. */
class OptionsTest {
  @Test
  void parsesFuseOverlayfsOptions() {
    List<String> warnings = new ArrayList<>();
    OverlayOptions o = OverlayOptions.parse(List.of(
        "lowerdir=/a\\:b:/c,upperdir=/u,workdir=/w,uidmapping=0:1000:1:1:100000:65536,"
            + "gidmapping=0:1000:1,squash_to_root,noxattrs,fsync=0,timeout=5,nodev,frobnicate"),
        warnings::add);
    assertThat(o.lowers()).containsExactly(Path.of("/a:b"), Path.of("/c"));
    assertThat(o.upper()).isEqualTo(Path.of("/u"));
    assertThat(o.work()).isEqualTo(Path.of("/w"));
    assertThat(o.view().xattrs()).isFalse();
    assertThat(o.view().fsync()).isFalse();
    assertThat(o.view().squashToRoot()).isTrue();
    assertThat(o.timeout()).isEqualTo(5.0);
    assertThat(warnings).containsExactly("ignoring unknown option 'frobnicate'");
  }

  @Test
  void refusesBadOptionsWithAMessageThatSaysWhatToDo() {
    assertThatThrownBy(() -> OverlayOptions.parse(List.of("upperdir=/u,workdir=/w"), w -> {}))
        .hasMessageContaining("missing lowerdir");
    assertThatThrownBy(() -> OverlayOptions.parse(List.of("lowerdir=/l,upperdir=/u"), w -> {}))
        .hasMessageContaining("upperdir needs workdir");
    assertThatThrownBy(() -> OverlayOptions.parse(List.of("lowerdir=/l,timeout=-1"), w -> {}))
        .hasMessageContaining("must not be negative");
    assertThatThrownBy(() -> OverlayOptions.parse(List.of("lowerdir=/l,uidmapping=0:1"), w -> {}))
        .hasMessageContaining("CONTAINER:HOST:SIZE");
    assertThatThrownBy(() -> OverlayOptions.parse(List.of("lowerdir="), w -> {}))
        .hasMessageContaining("lowerdir needs a value");
  }

  @Test
  void idMappingsMapBothWaysAndShowUnmappedIdsAsOverflow() throws Exception {
    IdMap m = IdMap.parse("0:1000:1:1:100000:65536", "uidmapping");
    assertThat(m.toContainer(1000)).isZero();
    assertThat(m.toContainer(100000)).isEqualTo(1);
    assertThat(m.toContainer(100041)).isEqualTo(42);
    assertThat(m.toContainer(5)).isEqualTo(IdMap.OVERFLOW);
    assertThat(m.toHost(0)).isEqualTo(1000);
    assertThat(m.toHost(42)).isEqualTo(100041);
    assertThatThrownBy(() -> m.toHost(70000)).isInstanceOf(FsException.class);
  }
}
