package io.strata.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.strata.layers.base.Json;
import io.strata.union.mount.Background;
import io.strata.layers.fs.Mounts;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.io.TempDir;

/**
 * containerd (Debian's 1.6) with strata's snapshotter as a proxy plugin, both started here
 * with their own root, state and sockets: an image imported with ctr, a container run on a
 * strata union, ctr's snapshot commands agreeing with the snapshotter's records, and a
 * snapshotter killed and restarted without losing a committed snapshot.
 */
class ContainerdTest {
  @TempDir Path tmp;
  Process containerd;
  Process snapshotter;
  Path socket;
  Path snapSocket;
  Path snapRoot;

  @BeforeEach
  void setUp() throws Exception {
    System.setProperty(Background.MAIN_PROPERTY, Main.class.getName());
    io.strata.layers.fs.Posix.chmod(tmp, 0755);
    socket = tmp.resolve("containerd.sock");
    snapSocket = tmp.resolve("snap.sock");
    snapRoot = tmp.resolve("snapshots");
    Path bin = Files.createDirectories(tmp.resolve("bin"));
    TestDaemon.overlayProgram(bin);
    Path config = Files.writeString(tmp.resolve("config.toml"), "version = 2\nroot = \""
        + tmp.resolve("root") + "\"\nstate = \"" + tmp.resolve("state") + "\"\n"
        + "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"" + socket
        + "\"\n[proxy_plugins]\n  [proxy_plugins.strata]\n    type = \"snapshot\"\n"
        + "    address = \"" + snapSocket + "\"\n");
    this.config = config;
  }

  Path config;
  boolean mountHelper;

  /** Starts the snapshotter, then containerd (which dials it). */
  void start(boolean helper) throws Exception {
    mountHelper = helper;
    startSnapshotter();
    ProcessBuilder pb = new ProcessBuilder("containerd", "--config", config.toString())
        .redirectErrorStream(true).redirectOutput(tmp.resolve("containerd.log").toFile());
    // mount.fuse3 runs strata-overlay from containerd's PATH (and its shims')
    pb.environment().put("PATH", tmp.resolve("bin") + ":" + System.getenv("PATH"));
    containerd = pb.start();
    waitFor(socket);
  }

  @BeforeEach
  void image() throws Exception {
    // an image: busybox, imported by strata and saved as a docker-archive for ctr
    Path root = Files.createDirectories(tmp.resolve("bb/bin"));
    Files.copy(Path.of("/bin/busybox"), root.resolve("busybox"));
    for (String a : List.of("sh", "cat", "test", "true", "echo")) {
      Files.createSymbolicLink(root.resolve(a), Path.of("busybox"));
    }
    CommitTest.sh("tar -C " + tmp.resolve("bb") + " -cf " + tmp.resolve("bb.tar") + " .");
    String store = tmp.resolve("strata").toString();
    assertThat(Main.run("--root", store, "import", tmp.resolve("bb.tar").toString(), "--name",
        "bb:1")).isZero();
    assertThat(Main.run("--root", store, "save", "bb:1", "-o",
        tmp.resolve("bb-archive.tar").toString())).isZero();
  }

  void startSnapshotter() throws Exception {
    List<String> args = new ArrayList<>(List.of("--root", tmp.resolve("strata").toString(),
        "snapshotter", "--address",
        snapSocket.toString(), "--root", snapRoot.toString()));
    if (mountHelper) {
      args.add("--mount-helper");
    }
    // in the daemon run: the client, the snapshotter served by the daemon for as long as the
    // client runs (SIGTERM or SIGKILL of the client stops it there)
    ProcessBuilder pb = new ProcessBuilder(TestDaemon.command(args)).redirectErrorStream(true)
        .redirectOutput(ProcessBuilder.Redirect.appendTo(tmp.resolve("snapshotter.log").toFile()));
    TestDaemon.environment(pb.environment());
    snapshotter = pb.start();
    waitFor(snapSocket);
  }

  /** Waits until something accepts connections on {@code sock} (a stale file does not count). */
  void waitFor(Path sock) throws Exception {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    while (true) {
      try (var ch = java.nio.channels.SocketChannel.open(java.net.StandardProtocolFamily.UNIX)) {
        ch.connect(java.net.UnixDomainSocketAddress.of(sock));
        return;
      } catch (java.io.IOException notYet) {
        assertThat(System.nanoTime()).as(sock + " does not answer").isLessThan(deadline);
        Thread.sleep(50);
      }
    }
  }

  @AfterEach
  void tearDown() throws Exception {
    try {
      ctrQuiet("tasks", "kill", "-s", "SIGKILL", "c1");
      ctrQuiet("containers", "rm", "c1");
      ctrQuiet("images", "rm", "docker.io/library/bb:1");
    } finally {
      if (registry != null) {
        registry.close();
      }
      for (Process p : new Process[] {containerd, snapshotter}) {
        if (p != null) {
          p.destroy();
          if (!p.waitFor(15, TimeUnit.SECONDS)) {
            p.destroyForcibly().waitFor();
          }
        }
      }
      // shims of this containerd, if a failure left any (their command line names its socket)
      new ProcessBuilder("pkill", "-9", "-f", socket.toString()).start().waitFor();
      for (Mounts.Entry e : Mounts.table()) {
        if (e.mountpoint().startsWith(tmp)) {
          Mounts.unmount(e.mountpoint(), true);
        }
      }
    }
    assertThat(Mounts.table()).noneMatch(e -> e.mountpoint().startsWith(tmp));
  }

  String ctr(String... args) throws Exception {
    List<String> cmd = new ArrayList<>(List.of("ctr", "-a", socket.toString()));
    cmd.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
    // ctr mounts snapshots itself too (reading the image's files for the spec): its
    // mount.fuse3 must find this test's strata-overlay, not whatever the machine has
    pb.environment().put("PATH", tmp.resolve("bin") + ":" + System.getenv("PATH"));
    Process p = pb.start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor()).as(String.join(" ", cmd) + "\n" + out).isZero();
    return out;
  }

  void ctrQuiet(String... args) {
    try {
      List<String> cmd = new ArrayList<>(List.of("ctr", "-a", socket.toString()));
      cmd.addAll(List.of(args));
      new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(
          ProcessBuilder.Redirect.DISCARD).start().waitFor(30, TimeUnit.SECONDS);
    } catch (Exception ignored) {
      // best effort
    }
  }

  TestRegistry registry;

  /** docker-registry on a free loopback port with its own storage; returns HOST:PORT. */
  String startRegistry() throws Exception {
    registry = TestRegistry.start(tmp.resolve("registry"));
    return registry.address();
  }

  JsonNode records() throws Exception {
    return Json.MAPPER.readTree(snapRoot.resolve("metadata.json").toFile());
  }

  /** With unions served by the snapshotter (bind mounts), and mounted by containerd's helper. */
  @ParameterizedTest(name = "mount helper: {0}")
  @ValueSource(booleans = {false, true})
  void ctrRunsAContainerOnStrataSnapshotsAndTheyOutliveASnapshotterRestart(boolean helper)
      throws Exception {
    start(helper);
    ctr("images", "import", "--snapshotter", "strata", tmp.resolve("bb-archive.tar").toString());
    String ls = ctr("snapshots", "--snapshotter", "strata", "ls");
    assertThat(ls).contains("Committed");
    JsonNode recs = records();
    assertThat(recs).hasSize(1);
    String layerKey = recs.get(0).path("key").asText();
    assertThat(ls).contains(layerKey.substring(layerKey.lastIndexOf('/') + 1));

    // a container whose writes land in its snapshot's upper
    ctr("run", "--snapshotter", "strata", "docker.io/library/bb:1", "c1", "sh", "-c",
        "echo hi > /x && test \"$(cat /x)\" = hi && grep -q fuse /proc/self/mountinfo");
    JsonNode active = null;
    for (JsonNode r : records()) {
      if (r.path("key").asText().endsWith("/c1")) {
        active = r;
      }
    }
    assertThat(active).isNotNull();
    assertThat(active.path("kind").asText()).isEqualTo("ACTIVE");
    Path upper = snapRoot.resolve("snapshots").resolve(active.path("id").asText()).resolve("fs");
    assertThat(upper.resolve("x")).hasContent("hi");
    String info = ctr("snapshots", "--snapshotter", "strata", "info", "c1");
    assertThat(info).contains("\"Kind\": \"Active\"");
    String usage = ctr("snapshots", "--snapshotter", "strata", "usage", "c1");
    assertThat(usage).contains("c1");
    // labels are kept, and survive in the records
    ctr("snapshots", "--snapshotter", "strata", "label", "c1", "strata.test/label=yes");
    assertThat(ctr("snapshots", "--snapshotter", "strata", "info", "c1"))
        .contains("\"strata.test/label\": \"yes\"");
    // the layer has a child: it cannot be removed
    Process rm = new ProcessBuilder("ctr", "-a", socket.toString(), "snapshots", "--snapshotter",
        "strata", "rm", layerKey.substring(layerKey.lastIndexOf('/') + 1)).redirectErrorStream(true).start();
    String rmOut = new String(rm.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(rm.waitFor()).as(rmOut).isNotZero();
    ctr("containers", "rm", "c1");
    // containerd's garbage collector removes the snapshot a little later
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (Files.exists(upper) && System.nanoTime() < deadline) {
      Thread.sleep(100);
    }
    assertThat(upper).doesNotExist();

    // killed and restarted: the committed snapshot is still there and serves a container
    snapshotter.destroyForcibly().waitFor();
    // with a daemon, the killed client's snapshotter stops in the daemon a moment later
    long gone = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (io.strata.runtime.daemon.DaemonServer.answers(snapSocket)) {
      assertThat(System.nanoTime()).as("the killed snapshotter still answers").isLessThan(gone);
      Thread.sleep(50);
    }
    startSnapshotter();
    // containerd redials a proxy plugin with backoff: the first calls may still be refused
    String after = null;
    long redial = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    while (after == null) {
      try {
        after = ctr("snapshots", "--snapshotter", "strata", "ls");
      } catch (AssertionError refused) {
        assertThat(System.nanoTime()).as(refused.getMessage()).isLessThan(redial);
        Thread.sleep(500);
      }
    }
    assertThat(after).contains("Committed").contains(layerKey.substring(layerKey.lastIndexOf('/') + 1));

    // a snapshot made and removed through ctr
    ctr("snapshots", "--snapshotter", "strata", "prepare", "scratch",
        layerKey.substring(layerKey.lastIndexOf('/') + 1));
    assertThat(ctr("snapshots", "--snapshotter", "strata", "ls")).contains("scratch");
    ctr("snapshots", "--snapshotter", "strata", "rm", "scratch");
    assertThat(ctr("snapshots", "--snapshotter", "strata", "ls")).doesNotContain("scratch");
    ctr("run", "--rm", "--snapshotter", "strata", "docker.io/library/bb:1", "c2", "true");

    // and an image pulled by ctr from a registry (Debian's docker-registry on loopback)
    String reg = startRegistry();
    CommitTest.sh("skopeo copy --quiet --dest-tls-verify=false docker-archive:"
        + tmp.resolve("bb-archive.tar") + " docker://" + reg + "/pulled:1");
    ctr("images", "pull", "--plain-http", "--snapshotter", "strata", reg + "/pulled:1");
    ctr("run", "--rm", "--snapshotter", "strata", reg + "/pulled:1", "c3", "sh", "-c",
        "echo pulled > /y && test \"$(cat /y)\" = pulled");
    ctrQuiet("images", "rm", reg + "/pulled:1");
    long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (records().size() > 1 && System.nanoTime() < until) {
      Thread.sleep(100); // containerd's garbage collector removes c2's snapshot
    }
    assertThat(records()).hasSize(1);
    assertThat(Mounts.table()).noneMatch(e -> e.mountpoint().startsWith(tmp));
  }
}
