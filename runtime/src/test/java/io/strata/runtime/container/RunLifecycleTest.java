package io.strata.runtime.container;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.strata.layers.LayerStore;
import io.strata.layers.base.Progress;
import io.strata.layers.fs.Mounts;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * How `strata run` starts and ends when things go wrong (issue 8, items 13, 15, 16, 18): bad
 * options create nothing, signals to strata reach the container and --rm still holds, a
 * helper that dies before it starts does not hang strata, and the image's User, WorkingDir
 * and the hostname behave as in Docker.
 */
class RunLifecycleTest {
  @TempDir static Path shared;
  static LayerStore store;
  @TempDir Path out;

  @BeforeAll
  static void buildImages() throws Exception {
    io.strata.layers.fs.Posix.chmod(shared, 0755);
    Path root = TestImages.busyboxRoot(shared.resolve("bb"));
    Path tar = TestImages.tar(root, shared.resolve("bb.tar"));
    store = LayerStore.open(shared.resolve("store"), System.err::println);
    store.importImage(tar, "bb:test", null, Progress.NONE);
    store.importImage(TestImages.ociLayout(tar, shared.resolve("named-user"),
        c -> c.put("User", "nobody").putArray("Cmd").add("true")), "named-user:test", null,
        Progress.NONE);
    store.importImage(TestImages.ociLayout(tar, shared.resolve("relative-wd"),
        c -> c.put("WorkingDir", "app/dir").putArray("Cmd").add("pwd")), "relative-wd:test",
        null, Progress.NONE);
    Path users = shared.resolve("users");
    assertThat(new ProcessBuilder("cp", "-a", root.toString(), users.toString()).start()
        .waitFor()).isZero();
    Files.writeString(users.resolve("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n"
        + "app:x:1000:1001::/:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n");
    Files.writeString(users.resolve("etc/group"), "root:x:0:\nstaff:x:50:app\napp:x:1001:\n");
    store.importImage(TestImages.ociLayout(TestImages.tar(users, shared.resolve("users.tar")),
        shared.resolve("users-layout"), c -> c.put("User", "app")), "users:test", null,
        Progress.NONE);
    Path link = shared.resolve("link-proc");
    assertThat(new ProcessBuilder("cp", "-a", root.toString(), link.toString()).start()
        .waitFor()).isZero();
    Files.createSymbolicLink(link.resolve("proc"), Path.of("/"));
    store.importImage(TestImages.tar(link, shared.resolve("link.tar")), "link-proc:test", null,
        Progress.NONE);
  }

  @AfterEach
  void nothingLeftBehind() throws Exception {
    assertThat(Mounts.table()).noneMatch(e -> e.mountpoint().startsWith(store.root()));
    assertThat(Path.of("/sys/fs/cgroup/memory/strata/ctr-life")).doesNotExist();
  }

  private List<String> containerDirs() throws IOException {
    Path dir = store.root().resolve("containers");
    if (!Files.isDirectory(dir)) {
      return List.of();
    }
    try (var s = Files.list(dir)) {
      return s.map(p -> p.getFileName().toString()).toList();
    }
  }

  private int cli(String... args) {
    List<String> all = new ArrayList<>(List.of("--root", store.root().toString()));
    all.addAll(List.of(args));
    return io.strata.cli.Main.run(all.toArray(String[]::new));
  }

  @ParameterizedTest
  @ValueSource(strings = {"--user=4294967296", "--user=nosuchuser", "--user=1:2:3", "--env==x", "--volume=/tmp",
      "--volume=/tmp:rel", "--cpus=0.0001", "--cpus=NaN", "--memory=1k",
      "--pids-limit=99999999999", "--hostname=hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh", "--workdir=relative",
      "--security-opt=apparmor=x", "--network=bridge", "--cpus=0x1p-3", "--cpus=Infinity",
      "--cpus=1e0", "--userns-map=200000:65536"})
  void aBadOptionIsAUsageErrorAndCreatesNothing(String option) throws Exception {
    assertThat(cli("run", "--rm", "--name", "life", option, "bb:test", "true")).isEqualTo(2);
    assertThat(containerDirs()).isEmpty();
    assertThat(store.root().resolve("pins/ctr-life.json")).doesNotExist();
  }

  @Test
  void aStartThatFailsLateWithRmLeavesNoRecord() throws Exception {
    assertThat(cli("run", "--rm", "--name", "life", "link-proc:test", "true")).isEqualTo(125);
    assertThat(containerDirs()).isEmpty();
  }

  @Test
  void anImageUserThatCannotBeUsedIsTheImagesFault() {
    assertThat(cli("run", "--rm", "named-user:test")).isEqualTo(4);
    assertThat(cli("run", "--rm", "--user", "0", "named-user:test")).isZero();
  }

  /** User names, as Docker takes them: looked up in the image's own /etc/passwd and /etc/group. */
  @Test
  void userNamesAreLookedUpInTheImage() throws Exception {
    io.strata.layers.fs.Posix.chmod(out, 0777);
    String ids = "id -u > /out/$1; id -g >> /out/$1; id -G >> /out/$1";
    assertThat(cli("run", "--rm", "-v", out + ":/out", "users:test", "sh", "-c", ids, "sh",
        "config")).isZero();
    assertThat(cli("run", "--rm", "--user", "nobody", "-v", out + ":/out", "users:test", "sh",
        "-c", ids, "sh", "nobody")).isZero();
    assertThat(cli("run", "--rm", "--user", "app:staff", "-v", out + ":/out", "users:test", "sh",
        "-c", ids, "sh", "group")).isZero();
    assertThat(cli("run", "--rm", "--user", "0:app", "-v", out + ":/out", "users:test", "sh",
        "-c", ids, "sh", "mixed")).isZero();
    assertThat(cli("run", "--rm", "--user", "4321", "-v", out + ":/out", "users:test", "sh",
        "-c", ids, "sh", "number")).isZero();
    // uid, gid, then every group: the primary one and those that list the user as a member
    assertThat(Files.readString(out.resolve("config")).split("\n"))
        .containsExactly("1000", "1001", "1001 50");
    assertThat(Files.readString(out.resolve("nobody")).split("\n"))
        .containsExactly("65534", "65534", "65534");
    assertThat(Files.readString(out.resolve("group")).split("\n"))
        .containsExactly("1000", "50", "50");
    assertThat(Files.readString(out.resolve("mixed")).split("\n"))
        .containsExactly("0", "1001", "1001");
    assertThat(Files.readString(out.resolve("number")).split("\n"))
        .containsExactly("4321", "0", "0");
    assertThat(cli("run", "--rm", "--user", "ghost", "users:test", "true")).isEqualTo(2);
    assertThat(cli("run", "--rm", "--user", "app:ghosts", "users:test", "true")).isEqualTo(2);
    assertThat(containerDirs()).isEmpty();
  }

  @Test
  void aRelativeOrMissingWorkingDirIsMadeAndHostnameMatchesTheEnvironment() throws Exception {
    int code = new ContainerRunner(store, System.err::println).run(new ContainerRunner.Spec(
        "life", "relative-wd:test", List.of("/bin/sh", "-c", "pwd > /out/pwd;"
            + " [ \"$HOSTNAME\" = \"$(hostname)\" ] && echo same > /out/host"), List.of(), null,
        null, null, "none", List.of(out + ":/out"), false, false, true, Limits.NONE, null, true));
    assertThat(code).isZero();
    assertThat(Files.readString(out.resolve("pwd")).trim()).isEqualTo("/app/dir");
    assertThat(Files.readString(out.resolve("host")).trim()).isEqualTo("same");
    assertThat(cli("run", "--rm", "-w", "/made/here", "-v", out + ":/out", "bb:test", "sh", "-c",
        "pwd > /out/pwd2")).isZero();
    assertThat(Files.readString(out.resolve("pwd2")).trim()).isEqualTo("/made/here");
  }

  @Test
  void aHelperThatDiesBeforeItStartsDoesNotHangStrata() throws Exception {
    Path fifo = out.resolve("sync");
    io.strata.layers.fs.Posix.mknod(fifo, io.strata.layers.fs.Posix.S_IFIFO | 0600, 0, 0);
    Process dead = new ProcessBuilder("sh", "-c", "exit 137").start();
    dead.waitFor();
    long t0 = System.nanoTime();
    assertThatThrownBy(() -> Native.release(fifo, dead, Duration.ofSeconds(30)))
        .hasMessageContaining("died before it started");
    assertThat(System.nanoTime() - t0).isLessThan(TimeUnit.SECONDS.toNanos(10));
  }

  private Process strata(String... args) throws IOException {
    System.setProperty(io.strata.union.mount.Background.MAIN_PROPERTY, "io.strata.cli.Main");
    List<String> all = new ArrayList<>(List.of("--root", store.root().toString()));
    all.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(io.strata.cli.TestDaemon.command(all))
        .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.INHERIT);
    io.strata.cli.TestDaemon.environment(pb.environment());
    return pb.start();
  }

  private void awaitRunning(Process p, String name) throws Exception {
    Containers c = new Containers(store.root(), s -> { });
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    while (!Files.exists(c.dirOf(name).resolve("state.json"))
        || !c.read(name).status().equals(ContainerState.RUNNING)) {
      assertThat(p.isAlive()).isTrue();
      assertThat(System.nanoTime()).isLessThan(deadline);
      Thread.sleep(20);
    }
  }

  @Test
  void sigtermToStrataRunWithRmEndsTheContainerAndRemovesIt() throws Exception {
    Process p = strata("run", "--rm", "--init", "--name", "life", "bb:test", "sleep", "60");
    try {
      awaitRunning(p, "life");
      p.destroy(); // SIGTERM
      assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
      assertThat(p.exitValue()).isEqualTo(143);
    } finally {
      p.destroyForcibly();
    }
    assertThat(containerDirs()).isEmpty();
    assertThat(store.root().resolve("pins/ctr-life.json")).doesNotExist();
  }

  @Test
  void sigintToStrataRunIsRecordedAs130() throws Exception {
    Process p = strata("run", "--init", "--name", "life", "bb:test", "sleep", "60");
    try {
      awaitRunning(p, "life");
      Native.kill(p.pid(), 2);
      assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
      assertThat(p.exitValue()).isEqualTo(130);
    } finally {
      p.destroyForcibly();
    }
    ContainerState s = new Containers(store.root(), m -> { }).read("life");
    assertThat(s.status()).isEqualTo(ContainerState.EXITED);
    assertThat(s.exitCode()).isEqualTo(130);
    assertThat(cli("rm", "life")).isZero();
  }
}
