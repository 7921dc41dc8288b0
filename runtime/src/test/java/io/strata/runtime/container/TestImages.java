package io.strata.runtime.container;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.strata.layers.base.Digest;
import io.strata.layers.base.Json;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.function.Consumer;

/** Test images built on this machine: busybox-static (Debian's package) and variants of it. */
public final class TestImages {
  private TestImages() {}

  /** A busybox root with /etc/passwd and /root, every applet linked, in DIR/rootfs. */
  public static Path busyboxRoot(Path dir) throws Exception {
    Path rootfs = Files.createDirectories(dir.resolve("rootfs/bin"));
    Files.copy(Path.of("/bin/busybox"), rootfs.resolve("busybox"));
    Files.createDirectories(dir.resolve("rootfs/etc"));
    Files.createDirectories(dir.resolve("rootfs/root"));
    Files.writeString(dir.resolve("rootfs/etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    Process list = new ProcessBuilder("/bin/busybox", "--list").start();
    for (String applet : new String(list.getInputStream().readAllBytes()).split("\n")) {
      if (!applet.isBlank() && !applet.equals("busybox")) {
        Files.createSymbolicLink(rootfs.resolve(applet.trim()), Path.of("busybox"));
      }
    }
    return dir.resolve("rootfs");
  }

  /** Tars a root into a layer. */
  public static Path tar(Path root, Path tar) throws Exception {
    assertThat(new ProcessBuilder("tar", "-C", root.toString(), "-cf", tar.toString(), ".")
        .inheritIO().start().waitFor()).isZero();
    return tar;
  }

  /** An OCI image layout of one layer whose config the caller fills in. */
  static Path ociLayout(Path layerTar, Path dir, Consumer<ObjectNode> config) throws Exception {
    return ociLayout(List.of(layerTar), dir, config);
  }

  /**
   * An OCI image layout of these layers, bottom first (each a plain tar, or gzip-compressed if
   * its name ends in .gz), whose config the caller fills in.
   */
  public static Path ociLayout(List<Path> layers, Path dir, Consumer<ObjectNode> config)
      throws Exception {
    Path blobs = Files.createDirectories(dir.resolve("blobs/sha256"));
    ObjectNode cfg = Json.MAPPER.createObjectNode();
    cfg.put("architecture", "amd64").put("os", "linux");
    config.accept(cfg.putObject("config"));
    var diffIds = cfg.putObject("rootfs").put("type", "layers").putArray("diff_ids");
    ObjectNode manifest = Json.MAPPER.createObjectNode();
    manifest.put("schemaVersion", 2).put("mediaType", "application/vnd.oci.image.manifest.v1+json");
    var layerArray = manifest.putArray("layers");
    for (Path layer : layers) {
      byte[] blob = Files.readAllBytes(layer);
      Digest d = Digest.of(blob);
      Files.write(blobs.resolve(d.hex()), blob);
      boolean gzip = layer.getFileName().toString().endsWith(".gz");
      byte[] tar = blob;
      if (gzip) {
        try (var in = new java.util.zip.GZIPInputStream(new java.io.ByteArrayInputStream(blob))) {
          tar = in.readAllBytes();
        }
      }
      diffIds.add(Digest.of(tar).toString());
      layerArray.addObject().put("mediaType", "application/vnd.oci.image.layer.v1.tar"
          + (gzip ? "+gzip" : "")).put("digest", d.toString()).put("size", blob.length);
    }
    byte[] cfgBytes = Json.MAPPER.writeValueAsBytes(cfg);
    Digest cfgDigest = Digest.of(cfgBytes);
    Files.write(blobs.resolve(cfgDigest.hex()), cfgBytes);
    manifest.putObject("config").put("mediaType", "application/vnd.oci.image.config.v1+json")
        .put("digest", cfgDigest.toString()).put("size", cfgBytes.length);
    byte[] mBytes = Json.MAPPER.writeValueAsBytes(manifest);
    Digest mDigest = Digest.of(mBytes);
    Files.write(blobs.resolve(mDigest.hex()), mBytes);
    ObjectNode index = Json.MAPPER.createObjectNode();
    index.put("schemaVersion", 2);
    index.putArray("manifests").addObject()
        .put("mediaType", "application/vnd.oci.image.manifest.v1+json")
        .put("digest", mDigest.toString()).put("size", mBytes.length);
    Files.write(dir.resolve("index.json"), Json.MAPPER.writeValueAsBytes(index));
    Files.writeString(dir.resolve("oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}");
    return dir;
  }

  /** Compiles a C program of the tests statically, for a root without a libc. */
  static void compileStatic(Path source, Path out) throws Exception {
    Process cc = new ProcessBuilder(List.of("cc", "-static", "-O2", "-o", out.toString(),
        source.toString())).inheritIO().start();
    assertThat(cc.waitFor()).as("cc " + source).isZero();
  }
}
