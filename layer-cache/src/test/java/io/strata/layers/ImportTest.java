package io.strata.layers;

import io.strata.layers.base.BadInputException;
import io.strata.layers.base.Digest;
import io.strata.layers.base.Json;
import io.strata.layers.base.NotFoundException;
import io.strata.layers.base.Progress;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Imports of every source kind, layer sharing, names, rmi and gc. */
class ImportTest {
  @TempDir Path tmp;
  Path root;
  LayerStore store;

  static final TarBuilder A = TarBuilder.layer().dir("a").file("a/file", "from a");
  static final TarBuilder B = TarBuilder.layer().dir("b").file("b/file", "from b");
  static final TarBuilder C = TarBuilder.layer().file("c", "from c").file("a/.wh.file", "");
  static final TarBuilder D = TarBuilder.layer().file("d", "from d").file("b/.wh..wh..opq", "");

  @BeforeEach
  void setUp() {
    root = tmp.resolve("store");
    store = StoreFixture.open(root);
  }

  @Test
  void bareLayerIsNamedByTheDigestOfItsUncompressedTarWhateverTheCompression() throws Exception {
    byte[] plain = A.bytes();
    Digest diffId = Digest.of(plain);
    Path p = Files.write(tmp.resolve("a.tar"), plain);
    Path gz = Files.write(tmp.resolve("a.tar.gz"), TarBuilder.gzip(plain));
    Path zst = Files.write(tmp.resolve("layer.bin"), TarBuilder.zstd(plain)); // no telling name

    ImageRecord r1 = store.importImage(p, "plain:1", null, Progress.NONE);
    ImageRecord r2 = store.importImage(gz, "gz:1", null, Progress.NONE);
    ImageRecord r3 = store.importImage(zst, "zst:1", null, Progress.NONE);

    assertThat(List.of(r1, r2, r3)).allSatisfy(r -> assertThat(r.diffIds()).containsExactly(diffId));
    assertThat(store.layers()).extracting(LayerRecord::diffId).containsExactly(diffId);
    assertThat(store.layerTree(diffId).resolve("a/file")).hasContent("from a");
    assertThat(r1.chainId()).isEqualTo(diffId);
  }

  @Test
  void imagesThatShareLayersStoreEachLayerOnce() throws Exception {
    Path abc = ImageBuilder.image().layer(A).layer(B).layer(C).ociLayout(tmp.resolve("abc"));
    Path abd = ImageBuilder.image().layer(A).layer(B).layer(D).ociLayout(tmp.resolve("abd"));

    ImageRecord r1 = store.importImage(abc, "abc:1", null, Progress.NONE);
    ImageRecord r2 = store.importImage(abd, "abd:1", null, Progress.NONE);

    assertThat(store.layers()).hasSize(4);
    Map<Digest, List<ImageRecord>> usage = store.layerUsage();
    assertThat(usage.get(Digest.of(A.bytes()))).extracting(ImageRecord::id)
        .containsExactlyInAnyOrder(r1.id(), r2.id());
    assertThat(usage.get(Digest.of(C.bytes()))).extracting(ImageRecord::id).containsExactly(r1.id());
    assertThat(r1.chainId()).isEqualTo(Digest.chainId(List.of(
        Digest.of(A.bytes()), Digest.of(B.bytes()), Digest.of(C.bytes()))));
    // Whiteouts keep the OCI form inside the stored layer.
    assertThat(store.layerTree(Digest.of(C.bytes())).resolve("a/.wh.file")).exists();
    assertThat(store.layerTree(Digest.of(D.bytes())).resolve("b/.wh..wh..opq")).exists();
  }

  @Test
  void dockerArchiveAndOciArchiveImportToTheSameImage() throws Exception {
    ImageBuilder image = ImageBuilder.image().layer(A).layer(B);
    Path docker = image.dockerArchive(tmp.resolve("docker.tar"), "example.com/app:v2");
    Path layout = image.ociLayout(tmp.resolve("layout"));
    Path ociArchive = tmp.resolve("oci.tar");
    tarDirectory(layout, ociArchive);
    Path dockerGz = Files.write(tmp.resolve("docker.tgz"), TarBuilder.gzip(Files.readAllBytes(docker)));

    ImageRecord fromDocker = store.importImage(docker, null, null, Progress.NONE);
    ImageRecord fromOci = store.importImage(ociArchive, "oci:archive", null, Progress.NONE);
    ImageRecord fromGz = store.importImage(dockerGz, "docker:gz", null, Progress.NONE);

    assertThat(fromDocker.names()).containsExactly("example.com/app:v2");
    assertThat(fromDocker.id()).isEqualTo(fromOci.id()).isEqualTo(fromGz.id());
    assertThat(fromDocker.diffIds()).isEqualTo(image.diffIds());
    assertThat(store.layers()).hasSize(2);
    assertThat(store.resolve("example.com/app:v2").names())
        .containsExactlyInAnyOrder("example.com/app:v2", "oci:archive", "docker:gz");
  }

  @Test
  void ociRefNameThatIsABareTagIsPutOnTheFileName() throws Exception {
    Path layout = ImageBuilder.image().layer(A).ref("v7").ociLayout(tmp.resolve("my-app"));
    assertThat(store.importImage(layout, null, null, Progress.NONE).names())
        .containsExactly("my-app:v7");
  }

  @Test
  void blobDigestMismatchIsRefusedAndNamesTheLayer() throws Exception {
    Path layout = ImageBuilder.image().layer(A).layer(B).ociLayout(tmp.resolve("bad"));
    // Swap the content of layer 2's blob for other valid gzip bytes.
    Digest blob2 = blobDigests(layout).get(1);
    Files.write(layout.resolve("blobs/sha256/" + blob2.hex()), TarBuilder.gzip(C.bytes()));
    List<String> before = StoreFixture.snapshot(root);

    assertThatThrownBy(() -> store.importImage(layout, "bad:1", null, Progress.NONE))
        .isInstanceOf(BadInputException.class)
        .hasMessageContaining("layer 2")
        .hasMessageContaining("blob digest mismatch")
        .hasMessageContaining(blob2.toString());
    assertThat(StoreFixture.snapshot(root)).isEqualTo(before);
  }

  @Test
  void diffIdMismatchIsRefusedEvenWhenTheClaimedLayerIsAlreadyStored() throws Exception {
    store.importImage(ImageBuilder.image().layer(A).ociLayout(tmp.resolve("a")), "a:1", null,
        Progress.NONE);
    // Image whose config claims its only layer is A while the blob holds B.
    Path layout = ImageBuilder.image().layer(B)
        .config(c -> ((com.fasterxml.jackson.databind.node.ArrayNode) c.get("rootfs").get("diff_ids"))
            .set(0, Digest.of(A.bytes()).toString()))
        .ociLayout(tmp.resolve("liar"));
    List<String> before = StoreFixture.snapshot(root);

    assertThatThrownBy(() -> store.importImage(layout, "liar:1", null, Progress.NONE))
        .isInstanceOf(BadInputException.class)
        .hasMessageContaining("DiffID mismatch")
        .hasMessageContaining(Digest.of(B.bytes()).toString());
    assertThat(StoreFixture.snapshot(root)).isEqualTo(before);
  }

  @Test
  void missingBlobAndBrokenDocumentsAreRefused() throws Exception {
    Path layout = ImageBuilder.image().layer(A).layer(B).ociLayout(tmp.resolve("missing"));
    Files.delete(layout.resolve("blobs/sha256/" + blobDigests(layout).get(1).hex()));
    assertThatThrownBy(() -> store.importImage(layout, null, null, Progress.NONE))
        .isInstanceOf(BadInputException.class).hasMessageContaining("layer 2")
        .hasMessageContaining("missing");

    Path broken = ImageBuilder.image().layer(A).ociLayout(tmp.resolve("broken"));
    Files.writeString(broken.resolve("index.json"), "{\"manifests\": [");
    assertThatThrownBy(() -> store.importImage(broken, null, null, Progress.NONE))
        .isInstanceOf(BadInputException.class).hasMessageContaining("index.json")
        .hasMessageContaining("invalid JSON");

    Path countMismatch = ImageBuilder.image().layer(A)
        .config(c -> ((com.fasterxml.jackson.databind.node.ArrayNode) c.get("rootfs").get("diff_ids"))
            .add(Digest.of(B.bytes()).toString()))
        .ociLayout(tmp.resolve("count"));
    assertThatThrownBy(() -> store.importImage(countMismatch, null, null, Progress.NONE))
        .isInstanceOf(BadInputException.class).hasMessageContaining("1 layers but the config lists 2");
    assertThat(store.images()).isEmpty();
    assertThat(store.layers()).isEmpty();
  }

  @Test
  void rmiRemovesNamesThenTheImageAndGcRemovesUnusedLayers() throws Exception {
    Path abc = ImageBuilder.image().layer(A).layer(B).layer(C).ociLayout(tmp.resolve("abc"));
    Path abd = ImageBuilder.image().layer(A).layer(B).layer(D).ociLayout(tmp.resolve("abd"));
    ImageRecord r1 = store.importImage(abc, "abc:1", null, Progress.NONE);
    store.importImage(abc, "abc:alias", null, Progress.NONE);
    store.importImage(abd, "abd:1", null, Progress.NONE);

    assertThat(store.removeImage("abc:1")).containsExactly("abc:1");
    assertThat(store.resolve(r1.id().hex().substring(0, 8)).names()).containsExactly("abc:alias");
    assertThat(store.removeImage("abc:alias")).containsExactly("abc:alias", r1.id().toString());
    assertThatThrownBy(() -> store.resolve("abc:alias")).isInstanceOf(NotFoundException.class);
    assertThat(store.layers()).hasSize(4); // rmi leaves layers to gc

    LayerStore.GcResult gc = store.gc();
    assertThat(gc.removedLayers()).containsExactly(Digest.of(C.bytes()));
    assertThat(store.layers()).extracting(LayerRecord::diffId).containsExactlyInAnyOrder(
        Digest.of(A.bytes()), Digest.of(B.bytes()), Digest.of(D.bytes()));
    assertThat(store.gc().removedLayers()).isEmpty();
  }

  /** Issue 8, item 14: a killed mount or container left a pin that kept its layers forever. */
  @Test
  void aPinKeepsLayersOnlyWhileItsProcessLives() throws Exception {
    Path abc = ImageBuilder.image().layer(A).layer(B).layer(C).ociLayout(tmp.resolve("abc"));
    ImageRecord r = store.importImage(abc, "abc:1", null, Progress.NONE);
    store.pin("ctr-live", r.diffIds());
    Process gone = new ProcessBuilder("true").start();
    gone.waitFor();
    Path dead = root.resolve("pins/ctr-dead.json");
    Json.writeAtomically(dead, java.util.Map.of("pid", gone.pid(), "started", "then",
        "layers", List.of(Digest.of(C.bytes()))));
    store.removeImage("abc:1");
    assertThat(store.gc().removedLayers()).isEmpty(); // this process holds ctr-live
    assertThat(dead).doesNotExist(); // its holder is gone
    store.unpin("ctr-live");
    assertThat(store.gc().removedLayers()).hasSize(3);
  }

  /** Each extracted file once cost a descriptor that was never closed. */
  @Test
  void anImportLeavesNoDescriptorOpen() throws Exception {
    TarBuilder many = TarBuilder.layer();
    for (int i = 0; i < 300; i++) {
      many.file("f" + i, "x" + i);
    }
    Path tar = many.writeTo(tmp.resolve("many.tar"));
    long before = openDescriptors();
    store.importImage(tar, "many:1", null, Progress.NONE);
    assertThat(openDescriptors() - before).isLessThan(50);
  }

  private static long openDescriptors() throws Exception {
    try (var s = Files.list(Path.of("/proc/self/fd"))) {
      return s.count();
    }
  }

  @Test
  void namesAreValidatedAndCompleted() {
    assertThat(LayerStore.normalizeName("busybox")).isEqualTo("busybox:latest");
    assertThat(LayerStore.normalizeName("localhost:5000/a/b:1.0")).isEqualTo("localhost:5000/a/b:1.0");
    assertThatThrownBy(() -> LayerStore.normalizeName("Bad Name")).isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("invalid image name 'Bad Name'");
    assertThatThrownBy(() -> LayerStore.normalizeName("x:" + "t".repeat(200)))
        .isInstanceOf(IllegalArgumentException.class);
  }

  @Test
  void aDirectoryThatIsNotALayoutIsRefused() throws Exception {
    Path dir = Files.createDirectory(tmp.resolve("plain-dir"));
    assertThatThrownBy(() -> store.importImage(dir, null, null, Progress.NONE))
        .isInstanceOf(BadInputException.class).hasMessageContaining("no oci-layout file");
    assertThatThrownBy(() -> store.importImage(tmp.resolve("nope"), null, null, Progress.NONE))
        .isInstanceOf(NotFoundException.class);
  }

  @Test
  void leftoverStagingIsCleanedOnOpen() throws Exception {
    Path stale = Files.createDirectories(root.resolve("tmp/import-dead/layer-0/diff/x"));
    Files.writeString(stale.resolve("f"), "half");
    StoreFixture.open(root);
    assertThat(StoreFixture.tmpContents(root)).isEmpty();
    assertThat(Files.exists(root.resolve("tmp/import-dead"), LinkOption.NOFOLLOW_LINKS)).isFalse();
  }

  static List<Digest> blobDigests(Path layout) throws Exception {
    var index = Json.MAPPER.readTree(layout.resolve("index.json").toFile());
    Digest m = Digest.parse(index.get("manifests").get(0).get("digest").asText());
    var manifest = Json.MAPPER.readTree(layout.resolve("blobs/sha256/" + m.hex()).toFile());
    List<Digest> out = new java.util.ArrayList<>();
    manifest.get("layers").forEach(l -> out.add(Digest.parse(l.get("digest").asText())));
    return out;
  }

  static void tarDirectory(Path dir, Path out) throws Exception {
    Process p = new ProcessBuilder("tar", "-C", dir.toString(), "-cf", out.toString(), ".")
        .inheritIO().start();
    assertThat(p.waitFor()).isZero();
  }

  static String read(Path p) throws Exception {
    return new String(Files.readAllBytes(p), StandardCharsets.UTF_8);
  }
}
