package io.strata.layers.fs;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Names as bytes and paths past PATH_MAX through {@link RawFs}, checked against the shell. */
class RawFsTest {
  @TempDir Path tmp;

  @Test
  void namesThatAreNotUtf8StayDistinctAndExact() throws Exception {
    int dir = RawFs.open(RawFs.AT_FDCWD, RawFs.raw(tmp), RawFs.O_PATH | RawFs.O_DIRECTORY, 0);
    try {
      String ff = RawFs.raw(new byte[] {'b', 'a', 'd', (byte) 0xff});
      String fe = RawFs.raw(new byte[] {'b', 'a', 'd', (byte) 0xfe});
      RawFs.close(RawFs.open(dir, ff, RawFs.O_WRONLY | RawFs.O_CREAT | RawFs.O_EXCL, 0644));
      RawFs.close(RawFs.open(dir, fe, RawFs.O_WRONLY | RawFs.O_CREAT | RawFs.O_EXCL, 0600));
      assertThat(RawFs.list(dir, "")).extracting(RawFs.DirEntry::name)
          .containsExactlyInAnyOrder(ff, fe);
      assertThat(RawFs.lstat(dir, ff).mode() & 07777).isEqualTo(0644);
      assertThat(RawFs.lstat(dir, fe).mode() & 07777).isEqualTo(0600);
      // The shell sees the same two bytes at the end of each name.
      String ls = new String(new ProcessBuilder("sh", "-c", "ls " + tmp + " | od -An -tx1")
          .start().getInputStream().readAllBytes());
      assertThat(ls.replaceAll("\\s+", " ")).contains("62 61 64 fe").contains("62 61 64 ff");
      RawFs.symlink(ff, dir, "link");
      assertThat(RawFs.readlink(dir, "link")).isEqualTo(ff);
      RawFs.lsetxattr(dir, fe, "user." + ff, new byte[] {1, 2});
      assertThat(RawFs.llistxattr(dir, fe)).contains("user." + ff);
      assertThat(RawFs.lgetxattr(dir, fe, "user." + ff)).containsExactly(1, 2);
    } finally {
      RawFs.close(dir);
    }
  }

  @Test
  void pathsLongerThanPathMaxBelowTheDirectoryWork() throws Exception {
    int dir = RawFs.open(RawFs.AT_FDCWD, RawFs.raw(tmp), RawFs.O_PATH | RawFs.O_DIRECTORY, 0);
    try {
      StringBuilder rel = new StringBuilder();
      String part = "p".repeat(200);
      while (rel.length() < 6000) {
        rel.append(rel.length() == 0 ? "" : "/").append(part);
        RawFs.mkdir(dir, rel.toString(), 0755);
      }
      String leaf = rel + "/leaf";
      RawFs.close(RawFs.open(dir, leaf, RawFs.O_WRONLY | RawFs.O_CREAT, 0644));
      assertThat(RawFs.lstat(dir, leaf)).isNotNull();
      assertThat(RawFs.list(dir, rel.toString())).extracting(RawFs.DirEntry::name)
          .isEqualTo(List.of("leaf"));
      RawFs.rename(dir, leaf, dir, rel + "/moved", 0);
      RawFs.unlink(dir, rel + "/moved");
      assertThat(RawFs.lstat(dir, leaf)).isNull();
    } finally {
      RawFs.close(dir);
      // Past PATH_MAX java.nio cannot delete what JUnit made; rm -rf can.
      new ProcessBuilder("rm", "-rf", tmp.resolve("p".repeat(200)).toString()).start().waitFor();
    }
  }

  /**
   * A mount's root, told by one statx (STATX_ATTR_MOUNT_ROOT), agrees with the mount table:
   * the root, /proc, a directory, a missing path, and a directory with a tmpfs on it (as root;
   * unmounted afterwards).
   */
  @Test
  void aMountsRootIsToldAsTheMountTableTellsIt() throws Exception {
    Path dir = java.nio.file.Files.createDirectories(tmp.resolve("mp"));
    for (Path p : List.of(Path.of("/"), Path.of("/proc"), dir, tmp.resolve("missing"))) {
      boolean listed = Mounts.table().stream().anyMatch(e -> e.mountpoint().equals(p));
      Boolean root = RawFs.isMountRoot(p);
      assertThat(root).as("this kernel says (Linux 5.8+)").isNotNull();
      assertThat(root).as(p.toString()).isEqualTo(listed);
      assertThat(Mounts.isMountpoint(p)).as(p.toString()).isEqualTo(listed);
    }
    org.junit.jupiter.api.Assumptions.assumeTrue(Posix.isRoot(), "mounting needs root");
    Process m = new ProcessBuilder("mount", "-t", "tmpfs", "none", dir.toString()).start();
    assertThat(m.waitFor()).isZero();
    try {
      assertThat(RawFs.isMountRoot(dir)).isTrue();
      assertThat(Mounts.isMountpoint(dir)).isTrue();
      assertThat(RawFs.isMountRoot(dir.resolve("."))).as("the same directory").isTrue();
    } finally {
      assertThat(new ProcessBuilder("umount", dir.toString()).start().waitFor()).isZero();
    }
    assertThat(Mounts.isMountpoint(dir)).isFalse();
  }
}
