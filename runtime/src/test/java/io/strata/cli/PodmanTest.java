package io.strata.cli;

import static org.assertj.core.api.Assertions.assertThat;

import io.strata.layers.fs.RawFs;
import io.strata.union.mount.Background;
import io.strata.layers.fs.Mounts;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * podman and buildah (Debian's 4.3 and 1.28) with strata as containers/storage's
 * mount_program, in a storage.conf of the test's own (graphroot, runroot and podman's tmpdir
 * in a temporary directory). podman runs with runc and explicit ulimits: its default rlimits
 * are refused in this sandbox ("error setting rlimit"), and crun refuses the hybrid cgroups.
 */
class PodmanTest {
  static final List<String> ULIMITS = List.of("--ulimit", "nofile=1024:1024", "--ulimit",
      "nproc=4096:4096");

  @TempDir Path tmp;
  Path image;

  @BeforeEach
  void setUp() throws Exception {
    System.setProperty(Background.MAIN_PROPERTY, Main.class.getName());
    io.strata.layers.fs.Posix.chmod(tmp, 0755);
    // a busybox image, imported by strata and saved as a docker-archive for podman load
    Path root = Files.createDirectories(tmp.resolve("bb/bin"));
    Files.copy(Path.of("/bin/busybox"), root.resolve("busybox"));
    for (String a : List.of("sh", "echo", "cat", "ls", "rm", "mkdir", "chmod", "true", "test")) {
      Files.createSymbolicLink(root.resolve(a), Path.of("busybox"));
    }
    Files.createDirectories(tmp.resolve("bb/etc"));
    Files.writeString(tmp.resolve("bb/etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    CommitTest.sh("tar -C " + tmp.resolve("bb") + " -cf " + tmp.resolve("bb.tar") + " .");
    String store = tmp.resolve("strata").toString();
    assertThat(Main.run("--root", store, "import", tmp.resolve("bb.tar").toString(), "--name",
        "bb:1")).isZero();
    image = tmp.resolve("bb-archive.tar");
    assertThat(Main.run("--root", store, "save", "bb:1", "-o", image.toString())).isZero();
  }

  @AfterEach
  void nothingLeftMounted() throws Exception {
    for (Mounts.Entry e : Mounts.table()) {
      if (e.mountpoint().startsWith(tmp)) {
        Mounts.unmount(e.mountpoint(), true);
      }
    }
    assertThat(Mounts.table()).noneMatch(e -> e.mountpoint().startsWith(tmp));
  }

  /** A storage.conf whose overlay driver mounts through {@code mountProgram}. */
  Path storage(String name, String mountProgram) throws Exception {
    Path dir = Files.createDirectories(tmp.resolve(name));
    return Files.writeString(dir.resolve("storage.conf"), "[storage]\ndriver = \"overlay\"\n"
        + "graphroot = \"" + dir.resolve("graph") + "\"\nrunroot = \"" + dir.resolve("run")
        + "\"\n[storage.options.overlay]\nmount_program = \"" + mountProgram + "\"\n");
  }

  /** strata-overlay: the C client and the test daemon, or a JVM of its own (TestDaemon). */
  Path strataOverlay() throws Exception {
    return TestDaemon.overlayProgram(tmp);
  }

  String tool(Path conf, String... args) throws Exception {
    List<String> cmd = new ArrayList<>(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
    pb.environment().put("CONTAINERS_STORAGE_CONF", conf.toString());
    Process p = pb.start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor()).as(String.join(" ", cmd) + "\n" + out).isZero();
    return out;
  }

  List<String> podman(Path conf, String... args) {
    List<String> cmd = new ArrayList<>(List.of("podman", "--tmpdir",
        conf.getParent().resolve("tmp").toString(), "--runtime", "runc"));
    cmd.addAll(List.of(args));
    return cmd;
  }

  @Test
  void podmanRunsAContainerOnStrataAndItsWritesLandInTheUpper() throws Exception {
    Path conf = storage("podman", strataOverlay().toString());
    try {
      tool(conf, podman(conf, "load", "-q", "-i", image.toString()).toArray(String[]::new));
      List<String> run = podman(conf, "run", "--name", "t1");
      run.addAll(ULIMITS);
      run.addAll(List.of("localhost/bb:1", "sh", "-c", "echo hi > /hello && rm /bin/ls"
          + " && mkdir /made && test \"$(cat /hello)\" = hi"
          + " && grep -q fuse.strata /proc/self/mountinfo"));
      tool(conf, run.toArray(String[]::new));
      Path upper = Path.of(tool(conf, podman(conf, "inspect", "--format",
          "{{.GraphDriver.Data.UpperDir}}", "t1").toArray(String[]::new)).trim());
      assertThat(upper.resolve("hello")).hasContent("hi");
      assertThat(upper.resolve("made")).isDirectory();
      var ls = RawFs.lstat(RawFs.AT_FDCWD, RawFs.raw(upper.resolve("bin/ls")));
      assertThat(ls.mode() & 0170000).as("a whiteout").isEqualTo(0020000);
      assertThat(ls.rdev()).isZero();
      // the container has exited: podman unmounted its root
      assertThat(Mounts.table()).noneMatch(e -> e.mountpoint().startsWith(tmp)
          && e.fsType().contains("fuse"));
      tool(conf, podman(conf, "rm", "t1").toArray(String[]::new));
      assertThat(upper).doesNotExist();
    } finally {
      cleanup(conf);
    }
  }

  @Test
  void buildahBuildsTheSameImageOnStrataAsOnFuseOverlayfs() throws Exception {
    Path containerfile = Files.writeString(tmp.resolve("Containerfile"),
        "FROM localhost/bb:1\n"
            + "RUN echo a > /a && mkdir -p /d/e /keep && echo x > /d/e/x && echo k > /keep/k\n"
            + "RUN rm /bin/ls && chmod 700 /d && rm -r /d/e && echo y > /d/y && chmod 640 /a\n");
    Map<String, Map<String, String>> results = new TreeMap<>();
    for (String program : List.of(strataOverlay().toString(), "/usr/bin/fuse-overlayfs")) {
      String name = program.contains("strata") ? "strata" : "fuse-overlayfs";
      Path conf = storage("buildah-" + name, program);
      try {
        tool(conf, "buildah", "pull", "-q", "docker-archive:" + image);
        List<String> bud = new ArrayList<>(List.of("buildah", "bud", "-q", "--runtime", "runc",
            "--layers=false", "-f", containerfile.toString(), "-t", "built:1"));
        bud.addAll(ULIMITS);
        bud.add(tmp.toString());
        tool(conf, bud.toArray(String[]::new));
        Path out = tmp.resolve("out-" + name);
        tool(conf, "buildah", "push", "-q", "localhost/built:1", "oci:" + out + ":built");
        results.put(name, layerContents(out));
      } finally {
        cleanup(conf);
      }
    }
    assertThat(results.get("strata")).isNotEmpty().isEqualTo(results.get("fuse-overlayfs"));
    assertThat(String.valueOf(results.get("strata"))).contains("bin/.wh.ls", "d/=drwx------", "a=-rw-r-----");
  }

  /** Each file of each layer: mode, owner, size and content hash (times differ run to run). */
  static Map<String, String> layerContents(Path layout) throws Exception {
    Map<String, String> out = new TreeMap<>();
    Path blobs = layout.resolve("blobs/sha256");
    var index = io.strata.layers.base.Json.MAPPER.readTree(layout.resolve("index.json").toFile());
    String manifest = index.path("manifests").get(0).path("digest").asText().substring(7);
    var m = io.strata.layers.base.Json.MAPPER.readTree(blobs.resolve(manifest).toFile());
    int i = 0;
    for (var l : m.path("layers")) {
      Path blob = blobs.resolve(l.path("digest").asText().substring(7));
      String listing = CommitTest.sh("tar --numeric-owner -tvzf " + blob
          + " 2>/dev/null || tar --numeric-owner -tvf " + blob);
      for (String line : listing.split("\n")) {
        String[] f = line.trim().split("\\s+", 6);
        if (f.length == 6) {
          out.put(i + ":" + f[5], f[0] + " " + f[1] + " " + f[2]);
        }
      }
      i++;
    }
    return out;
  }

  void cleanup(Path conf) {
    try {
      tool(conf, podman(conf, "rm", "-a", "-f").toArray(String[]::new));
      tool(conf, "buildah", "rm", "-a");
      tool(conf, podman(conf, "rmi", "-a", "-f").toArray(String[]::new));
    } catch (Throwable e) {
      System.err.println("cleanup: " + e);
    }
  }
}
