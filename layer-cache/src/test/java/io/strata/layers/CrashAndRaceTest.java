package io.strata.layers;

import io.strata.layers.base.Progress;
import static org.assertj.core.api.Assertions.assertThat;

import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import java.util.zip.GZIPOutputStream;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A killed import leaves nothing behind; imports that race share their layers. */
class CrashAndRaceTest {
  @TempDir Path tmp;

  /** A gzip layer holding one file of {@code size} zeros: tiny to keep, slow to extract. */
  static Path zeroLayer(Path file, String name, long size) throws Exception {
    try (OutputStream out = new GZIPOutputStream(Files.newOutputStream(file), 1 << 16);
        TarArchiveOutputStream tar = new TarArchiveOutputStream(out)) {
      tar.setBigNumberMode(TarArchiveOutputStream.BIGNUMBER_POSIX);
      TarArchiveEntry e = new TarArchiveEntry(name);
      e.setSize(size);
      tar.putArchiveEntry(e);
      byte[] zeros = new byte[1 << 20];
      for (long done = 0; done < size; done += zeros.length) {
        tar.write(zeros, 0, (int) Math.min(zeros.length, size - done));
      }
      tar.closeArchiveEntry();
    }
    return file;
  }

  @Test
  void killDashNineMidImportLeavesNoPartialLayerAndTheNextCommandCleansUp() throws Exception {
    Path root = tmp.resolve("store");
    StoreFixture.open(root);
    List<String> before = StoreFixture.snapshot(root);
    Path layer = zeroLayer(tmp.resolve("big.tar.gz"), "big", 1L << 30);

    Process p = ImportProcess.command(root, layer, "big:1").redirectErrorStream(true).start();
    try {
      // Wait until the child is writing the layer, then kill it without warning.
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
      while (stagedBytes(root) < (64L << 20)) {
        assertThat(p.isAlive()).as("import finished before it could be killed").isTrue();
        assertThat(System.nanoTime()).as("import never started writing").isLessThan(deadline);
        Thread.sleep(20);
      }
      p.destroyForcibly(); // SIGKILL
      assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
    } finally {
      p.destroyForcibly();
    }
    assertThat(p.exitValue()).isEqualTo(137);
    assertThat(StoreFixture.snapshot(root)).isEqualTo(before);
    assertThat(StoreFixture.tmpContents(root)).isNotEmpty(); // the dead import's staging

    LayerStore next = StoreFixture.open(root);
    assertThat(StoreFixture.tmpContents(root)).isEmpty();
    assertThat(next.layers()).isEmpty();
    assertThat(next.images()).isEmpty();
  }

  @Test
  void twoImportsInOneJvmThatShareLayersBothSucceedAndStoreEachOnce() throws Exception {
    LayerStore store = StoreFixture.open(tmp.resolve("store"));
    TarBuilder shared = TarBuilder.layer().file("shared", HostileLayers.pattern(8 << 20), 0644, e -> {});
    Path abc = ImageBuilder.image().layer(shared).layer(ImportTest.B).layer(ImportTest.C)
        .ociLayout(tmp.resolve("abc"));
    Path abd = ImageBuilder.image().layer(shared).layer(ImportTest.B).layer(ImportTest.D)
        .ociLayout(tmp.resolve("abd"));

    CompletableFuture<ImageRecord> one = CompletableFuture.supplyAsync(
        () -> store.importImage(abc, "abc:1", null, Progress.NONE));
    CompletableFuture<ImageRecord> two = CompletableFuture.supplyAsync(
        () -> store.importImage(abd, "abd:1", null, Progress.NONE));

    assertThat(one.get(60, TimeUnit.SECONDS).names()).containsExactly("abc:1");
    assertThat(two.get(60, TimeUnit.SECONDS).names()).containsExactly("abd:1");
    assertThat(store.layers()).hasSize(4);
    assertThat(store.images()).hasSize(2);
    assertThat(StoreFixture.tmpContents(store.root())).isEmpty();
  }

  @Test
  void twoImportProcessesOfTheSameLayersBothSucceedAndStoreEachOnce() throws Exception {
    Path root = tmp.resolve("store");
    StoreFixture.open(root);
    Path layer = zeroLayer(tmp.resolve("layer.tar.gz"), "zeros", 256L << 20);

    Process a = ImportProcess.command(root, layer, "one:1").redirectErrorStream(true).start();
    Process b = ImportProcess.command(root, layer, "two:1").redirectErrorStream(true).start();
    String outA = new String(a.getInputStream().readAllBytes());
    String outB = new String(b.getInputStream().readAllBytes());
    assertThat(a.waitFor()).as(outA).isZero();
    assertThat(b.waitFor()).as(outB).isZero();

    LayerStore store = StoreFixture.open(root);
    assertThat(store.layers()).hasSize(1);
    assertThat(store.resolve("one:1").id()).isEqualTo(store.resolve("two:1").id());
    assertThat(StoreFixture.tmpContents(root)).isEmpty();
  }

  private static long stagedBytes(Path root) throws Exception {
    Path tmpDir = root.resolve("tmp");
    try (Stream<Path> s = Files.walk(tmpDir)) {
      return s.filter(Files::isRegularFile).mapToLong(p -> {
        try {
          return Files.size(p);
        } catch (Exception gone) {
          return 0;
        }
      }).sum();
    } catch (java.io.UncheckedIOException | java.nio.file.NoSuchFileException raced) {
      return 0;
    }
  }
}
