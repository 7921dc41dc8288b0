package io.strata.layers.registry;

import io.strata.layers.ImageBuilder;
import io.strata.layers.ImageRecord;
import io.strata.layers.LayerStore;
import io.strata.layers.StoreFixture;
import io.strata.layers.TarBuilder;
import io.strata.layers.base.NotFoundException;
import io.strata.layers.base.Progress;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Pull and push against a real registry (Debian's docker-registry, started here on
 * 127.0.0.1), with skopeo as the other side: what skopeo pushes strata pulls with the same
 * digests, and what strata pushes or saves skopeo reads back to the same image.
 */
class RegistryTest {
  @TempDir Path tmp;
  LayerStore store;
  final List<String> log = new ArrayList<>();

  @BeforeEach
  void setUp() {
    store = LayerStore.open(tmp.resolve("store"), line -> {
      log.add(line);
      System.err.println("store: " + line);
    });
  }

  static Distribution.Options plain() {
    return new Distribution.Options(true, null, null, null, Duration.ofSeconds(20));
  }

  static TarBuilder base() {
    return TarBuilder.layer().dir("etc").file("etc/os-release", "ID=strata-test\n")
        .file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n").dir("bin")
        .file("bin/tool", new byte[300_000], 0755, e -> {}).hardlink("bin/tool2", "bin/tool")
        .symlink("bin/sh", "tool");
  }

  static TarBuilder app(String v) {
    return TarBuilder.layer().dir("app").file("app/version", v + "\n");
  }

  @Test
  void whatSkopeoPushesStrataPullsWithTheSameDigestsAndASecondPullFetchesOneLayer()
      throws Exception {
    Path a = ImageBuilder.image().layer(base()).layer(app("1")).ref("v1")
        .ociLayout(tmp.resolve("a"));
    Path b = ImageBuilder.image().layer(base()).layer(app("2")).ref("v2")
        .ociLayout(tmp.resolve("b"));
    try (LocalRegistry reg = LocalRegistry.plain(tmp.resolve("reg"))) {
      reg.skopeoCopy("oci:" + a + ":v1", "docker://" + reg.host() + "/app:v1");
      reg.skopeoCopy("oci:" + b + ":v2", "docker://" + reg.host() + "/app:v2");

      Distribution.PullResult r = Distribution.pull(store, reg.host() + "/app:v1", null, null, plain(), null,
          Progress.NONE);
      assertThat(r.image().names()).containsExactly(reg.host() + "/app:v1");
      assertThat(r.layersFetched()).isEqualTo(2);
      assertThat("sha256:" + r.image().manifestDigest().hex())
          .isEqualTo(reg.skopeoDigest("app:v1"));
      ImageRecord local = store.importImage(a, "local:v1", null, Progress.NONE);
      assertThat(r.image().id()).isEqualTo(local.id()); // same config, same image
      assertThat(store.layerTree(r.image().diffIds().get(0)).resolve("bin/tool2")).exists();

      Distribution.PullResult second = Distribution.pull(store, reg.host() + "/app:v2", null, null, plain(),
          null, Progress.NONE);
      assertThat(second.layersFetched()).isEqualTo(1);
      assertThat(second.layersSkipped()).isEqualTo(1);
      assertThat(second.bytesFetched()).isLessThan(1000); // only the small app layer

      Distribution.PullResult again = Distribution.pull(store, reg.host() + "/app:v2", null, null, plain(),
          null, Progress.NONE);
      assertThat(again.layersFetched()).isZero();

      // by digest, and resolving the short name of a pulled image
      Distribution.PullResult byDigest = Distribution.pull(store, reg.host() + "/app@"
          + reg.skopeoDigest("app:v1"), "pinned:1", null, plain(), null, Progress.NONE);
      assertThat(byDigest.image().id()).isEqualTo(r.image().id());
    }
  }

  @Test
  void whatStrataPushesAndSavesSkopeoReadsBackAsTheSameImage() throws Exception {
    Path a = ImageBuilder.image().layer(base()).layer(app("1")).ociLayout(tmp.resolve("a"));
    ImageRecord img = store.importImage(a, "local:v1", null, Progress.NONE);
    try (LocalRegistry reg = LocalRegistry.plain(tmp.resolve("reg"))) {
      Distribution.PushResult p = Distribution.push(store, "local:v1", reg.host() + "/pushed:v1", plain(), 0,
          Progress.NONE);
      assertThat(p.blobsSent()).isEqualTo(3);
      assertThat(reg.skopeoDigest("pushed:v1")).isEqualTo(p.manifestDigest().toString());
      Path back = tmp.resolve("back");
      reg.skopeoCopy("docker://" + reg.host() + "/pushed:v1", "oci:" + back + ":x");
      LayerStore other = LayerStore.open(tmp.resolve("other"), l -> {});
      assertThat(other.importImage(back, "x:1", null, Progress.NONE).id()).isEqualTo(img.id());

      // a second push sends nothing; a chunked push to another repository sends all
      Distribution.PushResult again = Distribution.push(store, "local:v1", reg.host() + "/pushed:v1", plain(), 0,
          Progress.NONE);
      assertThat(again.blobsSent()).isZero();
      assertThat(again.manifestDigest()).isEqualTo(p.manifestDigest());
      // (from a store that knows no blob of these layers: this one would mount them)
      Distribution.PushResult chunked = Distribution.push(other, "x:1", reg.host() + "/chunked:v1", plain(),
          64 * 1024, Progress.NONE);
      assertThat(chunked.blobsSent()).isEqualTo(3);
      assertThat(reg.skopeoDigest("chunked:v1")).isEqualTo(p.manifestDigest().toString());

      // a pulled image pushed to another repository of its registry is mounted, not sent, and
      // keeps its manifest digest
      Distribution.PullResult pulled = Distribution.pull(store, reg.host() + "/pushed:v1", null, null, plain(),
          null, Progress.NONE);
      Distribution.PushResult mounted = Distribution.push(store, pulled.image().names().get(0),
          reg.host() + "/elsewhere:v1", plain(), 0, Progress.NONE);
      assertThat(mounted.blobsMounted()).isEqualTo(3);
      assertThat(mounted.blobsSent()).isZero();
      assertThat(mounted.manifestDigest()).isEqualTo(p.manifestDigest());
    }

    // save in every format; skopeo reads each, and strata imports each to the same image id
    Path docker = tmp.resolve("saved.tar");
    store.save(List.of("local:v1"), docker, LayerStore.SaveFormat.DOCKER_ARCHIVE, false,
        Progress.NONE);
    Path fromDocker = tmp.resolve("from-docker");
    LocalRegistry.run("skopeo", "copy", "--quiet", "docker-archive:" + docker,
        "oci:" + fromDocker + ":d");
    // podman loads it as the same image (its own vfs store in the test's directory)
    String podman = "podman --root " + tmp.resolve("podman") + " --runroot "
        + tmp.resolve("podman-run") + " --storage-driver vfs ";
    LocalRegistry.run("sh", "-c", podman + "load -q -i " + docker);
    assertThat(LocalRegistry.run("sh", "-c", podman + "image inspect --format '{{.Id}}' local:v1")
        .trim()).isEqualTo(img.id().hex());
    Path ociDir = tmp.resolve("saved-oci");
    store.save(List.of("local:v1"), ociDir, LayerStore.SaveFormat.OCI_DIR, true, Progress.NONE);
    LocalRegistry.run("skopeo", "inspect", "oci:" + ociDir + ":local:v1");
    Path ociTar = tmp.resolve("saved-oci.tar");
    store.save(List.of("local:v1"), ociTar, LayerStore.SaveFormat.OCI_ARCHIVE, false,
        Progress.NONE);
    LocalRegistry.run("skopeo", "inspect", "oci-archive:" + ociTar);
    for (Path p : List.of(docker, fromDocker, ociDir, ociTar)) {
      LayerStore fresh = LayerStore.open(tmp.resolve("fresh-" + p.getFileName()), l -> {});
      ImageRecord again = fresh.importImage(p, "again:1", null, Progress.NONE);
      assertThat(again.diffIds()).as(p.toString()).isEqualTo(img.diffIds());
      if (p != fromDocker) { // skopeo rewrites a docker config it turns into OCI
        assertThat(again.id()).as(p.toString()).isEqualTo(img.id());
      }
    }
  }

  /**
   * Issue 16, item 8: an image committed on a pulled one sent its base layers again
   * (recompressed under new digests) and a second push compressed every layer to send nothing.
   * The blob-info cache makes the base layers HEAD hits in their own repository and mounts in
   * another, and a push again compresses nothing.
   */
  @Test
  void aDerivedImagePushesOnlyWhatIsNew() throws Exception {
    Path a = ImageBuilder.image().layer(base()).layer(app("1")).ociLayout(tmp.resolve("a"));
    store.importImage(a, "local:v1", null, Progress.NONE);
    try (LocalRegistry reg = LocalRegistry.plain(tmp.resolve("reg"))) {
      assertThat(Distribution.push(store, "local:v1", reg.host() + "/base:v1", plain(), 0, Progress.NONE)
          .blobsSent()).isEqualTo(3);
      LayerStore fresh = LayerStore.open(tmp.resolve("fresh"), l -> { });
      ImageRecord pulled = Distribution.pull(fresh, reg.host() + "/base:v1", null, null, plain(), null,
          Progress.NONE).image();
      Path change = TarBuilder.layer().dir("app").file("app/extra", "new\n")
          .writeTo(tmp.resolve("change.tar"));
      ImageRecord derived = fresh.commit(pulled, out -> Files.copy(change, out), "derived:1",
          "a change", null, java.util.Map.of(), Progress.NONE).image();
      assertThat(derived.diffIds()).hasSize(3);

      List<String> said = new ArrayList<>();
      Progress listen = new Progress() {
        @Override
        public void message(String text) {
          said.add(text);
        }

        @Override
        public void layerWork(String verb, int index, int count, String label, long expected) {
          said.add(verb + " layer " + index + "/" + count);
        }
      };
      Distribution.PushResult same = Distribution.push(fresh, "derived:1", reg.host() + "/base:derived",
          plain(), 0, listen);
      assertThat(same.blobsPresent()).as(said.toString()).isEqualTo(2); // the base layers
      assertThat(same.blobsSent()).isEqualTo(2); // the new layer and the config
      assertThat(said).filteredOn(m -> m.contains("compressing")).containsExactly(
          "compressing layer 3/3");

      said.clear();
      Distribution.PushResult other = Distribution.push(fresh, "derived:1", reg.host() + "/other:derived",
          plain(), 0, listen);
      assertThat(other.blobsMounted()).as(said.toString()).isEqualTo(3);
      assertThat(other.blobsSent()).isEqualTo(1); // the config, which nothing recorded
      assertThat(said).noneMatch(m -> m.contains("compressing"));

      said.clear();
      Distribution.PushResult again = Distribution.push(fresh, "derived:1", reg.host() + "/base:derived",
          plain(), 0, listen);
      assertThat(again.blobsSent()).isZero();
      assertThat(again.manifestDigest()).isEqualTo(same.manifestDigest());
      assertThat(said).noneMatch(m -> m.contains("compressing"));

      // what was pushed pulls back as the same image
      LayerStore back = LayerStore.open(tmp.resolve("back"), l -> { });
      assertThat(Distribution.pull(back, reg.host() + "/other:derived", null, null, plain(), null,
          Progress.NONE).image().id()).isEqualTo(derived.id());
    }
  }

  @Test
  void tlsAndLoginWithATestCa() throws Exception {
    Path a = ImageBuilder.image().layer(base()).ociLayout(tmp.resolve("a"));
    try (LocalRegistry reg = LocalRegistry.tlsWithAuth(tmp.resolve("reg"), "tester", "s3cret-pw")) {
      reg.skopeoCopy("oci:" + a + ":test:1", "docker://" + reg.host() + "/secure:v1");
      List<String> before = StoreFixture.snapshot(store.root());
      String ref = reg.host() + "/secure:v1";

      // the CA is not trusted: refused, and the message says how to trust it
      assertThatThrownBy(() -> Distribution.pull(store, ref, null, null, plain(), null, Progress.NONE))
          .hasMessageContaining("--cert-dir");
      Distribution.Options trusted = new Distribution.Options(true, reg.caDir, null,
          null, Duration.ofSeconds(20));
      // trusted but anonymous: a login is asked for
      assertThatThrownBy(() -> Distribution.pull(store, ref, null, null, trusted, null, Progress.NONE))
          .isInstanceOf(NotFoundException.class).hasMessageContaining("login");
      // a wrong password: refused, and never shown
      Distribution.Options wrong = new Distribution.Options(true, reg.caDir, null,
          new Credentials.Login("tester", "not-the-pw"), Duration.ofSeconds(20));
      assertThatThrownBy(() -> Distribution.pull(store, ref, null, null, wrong, null, Progress.NONE))
          .isInstanceOf(NotFoundException.class)
          .satisfies(e -> assertThat(e.getMessage()).doesNotContain("not-the-pw"));
      assertThat(StoreFixture.snapshot(store.root())).isEqualTo(before);
      assertThat(String.join("\n", log)).doesNotContain("not-the-pw").doesNotContain("s3cret");

      // a login stored in an auth file (as strata login writes it) is used
      Path auth = tmp.resolve("auth.json");
      Distribution.checkLogin(reg.host(), new Distribution.Options(true, reg.caDir, null,
          new Credentials.Login("tester", "s3cret-pw"), Duration.ofSeconds(20)), l -> { });
      Credentials.store(reg.host(), new Credentials.Login("tester", "s3cret-pw"), auth);
      assertThat(java.nio.file.attribute.PosixFilePermissions.toString(
          Files.getPosixFilePermissions(auth))).isEqualTo("rw-------");
      Distribution.Options withFile = new Distribution.Options(true, reg.caDir, auth,
          null, Duration.ofSeconds(20));
      Distribution.PullResult r = Distribution.pull(store, ref, null, null, withFile, null, Progress.NONE);
      assertThat(r.layersFetched()).isEqualTo(1);
      Distribution.PushResult p = Distribution.push(store, ref, reg.host() + "/copy:v1", withFile, 0,
          Progress.NONE);
      assertThat(reg.skopeoDigest("copy:v1")).isEqualTo(p.manifestDigest().toString());

      // --tls-verify=false takes the certificate as it is
      LayerStore other = LayerStore.open(tmp.resolve("other"), l -> {});
      assertThat(Distribution.pull(other, ref, null, null, new Distribution.Options(false, null, auth,
          null, Duration.ofSeconds(20)), null, Progress.NONE).image().id())
          .isEqualTo(r.image().id());
    }
  }

  @Test
  void referencesTheGrammarRefusesAreUsageErrorsBeforeAnyNetwork() {
    for (String bad : List.of("UPPER/case:v1", "localhost:5000/app:-tag", "app:" + "t".repeat(129),
        "app@sha512:" + "a".repeat(128), "app@sha256:xyz", "a//b", "host:99999999/x", "")) {
      assertThatThrownBy(() -> Distribution.pull(store, bad, null, null, plain(), null, Progress.NONE))
          .as(bad).isInstanceOf(IllegalArgumentException.class)
          .hasMessageContaining("invalid image reference");
    }
    Reference r = Reference.parse("busybox", Reference.DOCKER_HUB);
    assertThat(r.toString()).isEqualTo("docker.io/library/busybox:latest");
    assertThat(Reference.parse("localhost:5000/a/b:1", "x").registry()).isEqualTo("localhost:5000");
  }

  @Test
  void shortNamesFollowRegistriesConf() throws Exception {
    Path conf = Files.writeString(tmp.resolve("registries.conf"),
        "# test\nunqualified-search-registries = [\"127.0.0.1:1\", 'quay.io']\n[[registry]]\n"
            + "location = \"x\"\n");
    assertThat(Reference.candidates("app:v1", conf)).extracting(Reference::toString)
        .containsExactly("127.0.0.1:1/app:v1", "quay.io/app:v1");
    assertThat(Reference.candidates("app:v1", tmp.resolve("none"))).extracting(Reference::toString)
        .containsExactly("docker.io/library/app:v1");
    assertThat(Reference.candidates("ghcr.io/o/app", conf)).extracting(Reference::toString)
        .containsExactly("ghcr.io/o/app:latest");
  }
}
