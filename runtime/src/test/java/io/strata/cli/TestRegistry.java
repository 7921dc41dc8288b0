package io.strata.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.strata.layers.base.Json;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** Debian's docker-registry on a free loopback port with its own storage, for one test. */
final class TestRegistry implements AutoCloseable {
  private final Process process;
  private final String address;

  private TestRegistry(Process process, String address) {
    this.process = process;
    this.address = address;
  }

  static TestRegistry start(Path dir) throws Exception {
    Files.createDirectories(dir);
    int port;
    try (var s = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      port = s.getLocalPort();
    }
    Path cfg = Files.writeString(dir.resolve("registry.yml"), "version: 0.1\nlog:\n  level: warn\n"
        + "storage:\n  filesystem:\n    rootdirectory: " + dir.resolve("data") + "\n"
        + "http:\n  addr: 127.0.0.1:" + port + "\n");
    Process p = new ProcessBuilder("docker-registry", "serve", cfg.toString())
        .redirectErrorStream(true).redirectOutput(dir.resolve("registry.log").toFile()).start();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (true) {
      try (var sock = new java.net.Socket("127.0.0.1", port)) {
        return new TestRegistry(p, "127.0.0.1:" + port);
      } catch (java.io.IOException notYet) {
        if (System.nanoTime() > deadline) {
          p.destroyForcibly();
        }
        assertThat(System.nanoTime()).as("docker-registry did not start").isLessThan(deadline);
        Thread.sleep(50);
      }
    }
  }

  /** HOST:PORT. */
  String address() {
    return address;
  }

  /** The layer blob digests of an image's manifest, as the registry serves it. */
  List<String> layerBlobs(String repository, String tag) throws Exception {
    HttpResponse<byte[]> r = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
        URI.create("http://" + address + "/v2/" + repository + "/manifests/" + tag))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json,"
            + "application/vnd.docker.distribution.manifest.v2+json").build(),
        HttpResponse.BodyHandlers.ofByteArray());
    assertThat(r.statusCode()).isEqualTo(200);
    List<String> out = new ArrayList<>();
    for (JsonNode l : Json.MAPPER.readTree(r.body()).path("layers")) {
      out.add(l.path("digest").asText());
    }
    return out;
  }

  @Override
  public void close() throws Exception {
    process.destroy();
    if (!process.waitFor(15, TimeUnit.SECONDS)) {
      process.destroyForcibly().waitFor();
    }
  }
}
