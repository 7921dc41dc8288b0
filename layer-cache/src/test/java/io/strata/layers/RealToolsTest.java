package io.strata.layers;

import io.strata.layers.base.Progress;
import io.strata.layers.fs.Posix;
import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Imports what real tools that nobody here wrote produce: GNU tar (sparse files in both
 * formats, binary xattrs), umoci (an OCI layout) and skopeo (a docker-archive). The README's
 * test command installs them.
 */
class RealToolsTest {
  @TempDir Path tmp;
  LayerStore store;

  @BeforeEach
  void setUp() {
    store = StoreFixture.open(tmp.resolve("store"));
  }

  @Test
  void gnuTarSparseFilesOfNineGibInGnuAndPosixFormats() throws Exception {
    Path src = Files.createDirectory(tmp.resolve("src"));
    Path big = src.resolve("big");
    long size = 9L << 30;
    try (var ch = java.nio.channels.FileChannel.open(big, java.nio.file.StandardOpenOption.CREATE,
        java.nio.file.StandardOpenOption.WRITE)) {
      ch.write(java.nio.ByteBuffer.wrap("HEAD".getBytes(StandardCharsets.US_ASCII)), 0);
      ch.write(java.nio.ByteBuffer.wrap("TAIL".getBytes(StandardCharsets.US_ASCII)), size - 4);
    }
    for (String format : List.of("gnu", "posix")) {
      Path tar = tmp.resolve(format + ".tar");
      run("tar", "--sparse", "--format=" + format, "-C", src.toString(), "-cf", tar.toString(), "big");
      ImageRecord r = store.importImage(tar, "sparse:" + format, null, Progress.NONE);
      Path out = store.layerTree(r.diffIds().get(0)).resolve("big");
      assertThat(Files.size(out)).as(format).isEqualTo(size);
      try (var ch = java.nio.channels.FileChannel.open(out)) {
        assertThat(read(ch, 0)).as(format).isEqualTo("HEAD");
        assertThat(read(ch, size - 4)).as(format).isEqualTo("TAIL");
        assertThat(read(ch, size / 2)).as(format).isEqualTo("\0\0\0\0");
      }
      long allocatedKib = Long.parseLong(run("du", "-k", out.toString()).split("\\s+")[0]);
      assertThat(allocatedKib).as(format).isLessThan(1024);
    }
  }

  @Test
  void gnuTarBinaryXattrsSurviveByteForByte() throws Exception {
    Path src = Files.createDirectory(tmp.resolve("x"));
    Path f = Files.writeString(src.resolve("ping"), "binary");
    byte[] capability = {0x01, 0x00, 0x00, 0x02, (byte) 0x80, 0x20, 0x00, 0x00, (byte) 0xff,
        (byte) 0xc3, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    Posix.lsetxattr(f, "trusted.strata-binary", capability);
    Posix.lsetxattr(f, "user.mime", "text/plain".getBytes(StandardCharsets.UTF_8));
    Path tar = tmp.resolve("x.tar");
    run("tar", "--xattrs", "--xattrs-include=*", "--format=posix", "-C", src.toString(), "-cf",
        tar.toString(), "ping");
    ImageRecord r = store.importImage(tar, "xattrs:1", null, Progress.NONE);
    Path out = store.layerTree(r.diffIds().get(0)).resolve("ping");
    assertThat(Posix.lgetxattr(out, "trusted.strata-binary")).isEqualTo(capability);
    assertThat(Posix.lgetxattr(out, "user.mime")).isEqualTo("text/plain".getBytes(StandardCharsets.UTF_8));
  }

  @Test
  void umociLayoutAndSkopeoDockerArchiveImportAsOneImage() throws Exception {
    Path layout = tmp.resolve("layout");
    Path bundle = tmp.resolve("bundle");
    run("umoci", "init", "--layout", layout.toString());
    run("umoci", "new", "--image", layout + ":v1");
    run("umoci", "unpack", "--image", layout + ":v1", bundle.toString());
    Path rootfs = bundle.resolve("rootfs");
    Files.createDirectories(rootfs.resolve("bin"));
    Files.copy(Path.of("/bin/busybox"), rootfs.resolve("bin/busybox"));
    Files.createSymbolicLink(rootfs.resolve("bin/sh"), Path.of("busybox"));
    Files.createDirectories(rootfs.resolve("etc"));
    Files.writeString(rootfs.resolve("etc/motd"), "made by umoci\n");
    run("umoci", "repack", "--refresh-bundle", "--image", layout + ":v1", bundle.toString());
    // A second layer that deletes a file, so a whiteout goes through a real tool as well.
    Files.delete(rootfs.resolve("etc/motd"));
    Files.writeString(rootfs.resolve("etc/hostname"), "strata\n");
    run("umoci", "repack", "--image", layout + ":v1", bundle.toString());
    Path archive = tmp.resolve("docker.tar");
    run("skopeo", "copy", "--quiet", "oci:" + layout + ":v1",
        "docker-archive:" + archive + ":example/umoci:v1");

    ImageRecord fromOci = store.importImage(layout, null, null, Progress.NONE);
    ImageRecord fromDocker = store.importImage(archive, null, null, Progress.NONE);

    assertThat(fromOci.names()).containsExactly("layout:v1");
    assertThat(fromDocker.names()).containsExactly("docker.io/example/umoci:v1");
    assertThat(fromOci.diffIds()).hasSize(2).isEqualTo(fromDocker.diffIds());
    assertThat(store.layers()).hasSize(2);
    Path lower = store.layerTree(fromOci.diffIds().get(0));
    Path upper = store.layerTree(fromOci.diffIds().get(1));
    assertThat(lower.resolve("etc/motd")).hasContent("made by umoci");
    assertThat(Files.readSymbolicLink(lower.resolve("bin/sh")).toString()).isEqualTo("busybox");
    assertThat(Files.exists(upper.resolve("etc/.wh.motd"), LinkOption.NOFOLLOW_LINKS)).isTrue();
    assertThat(upper.resolve("etc/hostname")).hasContent("strata");
  }

  private static String read(java.nio.channels.FileChannel ch, long at) throws Exception {
    java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(4);
    ch.read(b, at);
    return new String(b.array(), StandardCharsets.ISO_8859_1);
  }

  static String run(String... cmd) throws Exception {
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor()).as(String.join(" ", cmd) + ":\n" + out).isZero();
    return out;
  }
}
