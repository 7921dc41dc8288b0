package io.strata.cli;

import static org.assertj.core.api.Assertions.assertThat;

import io.strata.layers.base.Digest;
import io.strata.layers.ImageRecord;
import io.strata.layers.LayerStore;
import io.strata.union.mount.Background;
import io.strata.layers.fs.Mounts;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * strata diff and commit on a real mount, and the round trip the images issue asks for: the
 * changes committed, saved as a docker-archive, turned into an OCI layout by skopeo, imported
 * into another store and mounted show the same tree (owners, modes, times, xattrs, hard links,
 * deleted lower files, opaque directories) as the mount did.
 */
class CommitTest {
  @TempDir Path tmp;
  Path root;
  Path mp;
  Path mp2;

  @BeforeEach
  void setUp() throws Exception {
    System.setProperty(Background.MAIN_PROPERTY, Main.class.getName());
    root = tmp.resolve("store");
    mp = Files.createDirectories(tmp.resolve("mnt"));
    mp2 = Files.createDirectories(tmp.resolve("mnt2"));
    Path src = Files.createDirectories(tmp.resolve("src"));
    sh("cd " + src + " && mkdir -p etc keep/sub opq/inner lower && echo a > etc/a"
        + " && echo b > etc/b && echo c > etc/c && echo x > keep/sub/x && echo 1 > opq/one"
        + " && echo 2 > opq/inner/two && echo h > lower/h1 && ln lower/h1 lower/h2"
        + " && setfattr -n user.origin -v lower etc/a"
        + " && tar --xattrs --xattrs-include='user.*' --format=posix -cf " + tmp.resolve("base.tar")
        + " .");
    assertThat(Main.run("--root", root.toString(), "import", tmp.resolve("base.tar").toString(),
        "--name", "base:1")).isZero();
  }

  @AfterEach
  void unmount() throws Exception {
    for (Path p : List.of(mp, mp2)) {
      if (Mounts.isMountpoint(p)) {
        Mounts.unmount(p, true);
      }
    }
    assertThat(Mounts.table()).noneMatch(e -> e.mountpoint().startsWith(tmp));
  }

  @Test
  void changesCommittedSavedAndImportedAgainShowTheSameTree() throws Exception {
    assertThat(Main.run("--root", root.toString(), "mount", "base:1", mp.toString())).isZero();
    sh("cd " + mp + " && echo changed >> etc/a && chmod 600 etc/b && rm etc/c"
        + " && rm -r opq && mkdir opq && echo fresh > opq/new"
        + " && mkdir -p made/deep && echo n > made/deep/n && chown 1234:5678 made/deep/n"
        + " && chmod 4741 made/deep/n && touch -d '2020-02-03 04:05:06.123456789' made/deep/n"
        + " && ln made/deep/n made/n-link && ln -s ../etc/a made/sym && mkfifo made/fifo"
        + " && setfattr -n user.k -v 'v\\001' made/deep/n && echo more >> lower/h2"
        + " && mknod made/null c 1 3");
    Map<String, String> before = describe(mp);

    Result diff = strata("diff", mp.toString());
    assertThat(diff.code()).isZero();
    assertThat(diff.out().lines().toList()).contains("C /etc", "C /etc/a", "C /etc/b", "D /etc/c",
        "C /opq", "A /opq/new", "A /made", "A /made/deep/n", "A /made/fifo",
        "C /lower/h2").doesNotContain("D /opq/one", "A /keep", "C /keep");

    assertThat(strata("commit", mp.toString(), "out:1", "-m", "test commit", "-c",
        "CMD [\"/bin/sh\"]", "-c", "ENV A=1").code()).isZero();
    assertThat(strata("commit", mp.toString(), "out:2").code()).isZero();
    LayerStore store = LayerStore.open(root, l -> { });
    ImageRecord one = store.resolve("out:1");
    ImageRecord two = store.resolve("out:2");
    Digest top = one.diffIds().get(one.diffIds().size() - 1);
    assertThat(two.diffIds()).isEqualTo(one.diffIds()); // the same upper gives the same DiffID
    assertThat(one.diffIds()).startsWith(store.resolve("base:1").diffIds().toArray(Digest[]::new));
    String config = new String(store.config(one), StandardCharsets.UTF_8);
    assertThat(config).contains("test commit", "strata commit", "\"A=1\"", top.toString());

    // the layer holds OCI whiteouts, an opaque marker and no private xattr
    Path layerTar = tmp.resolve("top.tar");
    try (var in = store.openLayerTar(top)) {
      Files.copy(in, layerTar);
    }
    String listing = sh("tar --xattrs --xattrs-include='*' -tvvf " + layerTar);
    assertThat(listing).contains("etc/.wh.c", "opq/.wh..wh..opq", "made/n-link link to made/deep/n")
        .doesNotContain("overlay").doesNotContain("strata.origin");

    // docker-archive -> skopeo -> OCI layout -> another store -> mounted: the same tree
    Path archive = tmp.resolve("out.tar");
    assertThat(strata("save", "out:1", "-o", archive.toString()).code()).isZero();
    Path layout = tmp.resolve("layout");
    sh("skopeo copy --quiet docker-archive:" + archive + " oci:" + layout + ":out");
    Path root2 = tmp.resolve("store2");
    assertThat(Main.run("--root", root2.toString(), "import", layout.toString(), "--name",
        "again:1")).isZero();
    assertThat(Main.run("--root", root2.toString(), "mount", "--read-only", "again:1",
        mp2.toString())).isZero();
    Map<String, String> after = describe(mp2);
    assertThat(after).isEqualTo(before);
    assertThat(Main.run("--root", root2.toString(), "umount", mp2.toString())).isZero();
    assertThat(Main.run("--root", root.toString(), "umount", mp.toString())).isZero();
  }

  @Test
  void badTargetsAndNamesAreClearErrors() throws Exception {
    assertThat(strata("diff", "nosuchcontainer").code()).isEqualTo(3);
    assertThat(strata("commit", tmp.toString(), "x:1").code()).isEqualTo(3);
    assertThat(strata("commit", "nosuch", "Bad Name").code()).isEqualTo(2);
    assertThat(strata("commit", "nosuch", "x:1", "-c", "RUN rm -rf /").code()).isEqualTo(2);
  }

  /**
   * Every file below {@code dir} but the root: type and mode, owner, size, content, mtime, the
   * user xattrs, and which other names are the same inode.
   */
  static Map<String, String> describe(Path dir) throws Exception {
    String out = sh("cd " + dir + " && find . -mindepth 1 -printf '%P|%M|%U:%G|%s|%T@|%i|%Y\\n'");
    Map<String, String> byPath = new TreeMap<>();
    Map<String, List<String>> byInode = new HashMap<>();
    for (String line : out.split("\n")) {
      String[] f = line.split("\\|");
      // A copied-up file keeps its lower's inode number (as on kernel overlayfs), so a hard
      // link broken by a copy-up shares a number with a different file: size and time tell.
      byInode.computeIfAbsent(f[5] + "/" + f[3] + "/" + f[4], k -> new ArrayList<>()).add(f[0]);
      byPath.put(f[0], f[1] + " " + f[2] + " " + f[3] + " " + f[4]);
    }
    Map<String, String> result = new TreeMap<>();
    for (var e : byPath.entrySet()) {
      Path p = dir.resolve(e.getKey());
      String content = "";
      if (e.getValue().startsWith("-")) {
        content = Digest.of(Files.readAllBytes(p)).shortHex();
      }
      String xattrs = sh("getfattr -h -d -m '^user\\.' -e hex " + quote(p) + " 2>/dev/null"
          + " | grep -v '^#' || true").trim();
      String inode = line(byInode, out, e.getKey());
      result.put(e.getKey(), e.getValue() + " " + content + " [" + xattrs + "] links=" + inode);
    }
    return result;
  }

  private static String line(Map<String, List<String>> byInode, String out, String path) {
    for (List<String> names : byInode.values()) {
      if (names.contains(path)) {
        List<String> sorted = new ArrayList<>(names);
        sorted.sort(null);
        return String.join(",", sorted);
      }
    }
    return "?";
  }

  private static String quote(Path p) {
    return "'" + p.toString().replace("'", "'\\''") + "'";
  }

  static String sh(String script) throws Exception {
    Process p = new ProcessBuilder("sh", "-c", script).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor()).as(script + "\n" + out).isZero();
    return out;
  }

  record Result(int code, String out) {}

  Result strata(String... args) {
    List<String> all = new ArrayList<>(List.of("--root", root.toString()));
    all.addAll(List.of(args));
    java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
    var old = System.out;
    try {
      System.setOut(new java.io.PrintStream(out, true, StandardCharsets.UTF_8));
      int code = Main.run(all.toArray(String[]::new));
      return new Result(code, out.toString(StandardCharsets.UTF_8));
    } finally {
      System.setOut(old);
    }
  }
}
