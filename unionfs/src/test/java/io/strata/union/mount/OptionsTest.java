package io.strata.union.mount;

import io.strata.union.view.FsException;
import io.strata.union.view.IdMap;
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
    assertThat(o.transport()).isNull(); // the preferred one
    assertThat(warnings).containsExactly("ignoring unknown option 'frobnicate'");
    OverlayOptions t = OverlayOptions.parse(List.of("lowerdir=/l,transport=jnr,passthrough=0"),
        warnings::add);
    assertThat(t.transport()).isEqualTo(FuseMount.Transport.JNR);
    assertThat(t.passthrough()).isFalse();
    assertThat(OverlayOptions.parse(List.of("lowerdir=/l,transport=kernel"), w -> {}).transport())
        .isEqualTo(FuseMount.Transport.KERNEL);
    // podman's `volatile` (for --rm containers): no sync reaches the upper, as on overlayfs
    assertThat(OverlayOptions.parse(List.of("lowerdir=/l,upperdir=/u,workdir=/w,,volatile"),
        warnings::add).view().fsync()).isFalse();
    assertThat(OverlayOptions.parse(List.of("lowerdir=/l"), warnings::add).view().fsync())
        .isTrue();
    assertThat(warnings).containsExactly("ignoring unknown option 'frobnicate'");
  }

  /**
   * podman's lowers, containers/storage's layers (links in its {@code l/} to a layer's {@code
   * diff}), never change: their merged tree may be kept for the next container. Any other
   * lower may change between mounts and is read afresh.
   */
  @Test
  void containersStorageLayersAreKnownByTheirLinks(@org.junit.jupiter.api.io.TempDir Path tmp)
      throws Exception {
    Path home = tmp.resolve("overlay");
    String id1 = "1".repeat(64);
    String id2 = "2".repeat(64);
    java.nio.file.Files.createDirectories(home.resolve(id1 + "/diff"));
    java.nio.file.Files.createDirectories(home.resolve(id2 + "/diff"));
    java.nio.file.Files.createDirectories(home.resolve("l"));
    java.nio.file.Files.createSymbolicLink(home.resolve("l/AAAA"), Path.of("../" + id1 + "/diff"));
    java.nio.file.Files.createSymbolicLink(home.resolve("l/BBBB"), Path.of("../" + id2 + "/diff"));
    java.nio.file.Files.createSymbolicLink(home.resolve("l/CCCC"), Path.of("/etc"));
    String l = home.resolve("l").toString();
    assertThat(immutable("lowerdir=" + l + "/AAAA:" + l + "/BBBB,upperdir=/u,workdir=/w"))
        .isTrue();
    assertThat(immutable("lowerdir=" + l + "/AAAA")).isTrue();
    // the layer's diff by its own path, a link elsewhere, a plain directory: not known
    assertThat(immutable("lowerdir=" + home + "/" + id1 + "/diff")).isFalse();
    assertThat(immutable("lowerdir=" + l + "/AAAA:" + l + "/CCCC")).isFalse();
    assertThat(immutable("lowerdir=" + l + "/AAAA:" + tmp)).isFalse();
    assertThat(immutable("lowerdir=" + l + "/MISSING")).isFalse();
  }

  private static boolean immutable(String options) {
    return OverlayOptions.parse(List.of(options), w -> {}).view().immutableLowers();
  }

  @Test
  void transportSettingsFollowTheTransport() {
    FuseMount.Settings k = FuseMount.Settings.defaults("x", FuseMount.Transport.KERNEL);
    assertThat(k.attrTimeout()).isEqualTo(86_400);
    assertThat(k.passthrough()).isTrue();
    FuseMount.Settings j = k.withTransport(FuseMount.Transport.JNR);
    assertThat(j.attrTimeout()).isZero(); // libfuse2's path API cannot cache attributes safely
    assertThat(j.entryTimeout()).isEqualTo(60);
    assertThat(k.withTimeout(0).negativeTimeout()).isZero();
    assertThat(k.withPassthrough(false).passthrough()).isFalse();
  }

  @Test
  void refusesBadOptionsWithAMessageThatSaysWhatToDo() {
    assertThatThrownBy(() -> OverlayOptions.parse(List.of("upperdir=/u,workdir=/w"), w -> {}))
        .hasMessageContaining("missing lowerdir");
    assertThatThrownBy(() -> OverlayOptions.parse(List.of("lowerdir=/l,upperdir=/u"), w -> {}))
        .hasMessageContaining("upperdir needs workdir");
    assertThatThrownBy(() -> OverlayOptions.parse(List.of("lowerdir=/l,timeout=-1"), w -> {}))
        .hasMessageContaining("timeout=-1: expected a decimal number");
    assertThatThrownBy(() -> OverlayOptions.parse(List.of("lowerdir=/l,uidmapping=0:1"), w -> {}))
        .hasMessageContaining("CONTAINER:HOST:SIZE");
    assertThatThrownBy(() -> OverlayOptions.parse(List.of("lowerdir="), w -> {}))
        .hasMessageContaining("lowerdir needs a value");
    assertThatThrownBy(() -> OverlayOptions.parse(List.of("lowerdir=/l,transport=fast"), w -> {}))
        .hasMessageContaining("must be kernel").hasMessageContaining("or jnr");
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
