package io.strata.layers;

import io.strata.layers.archive.LayerExtractor;
import io.strata.layers.archive.SpaceBudget;
import io.strata.layers.base.BadInputException;
import io.strata.layers.base.Digest;
import io.strata.layers.base.Progress;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every hostile or broken input ends in a {@link BadInputException} that names the layer and
 * the entry, and leaves the store exactly as it was, both as a bare layer and inside an image.
 */
class HostileInputTest {
  @TempDir Path tmp;
  Path root;
  LayerStore store;

  @BeforeEach
  void setUp() throws Exception {
    root = tmp.resolve("store");
    store = StoreFixture.open(root);
    // A store that already holds something, so "unchanged" is a real check.
    store.importImage(TarBuilder.layer().file("keep", "me").writeTo(tmp.resolve("base.tar")),
        "base:1", null, Progress.NONE);
  }

  static Stream<HostileLayers.Fixture> fixtures() {
    return HostileLayers.all().stream();
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("fixtures")
  void bareLayerIsRefusedAndStoreUnchanged(HostileLayers.Fixture f) throws Exception {
    Path src = tmp.resolve(f.name() + ".tar");
    Files.write(src, f.blob());
    List<String> before = StoreFixture.snapshot(root);

    assertThatThrownBy(() -> store.importImage(src, "hostile:1", null, Progress.NONE))
        .isInstanceOf(BadInputException.class)
        .hasMessageContaining(f.why())
        .hasMessageContaining(f.entry());

    assertThat(StoreFixture.snapshot(root)).isEqualTo(before);
    assertThat(StoreFixture.tmpContents(root)).isEmpty();
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("fixtures")
  void layerInsideAnImageIsRefusedAndNamesTheLayer(HostileLayers.Fixture f) throws Exception {
    // The hostile layer comes second, after a good one, so a half-import would show.
    byte[] good = TarBuilder.layer().file("fine", "ok").bytes();
    Path dir = Files.createDirectories(tmp.resolve("oci-" + f.name()));
    Path blobs = Files.createDirectories(dir.resolve("blobs/sha256"));
    Files.writeString(dir.resolve("oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}");
    Files.write(blobs.resolve(Digest.of(good).hex()), good);
    Files.write(blobs.resolve(Digest.of(f.blob()).hex()), f.blob());
    // The config claims a DiffID for the hostile layer; any value will do, extraction fails first.
    String config = "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" + Digest.of(good)
        + "\",\"" + Digest.of(f.blob()) + "\"]}}";
    Files.writeString(blobs.resolve(Digest.of(config.getBytes()).hex()), config);
    String manifest = "{\"schemaVersion\":2,\"config\":{\"digest\":\"" + Digest.of(config.getBytes())
        + "\",\"size\":" + config.length() + "},\"layers\":[{\"digest\":\"" + Digest.of(good)
        + "\",\"size\":" + good.length + "},{\"digest\":\"" + Digest.of(f.blob()) + "\",\"size\":"
        + f.blob().length + "}]}";
    Files.writeString(blobs.resolve(Digest.of(manifest.getBytes()).hex()), manifest);
    Files.writeString(dir.resolve("index.json"), "{\"schemaVersion\":2,\"manifests\":[{\"digest\":\""
        + Digest.of(manifest.getBytes()) + "\",\"size\":" + manifest.length() + "}]}");
    List<String> before = StoreFixture.snapshot(root);

    assertThatThrownBy(() -> store.importImage(dir, "hostile:2", null, Progress.NONE))
        .isInstanceOf(BadInputException.class)
        .hasMessageContaining(Digest.of(f.blob()).hex().substring(0, 12))
        .hasMessageContaining(f.why());

    assertThat(StoreFixture.snapshot(root)).isEqualTo(before);
    assertThat(store.hasLayer(Digest.of(good))).isFalse();
  }

  @Test
  void deviceNodeIsRefusedWhenNotRoot() throws Exception {
    byte[] tar = TarBuilder.layer().device("dev/sda", false, 8, 0).bytes();
    Path out = Files.createDirectory(tmp.resolve("x"));
    LayerExtractor x = new LayerExtractor("L", out, SpaceBudget.unlimited(), false);
    assertThatThrownBy(() -> x.extract(new java.io.ByteArrayInputStream(tar)))
        .isInstanceOf(BadInputException.class)
        .hasMessageContaining("dev/sda")
        .hasMessageContaining("only be imported as root");
  }
}
