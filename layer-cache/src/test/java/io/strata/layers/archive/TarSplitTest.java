package io.strata.layers.archive;

import io.strata.layers.ImageRecord;
import io.strata.layers.LayerStore;
import io.strata.layers.StoreFixture;
import io.strata.layers.TarBuilder;
import io.strata.layers.base.Digest;
import io.strata.layers.base.Progress;
import io.strata.layers.fs.Posix;
import io.strata.layers.fs.RawFs;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The store gives back each layer's tar byte for byte (push and save depend on it): tars from
 * GNU tar in its formats, with sparse files, long and non-UTF-8 names, hard links, xattrs and
 * trailing padding, and from commons-compress; a tree changed after import is caught.
 */
class TarSplitTest {
  @TempDir Path tmp;
  LayerStore store;

  @BeforeEach
  void setUp() {
    store = StoreFixture.open(tmp.resolve("store"));
  }

  @Test
  void layersFromGnuTarInEveryFormatRebuildToTheirOwnBytes() throws Exception {
    Path src = Files.createDirectory(tmp.resolve("src"));
    String longName = "d".repeat(120) + "/" + "n".repeat(200);
    sh("cd " + src + " && mkdir -p " + "d".repeat(120) + " sub && printf data > "
        + longName + " && printf 'x' > sub/a && ln sub/a sub/hard && ln -s a sub/sym"
        + " && truncate -s 5M sub/sparse && printf tail >> sub/sparse && mkfifo sub/fifo"
        + " && printf bin > \"$(printf 'bad\\377name')\" && setfattr -n user.k -v v sub/a"
        + " && dd if=/dev/urandom of=sub/random bs=1k count=300 2>/dev/null");
    for (String format : List.of("gnu", "posix", "ustar-ish", "oldgnu")) {
      Path tar = tmp.resolve(format + ".tar");
      String fmt = format.equals("ustar-ish") ? "posix --pax-option=delete=atime,delete=ctime"
          : format;
      String xattrs = format.contains("gnu") ? "" : "--xattrs --xattrs-include='user.*' ";
      sh("tar --sparse " + xattrs + "--format=" + fmt + " -C " + src
          + " -cf " + tar + " . && printf '\\0\\0\\0\\0' >> " + tar);
      ImageRecord r = store.importImage(tar, "t:" + format.replace("-", ""), null, Progress.NONE);
      Digest d = r.diffIds().get(0);
      assertThat(d).isEqualTo(Digest.of(Files.readAllBytes(tar)));
      try (InputStream in = store.openLayerTar(d)) {
        assertThat(in.readAllBytes()).as(format).isEqualTo(Files.readAllBytes(tar));
      }
    }
  }

  @Test
  void aLayerWhoseTreeWasChangedDoesNotPassAsTheOriginal() throws Exception {
    Path tar = TarBuilder.layer().dir("etc").file("etc/motd", "hello\n").writeTo(tmp.resolve("l.tar"));
    ImageRecord r = store.importImage(tar, "t:1", null, Progress.NONE);
    Digest d = r.diffIds().get(0);
    Files.writeString(store.layerTree(d).resolve("etc/motd"), "HELLO\n");
    assertThatThrownBy(() -> {
      try (InputStream in = store.openLayerTar(d)) {
        in.readAllBytes();
      }
    }).hasMessageContaining("does not rebuild to its own tar");
    Files.writeString(store.layerTree(d).resolve("etc/motd"), "hi\n");
    assertThatThrownBy(() -> {
      try (InputStream in = store.openLayerTar(d)) {
        in.readAllBytes();
      }
    }).hasMessageContaining("shorter than when it was imported");
  }

  @Test
  void whatTarWriterWritesImportsAndRebuildsExactly() throws Exception {
    java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
    TarWriter w = new TarWriter(out);
    String raw = RawFs.raw("caf\u00e9-\377".getBytes(StandardCharsets.ISO_8859_1));
    w.entry(new TarWriter.Header("dir", TarWriter.DIR, 0755, 0, 0, 0, 1_500_000_000_123_000_000L,
        null, 0, 0, java.util.Map.of("user.a", new byte[] {0, 1, 2})), null);
    byte[] content = "content".getBytes(StandardCharsets.UTF_8);
    w.entry(new TarWriter.Header("dir/" + raw, TarWriter.FILE, 0640, 5_000_000, 7, content.length,
        0, null, 0, 0, null), new java.io.ByteArrayInputStream(content));
    w.entry(new TarWriter.Header("dir/" + "x".repeat(240), TarWriter.SYMLINK, 0777, 0, 0, 0, 0,
        "y".repeat(200), 0, 0, null), null);
    w.finish();
    Path tar = Files.write(tmp.resolve("w.tar"), out.toByteArray());
    String listing = sh("tar --xattrs --xattrs-include='*' --numeric-owner -tvvf " + tar);
    assertThat(listing).contains("5000000/7", "x".repeat(240) + " -> " + "y".repeat(200));
    ImageRecord r = store.importImage(tar, "w:1", null, Progress.NONE);
    Path tree = store.layerTree(r.diffIds().get(0));
    assertThat(RawFs.lstat(RawFs.AT_FDCWD, RawFs.raw(tree) + "/dir/" + raw).uid())
        .isEqualTo(5_000_000);
    assertThat(Posix.lgetxattr(tree.resolve("dir"), "user.a")).containsExactly(0, 1, 2);
    assertThat(Files.getLastModifiedTime(tree.resolve("dir")).toInstant().getNano())
        .isEqualTo(123_000_000);
    try (InputStream in = store.openLayerTar(r.diffIds().get(0))) {
      assertThat(in.readAllBytes()).isEqualTo(out.toByteArray());
    }
  }

  static String sh(String script) throws Exception {
    Process p = new ProcessBuilder("sh", "-c", script).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor()).as(script + "\n" + out).isZero();
    return out;
  }
}
