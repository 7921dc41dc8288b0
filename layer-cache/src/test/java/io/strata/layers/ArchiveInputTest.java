package io.strata.layers;

import io.strata.layers.base.BadInputException;
import io.strata.layers.base.Digest;
import io.strata.layers.base.DiskFullException;
import io.strata.layers.base.Progress;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;
import org.apache.commons.compress.compressors.gzip.GzipCompressorOutputStream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Image archives that must be refused or understood (issue 8, items 10-12): bombs that would
 * fill the disk stop early as "disk full" (not bad input), blobs nothing references are never
 * unpacked, crane's docker-archive is read as one, a manifest.json that is not one is refused,
 * descriptor sizes are checked, and errors quote a bounded piece of the input. The store lives
 * on a 256 MiB tmpfs of its own so that a bomb meets a real filesystem's end.
 */
class ArchiveInputTest {
  @TempDir Path tmp;
  Path fs;
  Path root;
  LayerStore store;

  @BeforeEach
  void setUp() throws Exception {
    fs = Files.createDirectories(tmp.resolve("small-fs"));
    run("mount", "-t", "tmpfs", "-o", "size=256m", "strata-test", fs.toString());
    root = fs.resolve("store");
    store = StoreFixture.open(root);
    store.importImage(TarBuilder.layer().file("keep", "me").writeTo(tmp.resolve("base.tar")),
        "base:1", null, Progress.NONE);
  }

  @AfterEach
  void unmount() throws Exception {
    run("umount", "-l", fs.toString());
  }

  private static void run(String... cmd) throws Exception {
    assertThat(new ProcessBuilder(cmd).inheritIO().start().waitFor()).as(String.join(" ", cmd))
        .isZero();
  }

  /** Writes a gzip tar whose members are the given names with that many MiB of zeros (or text). */
  private static Path gzipTar(Path file, Object... nameAndContent) throws IOException {
    try (OutputStream out = Files.newOutputStream(file);
        GzipCompressorOutputStream gz = new GzipCompressorOutputStream(out);
        TarArchiveOutputStream tar = new TarArchiveOutputStream(gz)) {
      tar.setLongFileMode(TarArchiveOutputStream.LONGFILE_POSIX);
      byte[] zeros = new byte[1 << 20];
      for (int i = 0; i < nameAndContent.length; i += 2) {
        TarArchiveEntry e = new TarArchiveEntry((String) nameAndContent[i]);
        Object c = nameAndContent[i + 1];
        if (c instanceof Integer mib) {
          e.setSize((long) mib << 20);
          tar.putArchiveEntry(e);
          for (int k = 0; k < mib; k++) {
            tar.write(zeros);
          }
        } else {
          byte[] b = c instanceof byte[] bytes ? bytes : c.toString().getBytes(StandardCharsets.UTF_8);
          e.setSize(b.length);
          tar.putArchiveEntry(e);
          tar.write(b);
        }
        tar.closeArchiveEntry();
      }
    }
    return file;
  }

  @Test
  void aGzipBombStopsBeforeTheDiskIsFullAndSaysSo() throws Exception {
    Path bomb = gzipTar(tmp.resolve("bomb.tar.gz"), "a", 100, "b", 100, "c", 100, "d", 100);
    assertThat(Files.size(bomb)).isLessThan(2 << 20);
    List<String> before = StoreFixture.snapshot(root);
    assertThatThrownBy(() -> store.importImage(bomb, "bomb:1", null, Progress.NONE))
        .isInstanceOf(DiskFullException.class).hasMessageContaining("not enough space")
        .hasMessageContaining("nothing was stored");
    assertThat(StoreFixture.snapshot(root)).isEqualTo(before);
    // The margin was kept: the filesystem never filled.
    assertThat(Files.getFileStore(fs).getUsableSpace()).isGreaterThan(64L << 20);
  }

  @Test
  void aCompressedOciArchiveWithAHugeUnreferencedBlobImportsWithoutUnpackingIt() throws Exception {
    Path layout = ImageBuilder.image().layer(TarBuilder.layer().file("hello", "world"))
        .ociLayout(tmp.resolve("layout"));
    List<Object> members = new java.util.ArrayList<>();
    try (var files = Files.walk(layout)) {
      for (Path p : files.filter(Files::isRegularFile).sorted().toList()) {
        members.add(layout.relativize(p).toString());
        members.add(Files.readAllBytes(p));
      }
    }
    members.add("blobs/sha256/" + "0".repeat(64)); // referenced by nothing
    members.add(300);
    Path archive = gzipTar(tmp.resolve("image.tar.gz"), members.toArray());
    ImageRecord r = store.importImage(archive, "unref:1", null, Progress.NONE);
    assertThat(store.layerTree(r.diffIds().get(0)).resolve("hello")).hasContent("world");
  }

  @Test
  void aCraneDockerArchiveIsReadAsAnImage() throws Exception {
    byte[] layer = TarBuilder.layer().dir("etc").file("etc/crane", "yes").bytes();
    byte[] gz = TarBuilder.gzip(layer);
    String config = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{},\"rootfs\":"
        + "{\"type\":\"layers\",\"diff_ids\":[\"" + Digest.of(layer) + "\"]}}";
    Digest cfg = Digest.of(config.getBytes(StandardCharsets.UTF_8));
    String layerName = Digest.of(gz).hex() + ".tar.gz";
    String manifest = "[{\"Config\":\"" + cfg + "\",\"RepoTags\":[\"crane/img:1\"],\"Layers\":[\""
        + layerName + "\"]}]";
    for (String name : List.of("crane.tar", "crane.tar.gz")) {
      Path archive = gzipTar(tmp.resolve(name + ".tmp"), cfg.toString(), config, layerName, gz,
          "manifest.json", manifest);
      if (name.equals("crane.tar")) { // the same members, not compressed
        Path plain = tmp.resolve(name);
        try (var in = new org.apache.commons.compress.compressors.gzip.GzipCompressorInputStream(
            Files.newInputStream(archive))) {
          Files.copy(in, plain);
        }
        archive = plain;
      } else {
        archive = Files.move(archive, tmp.resolve(name));
      }
      ImageRecord r = store.importImage(archive, null, null, Progress.NONE);
      assertThat(r.names()).containsExactly("crane/img:1");
      assertThat(r.diffIds()).containsExactly(Digest.of(layer));
      assertThat(store.layerTree(r.diffIds().get(0)).resolve("etc/crane")).hasContent("yes");
      store.removeImage("crane/img:1");
    }
  }

  @Test
  void anArchiveWithAManifestThatIsNotOneIsRefused() throws Exception {
    Path archive = gzipTar(tmp.resolve("odd.tar.gz"), "manifest.json", "{\"not\":\"docker\"}",
        "README", "hello", "data/file", "x");
    List<String> before = StoreFixture.snapshot(root);
    assertThatThrownBy(() -> store.importImage(archive, null, null, Progress.NONE))
        .isInstanceOf(BadInputException.class).hasMessageContaining("manifest.json");
    assertThat(StoreFixture.snapshot(root)).isEqualTo(before);
  }

  @Test
  void descriptorSizesMustBeThereAndNotNegative() throws Exception {
    for (Object size : new Object[] {-1, null, 1.5, "12"}) {
      Path layout = ImageBuilder.image().layer(TarBuilder.layer().file("f", "x"))
          .manifest(m -> {
            var l = (com.fasterxml.jackson.databind.node.ObjectNode) m.get("layers").get(0);
            if (size == null) {
              l.remove("size");
            } else if (size instanceof Integer i) {
              l.put("size", i);
            } else if (size instanceof Double d) {
              l.put("size", d);
            } else {
              l.put("size", (String) size);
            }
          }).ociLayout(tmp.resolve("size-" + size));
      assertThatThrownBy(() -> store.importImage(layout, null, null, Progress.NONE))
          .as("size " + size).isInstanceOf(BadInputException.class)
          .hasMessageContaining("size is");
    }
  }

  @Test
  void errorsQuoteAtMostAFewHundredCharactersOfTheInput() throws Exception {
    StringBuilder deep = new StringBuilder();
    for (int i = 0; i < 4000; i++) {
      deep.append("d/");
    }
    Path layer = TarBuilder.layer().file(deep + "../../" + "x".repeat(300), "x")
        .writeTo(tmp.resolve("deep.tar"));
    assertThatThrownBy(() -> store.importImage(layer, null, null, Progress.NONE))
        .isInstanceOf(BadInputException.class)
        .satisfies(e -> assertThat(e.getMessage().length()).isLessThan(1000));
    StringBuilder refs = new StringBuilder("[");
    for (int i = 0; i < 10_000; i++) {
      refs.append(i == 0 ? "" : ",").append("{\"Config\":\"c.json\",\"RepoTags\":[\"r:")
          .append(i).append("\"],\"Layers\":[]}");
    }
    Path many = gzipTar(tmp.resolve("many.tar.gz"), "manifest.json", refs.append("]").toString());
    assertThatThrownBy(() -> store.importImage(many, null, null, Progress.NONE))
        .isInstanceOf(BadInputException.class).hasMessageContaining("pick one with --ref")
        .satisfies(e -> assertThat(e.getMessage().length()).isLessThan(1000));
  }
}
