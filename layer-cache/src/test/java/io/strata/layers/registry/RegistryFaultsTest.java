package io.strata.layers.registry;

import io.strata.layers.LayerStore;
import io.strata.layers.StoreFixture;
import io.strata.layers.TarBuilder;
import io.strata.layers.archive.ImageConfig;
import io.strata.layers.archive.MediaTypes;
import io.strata.layers.base.BadInputException;
import io.strata.layers.base.Digest;
import io.strata.layers.base.Json;
import io.strata.layers.base.Progress;
import io.strata.layers.base.StoreException;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A registry that misbehaves on purpose (the JDK's HttpServer, on loopback): connections that
 * drop or stall mid-blob, blobs whose digest lies, manifests that are not JSON, too large or of
 * an unknown type, a digest of another algorithm, a blob redirected to another host, a token
 * endpoint that returns garbage. Each gives a clear error and stores nothing, or, for the
 * broken connections, resumes and succeeds.
 */
class RegistryFaultsTest {
  @TempDir Path tmp;
  LayerStore store;
  HttpServer server;
  HttpServer other;
  final List<String> log = new CopyOnWriteArrayList<>();
  final List<String> requests = new CopyOnWriteArrayList<>();
  final List<String> otherAuth = new CopyOnWriteArrayList<>();

  byte[] tar;
  byte[] layer;
  byte[] config;
  byte[] manifest;
  String manifestType = MediaTypes.OCI_MANIFEST;
  String fault = "none";
  final AtomicInteger blobRequests = new AtomicInteger();

  @BeforeEach
  void setUp() throws Exception {
    store = LayerStore.open(tmp.resolve("store"), line -> {
      log.add(line);
      System.err.println("store: " + line);
    });
    byte[] random = new byte[2 << 20];
    new Random(42).nextBytes(random);
    tar = TarBuilder.layer().dir("data").file("data/blob", random, 0644, e -> {}).bytes();
    layer = TarBuilder.gzip(tar);
    ObjectNode c = Json.MAPPER.createObjectNode();
    c.put("architecture", ImageConfig.goArch());
    c.put("os", "linux");
    c.putObject("rootfs").put("type", "layers").putArray("diff_ids")
        .add(Digest.of(tar).toString());
    config = Json.MAPPER.writeValueAsBytes(c);
    manifest = manifest(Digest.of(layer).toString(), "application/vnd.oci.image.layer.v1.tar+gzip");
    server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 16);
    server.createContext("/", this::handle);
    server.setExecutor(java.util.concurrent.Executors.newCachedThreadPool());
    server.start();
    other = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 16);
    other.createContext("/", ex -> {
      otherAuth.add(String.valueOf(ex.getRequestHeaders().getFirst("Authorization")));
      send(ex, 200, "application/octet-stream", layer);
    });
    other.start();
  }

  @AfterEach
  void tearDown() {
    server.stop(0);
    other.stop(0);
  }

  byte[] manifest(String layerDigest, String layerType) throws IOException {
    ObjectNode m = Json.MAPPER.createObjectNode();
    m.put("schemaVersion", 2);
    m.put("mediaType", MediaTypes.OCI_MANIFEST);
    m.putObject("config").put("mediaType", "application/vnd.oci.image.config.v1+json")
        .put("digest", Digest.of(config).toString()).put("size", config.length);
    m.putArray("layers").addObject().put("mediaType", layerType).put("digest", layerDigest)
        .put("size", layer.length);
    return Json.MAPPER.writeValueAsBytes(m);
  }

  String ref() {
    return "127.0.0.1:" + server.getAddress().getPort() + "/app:v1";
  }

  Distribution.PullResult pull() {
    return Distribution.pull(store, ref(), null, null, new Distribution.Options(true, null, null,
        new Credentials.Login("user", "hunter2-secret"), Duration.ofSeconds(1)), null,
        Progress.NONE);
  }

  private void handle(HttpExchange ex) throws IOException {
    String path = ex.getRequestURI().getPath();
    requests.add(ex.getRequestMethod() + " " + path + " "
        + ex.getRequestHeaders().getFirst("Range"));
    if (path.equals("/v2/")) {
      if (fault.equals("token-garbage")) {
        ex.getResponseHeaders().add("WWW-Authenticate", "Bearer realm=\"http://127.0.0.1:"
            + server.getAddress().getPort() + "/token\",service=\"test\"");
        send(ex, 401, "application/json", "{}".getBytes(StandardCharsets.UTF_8));
        return;
      }
      send(ex, 200, "application/json", "{}".getBytes(StandardCharsets.UTF_8));
      return;
    }
    if (path.equals("/token")) {
      send(ex, 200, "application/json", "<html>not a token</html>".getBytes(StandardCharsets.UTF_8));
      return;
    }
    if (path.startsWith("/v2/app/manifests/")) {
      switch (fault) {
        case "not-json" -> send(ex, 200, MediaTypes.OCI_MANIFEST, "{\"schemaVersion\": 2, [".getBytes(StandardCharsets.UTF_8));
        case "huge" -> send(ex, 200, MediaTypes.OCI_MANIFEST, new byte[Registry.MAX_MANIFEST + 10]);
        default -> send(ex, 200, manifestType, manifest);
      }
      return;
    }
    if (path.equals("/v2/app/blobs/" + Digest.of(config))) {
      send(ex, 200, "application/octet-stream", config);
      return;
    }
    if (path.startsWith("/v2/app/blobs/")) {
      int n = blobRequests.incrementAndGet();
      byte[] body = layer;
      String range = ex.getRequestHeaders().getFirst("Range");
      if (fault.equals("redirect")) {
        ex.getResponseHeaders().add("Location", "http://127.0.0.1:" + other.getAddress().getPort()
            + "/storage/blob?sig=1");
        send(ex, 307, "text/plain", new byte[0]);
        return;
      }
      if (fault.equals("lying")) {
        body = layer.clone();
        body[body.length / 2] ^= 1;
      }
      int from = 0;
      if (range != null && range.startsWith("bytes=")) {
        from = Integer.parseInt(range.substring(6, range.indexOf('-')));
        ex.getResponseHeaders().add("Content-Range", "bytes " + from + "-" + (body.length - 1)
            + "/" + body.length);
      }
      ex.getResponseHeaders().add("Content-Type", "application/octet-stream");
      if (fault.equals("long")) { // announces more than it sends, then holds the line
        ex.sendResponseHeaders(200, body.length + 1000);
        ex.getResponseBody().write(body);
        ex.getResponseBody().flush();
        try {
          Thread.sleep(15_000);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
        ex.close();
        return;
      }
      ex.sendResponseHeaders(from > 0 ? 206 : 200, body.length - from);
      OutputStream out = ex.getResponseBody();
      if (n == 1 && (fault.equals("drop") || fault.equals("stall"))) {
        out.write(body, 0, body.length / 2);
        out.flush();
        if (fault.equals("stall")) {
          try {
            Thread.sleep(15_000);
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
          }
        }
        ex.getHttpContext().getServer(); // the exchange is dropped without its remaining bytes
        ex.close();
        return;
      }
      out.write(body, from, body.length - from);
      out.close();
      return;
    }
    send(ex, 404, "application/json", "{\"errors\":[{\"code\":\"NAME_UNKNOWN\"}]}".getBytes(StandardCharsets.UTF_8));
  }

  private static void send(HttpExchange ex, int status, String type, byte[] body) throws IOException {
    ex.getResponseHeaders().add("Content-Type", type);
    ex.sendResponseHeaders(status, body.length == 0 ? -1 : body.length);
    if (body.length > 0) {
      try (OutputStream out = ex.getResponseBody()) {
        out.write(body);
      }
    }
    ex.close();
  }

  @Test
  void zstdAndPlainLayersArePulledToo() throws Exception {
    for (String type : List.of("application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.v1.tar")) {
      layer = type.endsWith("zstd") ? TarBuilder.zstd(tar) : tar;
      manifest = manifest(Digest.of(layer).toString(), type);
      LayerStore fresh = LayerStore.open(tmp.resolve("store-" + type.length()), l -> { });
      Distribution.PullResult r = Distribution.pull(fresh, ref(), null, null, new Distribution.Options(
          true, null, null, null, Duration.ofSeconds(5)), null, Progress.NONE);
      assertThat(r.image().diffIds()).containsExactly(Digest.of(tar));
      assertThat(fresh.layerTree(Digest.of(tar)).resolve("data/blob")).hasSize(2 << 20);
    }
  }

  @Test
  void aConnectionDroppedMidBlobIsResumedWithARange() throws Exception {
    fault = "drop";
    Distribution.PullResult r = pull();
    assertThat(r.layersFetched()).isEqualTo(1);
    // what arrived before the break is kept: the retry asks for the rest only
    String resumed = requests.stream().filter(q -> q.contains(" bytes=")).findFirst().orElseThrow();
    long at = Long.parseLong(resumed.replaceAll(".* bytes=([0-9]+)-$", "$1"));
    assertThat(at).isPositive().isLessThanOrEqualTo(layer.length / 2);
    assertThat(String.join("\n", log)).contains("resuming at byte " + at);
  }

  @Test
  void aStalledConnectionIsGivenUpAfterTheStallTimeoutAndResumed() throws Exception {
    fault = "stall";
    Distribution.PullResult r = pull();
    assertThat(r.layersFetched()).isEqualTo(1);
    assertThat(String.join("\n", log)).contains("no data for 1 s");
    // cut off by the watchdog and resumed after the bytes that came, not restarted
    assertThat(requests).anyMatch(q -> q.matches(".*/blobs/sha256:.* bytes=[1-9][0-9]*-"));
  }

  @Test
  void aBlobWhoseDigestLiesIsRefusedAndNothingIsStored() throws Exception {
    List<String> before = StoreFixture.snapshot(store.root());
    fault = "lying";
    assertThatThrownBy(this::pull).isInstanceOf(BadInputException.class)
        .hasMessageContaining("digest").hasMessageContaining(Digest.of(layer).toString())
        .hasMessageContaining("nothing was stored");
    assertThat(StoreFixture.snapshot(store.root())).isEqualTo(before);
    assertThat(StoreFixture.tmpContents(store.root())).isEmpty();
  }

  /** Issue 16, item 9: it waited out the stall limit five times (~5 min at the default). */
  @Test
  void aBlobLongerThanItsDescriptorIsRefusedAtOnce() throws Exception {
    List<String> before = StoreFixture.snapshot(store.root());
    fault = "long";
    assertThatThrownBy(this::pull).isInstanceOf(BadInputException.class)
        .hasMessageContaining("announces " + (layer.length + 1000) + " bytes")
        .hasMessageContaining("the manifest says " + layer.length);
    assertThat(blobRequests.get()).as("no retry").isEqualTo(1);
    assertThat(StoreFixture.snapshot(store.root())).isEqualTo(before);
  }

  /** Issue 16, item 9: a size of 2^62 passed for a layer the store already had. */
  @Test
  void anAbsurdOrWrongSizeIsRefusedAlsoForAStoredLayer() throws Exception {
    pull();
    for (long size : new long[] {1L << 62, layer.length + 1}) {
      com.fasterxml.jackson.databind.node.ObjectNode m =
          (com.fasterxml.jackson.databind.node.ObjectNode) Json.MAPPER.readTree(manifest);
      ((com.fasterxml.jackson.databind.node.ObjectNode) m.get("layers").get(0)).put("size", size);
      manifest = Json.MAPPER.writeValueAsBytes(m);
      int asked = blobRequests.get();
      assertThatThrownBy(this::pull).isInstanceOf(BadInputException.class)
          .hasMessageContaining(String.valueOf(size));
      assertThat(blobRequests.get()).isEqualTo(asked);
    }
  }

  @Test
  void badManifestsAreClearErrorsThatStoreNothing() throws Exception {
    List<String> before = StoreFixture.snapshot(store.root());
    List<String> messages = new ArrayList<>();
    fault = "not-json";
    messages.add(failure());
    fault = "huge";
    messages.add(failure());
    fault = "none";
    manifestType = "application/vnd.example.unknown+json";
    messages.add(failure());
    manifestType = MediaTypes.OCI_MANIFEST;
    manifest = manifest("sha512:" + "ab".repeat(64), "application/vnd.oci.image.layer.v1.tar+gzip");
    messages.add(failure());
    manifest = manifest(Digest.of(layer).toString(), "application/vnd.example.weird");
    messages.add(failure());
    assertThat(messages.get(0)).contains("invalid JSON");
    assertThat(messages.get(1)).contains("strata reads at most " + Registry.MAX_MANIFEST);
    assertThat(messages.get(2)).contains("unknown media type 'application/vnd.example.unknown+json'");
    assertThat(messages.get(3)).contains("not a sha256 digest");
    assertThat(messages.get(4)).contains("'application/vnd.example.weird' is not a layer");
    assertThat(StoreFixture.snapshot(store.root())).isEqualTo(before);
    assertThat(String.join("\n", messages) + String.join("\n", log)).doesNotContain("hunter2");
    assertThat(blobRequests.get()).isZero(); // refused before any layer was fetched
  }

  private String failure() {
    try {
      pull();
    } catch (RuntimeException e) {
      assertThat(e).isInstanceOfAny(BadInputException.class, StoreException.class);
      return e.getMessage();
    }
    throw new AssertionError("the pull succeeded");
  }

  @Test
  void aBlobRedirectedToAnotherHostIsFetchedWithoutTheCredentials() throws Exception {
    fault = "redirect";
    Distribution.pull(store, ref(), null, null, new Distribution.Options(true, null, null,
        new Credentials.Login("user", "hunter2-secret"), Duration.ofSeconds(5)), null,
        Progress.NONE);
    assertThat(otherAuth).hasSize(1).containsOnly("null");
  }

  @Test
  void aTokenEndpointThatReturnsGarbageIsAClearError() throws Exception {
    fault = "token-garbage";
    List<String> before = StoreFixture.snapshot(store.root());
    assertThatThrownBy(this::pull).isInstanceOf(BadInputException.class)
        .hasMessageContaining("token endpoint returned something that is not JSON")
        .satisfies(e -> assertThat(e.getMessage()).doesNotContain("hunter2"));
    assertThat(StoreFixture.snapshot(store.root())).isEqualTo(before);
  }
}
