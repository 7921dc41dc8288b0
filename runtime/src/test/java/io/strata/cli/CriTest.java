package io.strata.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.grpc.ManagedChannel;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.shaded.io.netty.channel.EventLoopGroup;
import io.grpc.netty.shaded.io.netty.channel.MultiThreadIoEventLoopGroup;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollDomainSocketChannel;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollIoHandler;
import io.grpc.netty.shaded.io.netty.channel.unix.DomainSocketAddress;
import io.strata.cri.ContainerConfig;
import io.strata.cri.ContainerFilter;
import io.strata.cri.ContainerMetadata;
import io.strata.cri.ContainerState;
import io.strata.cri.ContainerStatus;
import io.strata.cri.ContainerStatusRequest;
import io.strata.cri.CreateContainerRequest;
import io.strata.cri.ExecSyncRequest;
import io.strata.cri.ExecSyncResponse;
import io.strata.cri.ImageFsInfoRequest;
import io.strata.cri.ImageFsInfoResponse;
import io.strata.cri.ImageServiceGrpc;
import io.strata.cri.ImageSpec;
import io.strata.cri.ImageStatusRequest;
import io.strata.cri.LinuxPodSandboxConfig;
import io.strata.cri.LinuxSandboxSecurityContext;
import io.strata.cri.ListContainersRequest;
import io.strata.cri.ListPodSandboxRequest;
import io.strata.cri.NamespaceMode;
import io.strata.cri.NamespaceOption;
import io.strata.cri.PodSandbox;
import io.strata.cri.PodSandboxConfig;
import io.strata.cri.PodSandboxMetadata;
import io.strata.cri.PullImageRequest;
import io.strata.cri.RemoveContainerRequest;
import io.strata.cri.RemoveImageRequest;
import io.strata.cri.RemovePodSandboxRequest;
import io.strata.cri.RunPodSandboxRequest;
import io.strata.cri.RuntimeServiceGrpc;
import io.strata.cri.StartContainerRequest;
import io.strata.cri.StopContainerRequest;
import io.strata.cri.StopPodSandboxRequest;
import io.strata.cri.VersionRequest;
import io.strata.layers.base.Json;
import io.strata.layers.fs.Mounts;
import io.strata.runtime.container.TestImages;
import io.strata.union.mount.Background;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.zip.GZIPOutputStream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * containerd (Debian's 1.6) with its CRI plugin, driven through the CRI's gRPC API the way the
 * kubelet drives it: a pod's whole lifecycle run twice, on the overlayfs snapshotter (the
 * oracle) and on strata's, with the same answers; and one store: layers that the CRI pulls
 * for strata's snapshotter are strata's stored layers, fetched and extracted once whichever
 * pulls first, held from {@code strata gc} while containerd uses them and released when it
 * removes them.
 *
 * <p>Images come from a docker-registry on loopback that the test fills: a sandbox ("pause")
 * image and two application images sharing a gzip-compressed base layer, all built here from
 * busybox-static.
 */
class CriTest {
  @TempDir Path tmp;
  TestRegistry registry;
  String reg;
  Process containerd;
  Process snapshotter;
  Path runDir;
  Path socket;
  Path snapSocket;
  Path snapRoot;
  Path store;
  ManagedChannel channel;
  EventLoopGroup group;
  RuntimeServiceGrpc.RuntimeServiceBlockingStub runtime;
  ImageServiceGrpc.ImageServiceBlockingStub images;
  final String cgroupParent = "strata-cri-test-" + ProcessHandle.current().pid();

  @BeforeEach
  void setUp() throws Exception {
    System.setProperty(Background.MAIN_PROPERTY, Main.class.getName());
    io.strata.layers.fs.Posix.chmod(tmp, 0755);
    store = tmp.resolve("strata");
    registry = TestRegistry.start(tmp.resolve("registry"));
    reg = registry.address();
    Path root = TestImages.busyboxRoot(tmp.resolve("bb"));
    Path base = gzip(TestImages.tar(root, tmp.resolve("base.tar")));
    push(image(List.of(base), List.of("/bin/sleep", "100000")), "pause:1");
    push(image(List.of(base, gzip(layer("app1", "one"))), List.of("/bin/sh")), "app:1");
    push(image(List.of(base, gzip(layer("app2", "two"))), List.of("/bin/sh")), "app:2");
  }

  @AfterEach
  void tearDown() throws Exception {
    try {
      stopEngines();
    } finally {
      if (registry != null) {
        registry.close();
      }
      for (Mounts.Entry e : Mounts.table()) {
        if (e.mountpoint().startsWith(tmp)) {
          Mounts.unmount(e.mountpoint(), true);
        }
      }
      // the pods' cgroup parent, in every hierarchy (v1 controllers, systemd's, v2)
      List<Path> hierarchies = new ArrayList<>(List.of(Path.of("/sys/fs/cgroup")));
      try (var ds = Files.newDirectoryStream(Path.of("/sys/fs/cgroup"))) {
        ds.forEach(hierarchies::add);
      }
      // containers a failed test left running (their shims killed with containerd) go first
      for (Path h : hierarchies) {
        Path dir = h.resolve(cgroupParent);
        if (Files.isDirectory(dir, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
          CommitTest.sh("find " + dir + " -name cgroup.procs -exec cat {} + | xargs -r kill -9"
              + " || true");
        }
      }
      for (Path h : hierarchies) {
        Path dir = h.resolve(cgroupParent);
        if (Files.isDirectory(dir, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
          long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
          while (Files.exists(dir) && System.nanoTime() < until) {
            CommitTest.sh("find " + dir + " -depth -type d -exec rmdir {} + 2>/dev/null || true");
            if (Files.exists(dir)) {
              Thread.sleep(100); // killed processes leave their cgroups a moment later
            }
          }
        }
      }
    }
    assertThat(Mounts.table()).noneMatch(e -> e.mountpoint().startsWith(tmp));
    assertThat(Path.of("/sys/fs/cgroup/memory", cgroupParent)).doesNotExist();
  }

  // ------------------------------------------------------------------------------ the tests

  @Test
  void aPodRunsTheSameOnStrataAsOnOverlayfs() throws Exception {
    start("overlayfs");
    List<String> oracle = lifecycle();
    stopEngines();
    start("strata");
    List<String> strata = lifecycle();
    System.out.println("CRI answers:\n" + String.join("\n", oracle));
    assertThat(String.join("\n", strata)).as("the CRI's answers on strata's snapshotter")
        .isEqualTo(String.join("\n", oracle));
    // nothing of the pod is left: no snapshot, no mount
    assertThat(records()).as("the snapshotter's records after RemoveImage").isEmpty();
    assertThat(Mounts.table()).noneMatch(e -> e.mountpoint().startsWith(runDir));
  }

  @Test
  void layersTheCriPullsAreStrataLayersStoredOnce() throws Exception {
    // strata first: the CRI fetches no layer and strata's store gains none
    assertThat(Main.run("--root", store.toString(), "pull", "-q", reg + "/app:1")).isZero();
    Set<String> before = layerDirs();
    assertThat(before).hasSize(2);
    start("strata");
    pull("app:1");
    assertThat(layerDirs()).as("layer directories after the CRI pull").isEqualTo(before);
    assertThat(contentBlobs()).as("blobs containerd fetched itself")
        .doesNotContainAnyElementsOf(registry.layerBlobs("app", "1"));
    // app:2 shares the base: only its own layer is fetched, into strata's store
    pull("app:2");
    assertThat(layerDirs()).hasSize(3).containsAll(before);
    assertThat(contentBlobs()).doesNotContainAnyElementsOf(registry.layerBlobs("app", "2"));
    // the snapshots are the store's trees: the snapshotter's own directory stays small
    long snapshotterBytes = du(snapRoot);
    long storeBytes = du(store.resolve("layers"));
    assertThat(snapshotterBytes).as("snapshotter %d bytes, store layers %d bytes",
        snapshotterBytes, storeBytes).isLessThan(storeBytes / 10);

    // a pod on them works, and its writes go to its own upper
    String pod = runPod("shared");
    String c = createAndStart(pod, "c", "app:2", "cat /etc/app.txt; sleep 100000");
    assertThat(exec(c, "sh", "-c", "cat /etc/app.txt; echo x > /bin/new; ls /bin/new"))
        .isEqualTo("0|two\n/bin/new\n|");
    Path layerTree = store.resolve("layers").resolve(before.iterator().next()).resolve("diff");
    assertThat(layerTree.resolve("bin/new")).doesNotExist();

    // strata rmi + gc keep what containerd's snapshots use
    assertThat(Main.run("--root", store.toString(), "rmi", reg + "/app:1")).isZero();
    assertThat(Main.run("--root", store.toString(), "gc")).isZero();
    assertThat(layerDirs()).hasSize(3);
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    assertThat(strataOut(out, "layers")).isZero();
    assertThat(out.toString(StandardCharsets.UTF_8)).contains("containerd snapshots");

    // containerd's removal releases them: strata's gc then frees the disk
    removePod(pod);
    images.removeImage(RemoveImageRequest.newBuilder().setImage(spec("app:1")).build());
    images.removeImage(RemoveImageRequest.newBuilder().setImage(spec("app:2")).build());
    images.removeImage(RemoveImageRequest.newBuilder().setImage(spec("pause:1")).build());
    waitUntil("containerd removes the snapshots", () -> records().isEmpty());
    assertThat(Main.run("--root", store.toString(), "gc")).isZero();
    assertThat(layerDirs()).isEmpty();
  }

  @Test
  void aLayerTheCriPulledFirstIsNotFetchedAgainByStrataPull() throws Exception {
    start("strata");
    pull("app:1");
    Set<String> after = layerDirs();
    assertThat(after).as("the CRI pull stored the image's layers in strata's store").hasSize(2);
    // held by the snapshots, not by an image: strata images lists none
    assertThat(io.strata.layers.LayerStore.open(store, l -> { }).images()).isEmpty();
    assertThat(contentBlobs()).doesNotContainAnyElementsOf(registry.layerBlobs("app", "1"));
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    assertThat(strataOut(out, "pull", reg + "/app:1")).isZero();
    assertThat(out.toString(StandardCharsets.UTF_8)).contains("0 layers fetched, 2 already stored");
    assertThat(layerDirs()).isEqualTo(after);
    // and a container of strata's own runs on the same layers
    assertThat(Main.run("--root", store.toString(), "run", "--rm", "--network", "none",
        reg + "/app:1", "cat", "/etc/app.txt")).isZero();
  }

  @Test
  void podsKeepRunningWhenContainerdRestarts() throws Exception {
    start("strata");
    pull("app:1");
    String pod = runPod("restart");
    String c = createAndStart(pod, "c", "app:1", "sleep 100000");
    assertThat(exec(c, "sh", "-c", "echo kept > /kept; cat /kept")).isEqualTo("0|kept\n|");
    containerd.destroy();
    assertThat(containerd.waitFor(30, TimeUnit.SECONDS)).isTrue();
    startContainerd();
    assertThat(exec(c, "cat", "/kept", "/etc/app.txt")).isEqualTo("0|kept\none\n|");
    assertThat(runtime.listContainers(ListContainersRequest.getDefaultInstance())
        .getContainersList()).hasSize(1);
    assertThat(runtime.listPodSandbox(ListPodSandboxRequest.getDefaultInstance())
        .getItemsList()).hasSize(1);
    removePod(pod);
    assertThat(Mounts.table()).noneMatch(e -> e.mountpoint().toString().contains(c));
  }

  /**
   * With --mount-helper every container root is a strata-overlay mount of its own, which
   * outlives the snapshotter: a pod keeps running through a snapshotter restart, and through
   * a restart of both, as on overlayfs (whose mounts are the kernel's).
   */
  @Test
  void withTheMountHelperPodsKeepRunningWhenTheSnapshotterRestarts() throws Exception {
    start("strata", true);
    pull("app:1");
    String pod = runPod("helper");
    String c = createAndStart(pod, "c", "app:1", "sleep 100000");
    assertThat(exec(c, "sh", "-c", "echo kept > /kept; cat /kept")).isEqualTo("0|kept\n|");
    restartSnapshotter();
    assertThat(exec(c, "cat", "/kept", "/etc/app.txt")).isEqualTo("0|kept\none\n|");
    String c2 = createAndStart(pod, "c2", "app:1", "sleep 100000");
    assertThat(exec(c2, "cat", "/etc/app.txt")).isEqualTo("0|one\n|");
    // both
    containerd.destroy();
    assertThat(containerd.waitFor(30, TimeUnit.SECONDS)).isTrue();
    snapshotter.destroy();
    assertThat(snapshotter.waitFor(30, TimeUnit.SECONDS)).isTrue();
    startSnapshotter();
    startContainerd();
    assertThat(exec(c, "cat", "/kept")).isEqualTo("0|kept\n|");
    assertThat(runtime.listContainers(ListContainersRequest.getDefaultInstance())
        .getContainersList()).hasSize(2);
    removePod(pod);
    images.removeImage(RemoveImageRequest.newBuilder().setImage(spec("app:1")).build());
    images.removeImage(RemoveImageRequest.newBuilder().setImage(spec("pause:1")).build());
    waitUntil("containerd removes the snapshots", () -> records().isEmpty());
    assertThat(Mounts.table()).noneMatch(e -> e.mountpoint().startsWith(runDir));
  }

  /**
   * Unions served in the snapshotter's process (the default) end with it: a restarted
   * snapshotter says which containers' roots it lost, serves new containers, and removing the
   * pod cleans everything, as the kubelet does when a container fails.
   */
  @Test
  void aSnapshotterRestartSaysWhichServedRootsWereLostAndNewContainersRun() throws Exception {
    start("strata");
    pull("app:1");
    String pod = runPod("served");
    String c = createAndStart(pod, "c", "app:1", "sleep 100000");
    assertThat(exec(c, "cat", "/etc/app.txt")).isEqualTo("0|one\n|");
    restartSnapshotter();
    String c2 = createAndStart(pod, "c2", "app:1", "sleep 100000");
    assertThat(exec(c2, "cat", "/etc/app.txt")).isEqualTo("0|one\n|");
    assertThat(Files.readString(runDir.resolve("snapshotter.log")))
        .containsPattern("snapshot k8s.io/[0-9]+/" + c + " .*loses its root");
    removePod(pod);
    images.removeImage(RemoveImageRequest.newBuilder().setImage(spec("app:1")).build());
    images.removeImage(RemoveImageRequest.newBuilder().setImage(spec("pause:1")).build());
    waitUntil("containerd removes the snapshots", () -> records().isEmpty());
    assertThat(Mounts.table()).noneMatch(e -> e.mountpoint().startsWith(runDir));
  }

  void restartSnapshotter() throws Exception {
    snapshotter.destroy();
    assertThat(snapshotter.waitFor(30, TimeUnit.SECONDS)).isTrue();
    startSnapshotter();
    // containerd redials a proxy plugin with backoff: wait until it reaches the new one
    waitUntil("containerd reaches the restarted snapshotter", () -> new ProcessBuilder("ctr",
        "-a", socket.toString(), "-n", "k8s.io", "snapshots", "--snapshotter", "strata", "ls")
        .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start()
        .waitFor() == 0);
  }

  // ------------------------------------------------------------------------------ the pod

  /** The kubelet's calls for one pod of two containers sharing an image; what they answered. */
  List<String> lifecycle() throws Exception {
    List<String> said = new ArrayList<>();
    said.add("runtime " + runtime.version(VersionRequest.newBuilder().setVersion("v1").build())
        .getRuntimeApiVersion());
    said.add("pulled " + pull("app:1"));
    said.add("status " + images.imageStatus(ImageStatusRequest.newBuilder()
        .setImage(spec("app:1")).build()).getImage().getRepoTagsList());
    String pod = runPod("web");
    String c1 = createAndStart(pod, "one", "app:1", "cat /etc/app.txt; echo out; echo err >&2;"
        + " trap 'exit 3' TERM; while :; do sleep 1; done");
    String c2 = createAndStart(pod, "two", "app:1", "trap 'exit 4' TERM; while :; do sleep 1;"
        + " done");
    said.add("c1 state " + status(c1).getState());
    // written by one ExecSync, read back by another; not seen by the pod's other container
    said.add("write " + exec(c1, "sh", "-c", "echo written > /data.txt; echo changed >>"
        + " /etc/app.txt"));
    said.add("read " + exec(c1, "cat", "/data.txt", "/etc/app.txt"));
    said.add("other " + exec(c2, "sh", "-c", "cat /etc/app.txt; test -e /data.txt"));
    said.add("fails " + exec(c1, "sh", "-c", "echo no >&2; exit 7"));
    said.add("containers " + runtime.listContainers(ListContainersRequest.newBuilder()
        .setFilter(ContainerFilter.newBuilder().setPodSandboxId(pod)).build())
        .getContainersCount());
    runtime.stopContainer(StopContainerRequest.newBuilder().setContainerId(c1).setTimeout(10)
        .build());
    ContainerStatus st = status(c1);
    said.add("stopped " + st.getState() + " exit " + st.getExitCode() + " reason "
        + st.getReason());
    said.add("log " + logMessages(st.getLogPath()));
    // what the kubelet's image garbage collection reads: the CRI sums its snapshots' usage
    // every stats_collect_period (1 s here)
    ImageFsInfoResponse[] fs = new ImageFsInfoResponse[1];
    waitUntil("ImageFsInfo counts the image's snapshots", () -> {
      fs[0] = images.imageFsInfo(ImageFsInfoRequest.getDefaultInstance());
      return fs[0].getImageFilesystemsCount() > 0
          && fs[0].getImageFilesystems(0).getUsedBytes().getValue() > 0;
    });
    System.out.println("ImageFsInfo: " + fs[0]);
    said.add("imagefs " + fs[0].getImageFilesystemsCount() + " "
        + !fs[0].getImageFilesystems(0).getFsId().getMountpoint().isEmpty());
    removePod(pod);
    said.add("pods " + runtime.listPodSandbox(ListPodSandboxRequest.getDefaultInstance())
        .getItemsCount());
    images.removeImage(RemoveImageRequest.newBuilder().setImage(spec("app:1")).build());
    images.removeImage(RemoveImageRequest.newBuilder().setImage(spec("pause:1")).build());
    said.add("images gone " + !images.imageStatus(ImageStatusRequest.newBuilder()
        .setImage(spec("app:1")).build()).hasImage());
    return said;
  }

  String pull(String image) {
    return images.pullImage(PullImageRequest.newBuilder().setImage(spec(image)).build())
        .getImageRef();
  }

  ImageSpec spec(String image) {
    return ImageSpec.newBuilder().setImage(reg + "/" + image).build();
  }

  PodSandboxConfig podConfig(String name) throws Exception {
    return PodSandboxConfig.newBuilder()
        .setMetadata(PodSandboxMetadata.newBuilder().setName(name).setUid("uid-" + name)
            .setNamespace("strata-test"))
        .setLogDirectory(Files.createDirectories(runDir.resolve("logs").resolve(name)).toString())
        .setLinux(LinuxPodSandboxConfig.newBuilder().setCgroupParent("/" + cgroupParent)
            .setSecurityContext(LinuxSandboxSecurityContext.newBuilder().setNamespaceOptions(
                NamespaceOption.newBuilder().setNetwork(NamespaceMode.NODE))))
        .build();
  }

  final java.util.Map<String, PodSandboxConfig> pods = new java.util.HashMap<>();

  String runPod(String name) throws Exception {
    PodSandboxConfig config = podConfig(name);
    String id = runtime.runPodSandbox(RunPodSandboxRequest.newBuilder().setConfig(config)
        .build()).getPodSandboxId();
    pods.put(id, config);
    return id;
  }

  String createAndStart(String pod, String name, String image, String script) {
    String id = runtime.createContainer(CreateContainerRequest.newBuilder()
        .setPodSandboxId(pod).setSandboxConfig(pods.get(pod))
        .setConfig(ContainerConfig.newBuilder()
            .setMetadata(ContainerMetadata.newBuilder().setName(name))
            .setImage(spec(image)).addCommand("/bin/sh").addArgs("-c").addArgs(script)
            .setLogPath(name + ".log"))
        .build()).getContainerId();
    runtime.startContainer(StartContainerRequest.newBuilder().setContainerId(id).build());
    return id;
  }

  /** exit code|stdout|stderr of a command run in the container. */
  String exec(String container, String... cmd) {
    ExecSyncResponse r = runtime.execSync(ExecSyncRequest.newBuilder().setContainerId(container)
        .addAllCmd(List.of(cmd)).setTimeout(60).build());
    return r.getExitCode() + "|" + r.getStdout().toStringUtf8() + "|"
        + r.getStderr().toStringUtf8();
  }

  ContainerStatus status(String id) {
    return runtime.containerStatus(ContainerStatusRequest.newBuilder().setContainerId(id)
        .build()).getStatus();
  }

  void removePod(String pod) {
    for (var c : runtime.listContainers(ListContainersRequest.newBuilder().setFilter(
        ContainerFilter.newBuilder().setPodSandboxId(pod)).build()).getContainersList()) {
      if (c.getState() == ContainerState.CONTAINER_RUNNING) {
        runtime.stopContainer(StopContainerRequest.newBuilder().setContainerId(c.getId())
            .setTimeout(10).build());
      }
      runtime.removeContainer(RemoveContainerRequest.newBuilder().setContainerId(c.getId())
          .build());
    }
    runtime.stopPodSandbox(StopPodSandboxRequest.newBuilder().setPodSandboxId(pod).build());
    runtime.removePodSandbox(RemovePodSandboxRequest.newBuilder().setPodSandboxId(pod).build());
  }

  /**
   * The messages of a CRI log (TIMESTAMP STREAM TAG MESSAGE per line) by stream, in order within
   * each (the two streams' lines interleave as the process ran).
   */
  static String logMessages(String path) throws Exception {
    List<String> out = new ArrayList<>();
    List<String> err = new ArrayList<>();
    for (String line : Files.readAllLines(Path.of(path))) {
      String[] f = line.split(" ", 4);
      (f[1].equals("stderr") ? err : out).add(f.length > 3 ? f[3] : "");
    }
    return "stdout " + out + " stderr " + err;
  }

  // ------------------------------------------------------------------------------ the engines

  boolean helper;

  void start(String snapshotterName) throws Exception {
    start(snapshotterName, false);
  }

  /** @param helper containerd mounts each union through mount.fuse3 and strata-overlay */
  void start(String snapshotterName, boolean helper) throws Exception {
    start(snapshotterName, helper, "run-" + snapshotterName);
  }

  /** @param run names the directory of this containerd (and snapshotter) under tmp */
  void start(String snapshotterName, boolean helper, String run) throws Exception {
    this.helper = helper;
    runDir = Files.createDirectories(tmp.resolve(run));
    socket = runDir.resolve("containerd.sock");
    snapSocket = runDir.resolve("snap.sock");
    snapRoot = runDir.resolve("snapshotter");
    TestDaemon.overlayProgram(Files.createDirectories(runDir.resolve("bin")));
    if (snapshotterName.equals("strata")) {
      startSnapshotter();
    }
    Files.createDirectories(runDir.resolve("cni/bin"));
    Files.createDirectories(runDir.resolve("cni/conf"));
    String cri = "plugins.\"io.containerd.grpc.v1.cri\"";
    Files.writeString(runDir.resolve("config.toml"), "version = 2\n"
        + (Boolean.getBoolean("strata.test.containerdDebug") ? "[debug]\n  level = \"debug\"\n"
            : "")
        + "root = \"" + runDir.resolve("root") + "\"\n"
        + "state = \"" + runDir.resolve("state") + "\"\n"
        + "[grpc]\n  address = \"" + socket + "\"\n"
        + "[proxy_plugins]\n  [proxy_plugins.strata]\n    type = \"snapshot\"\n"
        + "    address = \"" + snapSocket + "\"\n"
        + "[" + cri + "]\n"
        + "  sandbox_image = \"" + reg + "/pause:1\"\n"
        + "  stream_server_address = \"127.0.0.1\"\n  stream_server_port = \"0\"\n"
        // this machine refuses a negative oom_score_adj (EIO), which the CRI gives sandboxes
        // (-998): keep it at containerd's own, as rootless nodes do
        + "  restrict_oom_score_adj = true\n"
        + "  stats_collect_period = 1\n"
        + "[" + cri + ".containerd]\n"
        + "  snapshotter = \"" + snapshotterName + "\"\n"
        + "  disable_snapshot_annotations = false\n"
        + "  default_runtime_name = \"runc\"\n"
        + "[" + cri + ".containerd.runtimes.runc]\n"
        + "  runtime_type = \"io.containerd.runc.v2\"\n"
        + "[" + cri + ".cni]\n  bin_dir = \"" + runDir.resolve("cni/bin") + "\"\n"
        + "  conf_dir = \"" + runDir.resolve("cni/conf") + "\"\n"
        + "[" + cri + ".registry.mirrors.\"" + reg + "\"]\n"
        + "  endpoint = [\"http://" + reg + "\"]\n");
    startContainerd();
  }

  void startSnapshotter() throws Exception {
    List<String> args = new ArrayList<>(List.of("--root", store.toString(), "snapshotter",
        "--address", snapSocket.toString(), "--root", snapRoot.toString(), "--log-level",
        System.getProperty("strata.test.snapshotterLogLevel", "info")));
    if (helper) {
      args.add("--mount-helper");
    }
    ProcessBuilder pb = new ProcessBuilder(TestDaemon.command(args))
        .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.appendTo(
            runDir.resolve("snapshotter.log").toFile()));
    TestDaemon.environment(pb.environment());
    snapshotter = pb.start();
    waitFor(snapSocket);
  }

  void startContainerd() throws Exception {
    if (channel != null) {
      channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
    }
    ProcessBuilder pb = new ProcessBuilder("containerd", "--config",
        runDir.resolve("config.toml").toString()).redirectErrorStream(true)
        .redirectOutput(ProcessBuilder.Redirect.appendTo(runDir.resolve("containerd.log")
            .toFile()));
    // mount.fuse3 runs strata-overlay from containerd's PATH (with --mount-helper)
    pb.environment().put("PATH", runDir.resolve("bin") + ":" + System.getenv("PATH"));
    containerd = pb.start();
    waitFor(socket);
    if (group == null) {
      group = new MultiThreadIoEventLoopGroup(1, EpollIoHandler.newFactory());
    }
    channel = NettyChannelBuilder.forAddress(new DomainSocketAddress(socket.toString()))
        .channelType(EpollDomainSocketChannel.class).eventLoopGroup(group).usePlaintext()
        .build();
    runtime = RuntimeServiceGrpc.newBlockingStub(channel)
        .withDeadlineAfter(10, TimeUnit.MINUTES);
    images = ImageServiceGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.MINUTES);
    // the CRI plugin answers a moment after containerd's socket
    waitUntil("the CRI answers", () -> {
      try {
        runtime.version(VersionRequest.newBuilder().setVersion("v1").build());
        return true;
      } catch (io.grpc.StatusRuntimeException notYet) {
        return false;
      }
    });
  }

  /** Removes every pod left (a failed test), then stops containerd and the snapshotter. */
  void stopEngines() throws Exception {
    try {
      if (runtime != null && containerd != null && containerd.isAlive()) {
        for (PodSandbox p : runtime.listPodSandbox(ListPodSandboxRequest.getDefaultInstance())
            .getItemsList()) {
          try {
            removePod(p.getId());
          } catch (RuntimeException e) {
            System.err.println("cleanup of pod " + p.getId() + ": " + e);
          }
        }
      }
    } finally {
      if (channel != null) {
        channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
        channel = null;
      }
      for (Process p : new Process[] {containerd, snapshotter}) {
        if (p != null) {
          p.destroy();
          if (!p.waitFor(15, TimeUnit.SECONDS)) {
            p.destroyForcibly().waitFor();
          }
        }
      }
      containerd = null;
      snapshotter = null;
      if (runDir != null && Files.exists(runDir.resolve("snapshotter.log"))) {
        // in the test's report: what the snapshotter said
        System.out.println("snapshotter log (" + runDir + "):\n"
            + Files.readString(runDir.resolve("snapshotter.log")));
      }
      if (socket != null) {
        // shims of this containerd, if a failure left any (their command line names its socket)
        new ProcessBuilder("pkill", "-9", "-f", socket.toString()).start().waitFor();
      }
      if (group != null) {
        group.shutdownGracefully();
        group = null;
      }
      for (Mounts.Entry e : Mounts.table()) {
        if (e.mountpoint().startsWith(tmp)) {
          Mounts.unmount(e.mountpoint(), true);
        }
      }
    }
  }

  static void waitFor(Path sock) throws Exception {
    waitUntil(sock + " answers", () -> {
      try (var ch = java.nio.channels.SocketChannel.open(java.net.StandardProtocolFamily.UNIX)) {
        ch.connect(java.net.UnixDomainSocketAddress.of(sock));
        return true;
      } catch (java.io.IOException notYet) {
        return false;
      }
    });
  }

  interface Check {
    boolean ok() throws Exception;
  }

  static void waitUntil(String what, Check check) throws Exception {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    while (!check.ok()) {
      assertThat(System.nanoTime()).as("waiting until " + what).isLessThan(deadline);
      Thread.sleep(100);
    }
  }

  // ------------------------------------------------------------------------------ the stores

  /** The snapshotter's records. */
  List<JsonNode> records() throws Exception {
    List<JsonNode> out = new ArrayList<>();
    Path f = snapRoot.resolve("metadata.json");
    if (Files.exists(f)) {
      Json.MAPPER.readTree(f.toFile()).forEach(out::add);
    }
    return out;
  }

  Set<String> layerDirs() throws Exception {
    Set<String> out = new java.util.TreeSet<>();
    Path layers = store.resolve("layers");
    if (Files.isDirectory(layers)) {
      try (var s = Files.list(layers)) {
        s.filter(p -> Files.exists(p.resolve("layer.json")))
            .forEach(p -> out.add(p.getFileName().toString()));
      }
    }
    return out;
  }

  /** The digests in containerd's content store. */
  Set<String> contentBlobs() throws Exception {
    Process p = new ProcessBuilder("ctr", "-a", socket.toString(), "-n", "k8s.io", "content",
        "ls", "-q").redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor()).as(out).isZero();
    return new java.util.TreeSet<>(List.of(out.trim().split("\\s+")));
  }

  static long du(Path dir) throws Exception {
    return Long.parseLong(CommitTest.sh("du -sxb " + dir + " | cut -f1").trim());
  }

  int strataOut(ByteArrayOutputStream out, String... args) {
    List<String> all = new ArrayList<>(List.of("--root", store.toString()));
    all.addAll(List.of(args));
    java.io.PrintStream was = System.out;
    java.io.PrintStream to = new java.io.PrintStream(out, true, StandardCharsets.UTF_8);
    System.setOut(to);
    try {
      return Main.run(all.toArray(String[]::new));
    } finally {
      System.setOut(was);
    }
  }

  // ------------------------------------------------------------------------------ the images

  Path layer(String name, String content) throws Exception {
    Path dir = Files.createDirectories(tmp.resolve(name).resolve("etc"));
    Files.writeString(dir.resolve("app.txt"), content + "\n");
    return TestImages.tar(tmp.resolve(name), tmp.resolve(name + ".tar"));
  }

  static Path gzip(Path tar) throws Exception {
    Path gz = tar.resolveSibling(tar.getFileName() + ".gz");
    try (var out = new GZIPOutputStream(Files.newOutputStream(gz))) {
      Files.copy(tar, out);
    }
    return gz;
  }

  int imageCount = 0;

  /** An OCI image layout of gzip-compressed layers with this command. */
  Path image(List<Path> layers, List<String> cmd) throws Exception {
    return TestImages.ociLayout(layers, tmp.resolve("oci-" + imageCount++), c -> {
      var cmdArray = c.putArray("Cmd");
      cmd.forEach(cmdArray::add);
    });
  }

  void push(Path layout, String name) throws Exception {
    CommitTest.sh("skopeo copy --quiet --dest-tls-verify=false oci:" + layout + " docker://"
        + reg + "/" + name);
  }
}
