package io.strata.runtime.container;

import static org.assertj.core.api.Assertions.assertThat;

import io.strata.layers.ImageRecord;
import io.strata.layers.LayerStore;
import io.strata.layers.base.Progress;
import io.strata.layers.fs.Mounts;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Containers from a busybox-static image (Debian's package), checked from the inside: each
 * test writes what it saw into a bind-mounted directory. Every test also checks that nothing
 * (mount, cgroup, process) is left behind.
 */
class ContainerTest {
  @TempDir static Path shared;
  static LayerStore store;
  static ImageRecord busybox;
  @TempDir Path out;

  @BeforeAll
  static void buildImage() throws Exception {
    // JUnit makes temporary directories 0700; a user-namespaced root must traverse them.
    io.strata.layers.fs.Posix.chmod(shared, 0755);
    Path tar = TestImages.tar(TestImages.busyboxRoot(shared), shared.resolve("busybox.tar"));
    store = LayerStore.open(shared.resolve("store"), System.err::println);
    busybox = store.importImage(tar, "busybox:test", null, Progress.NONE);
  }

  @AfterEach
  void nothingLeftBehind() throws Exception {
    assertThat(Mounts.table()).noneMatch(e -> e.mountpoint().startsWith(store.root()));
    for (String c : List.of("memory", "cpu", "pids")) {
      Path dir = Path.of("/sys/fs/cgroup", c, "strata");
      if (Files.isDirectory(dir)) {
        try (var s = Files.list(dir)) {
          assertThat(s.filter(Files::isDirectory)).as("cgroups left in " + dir).isEmpty();
        }
      }
    }
  }

  ContainerRunner.Spec spec(String name, String script, Limits limits, boolean init) {
    return new ContainerRunner.Spec(name, "busybox:test", List.of("/bin/sh", "-c", script),
        List.of("GREETING=hi"), null, null, "box", "none", List.of(out + ":/out"), false, init,
        false, limits, null, true);
  }

  int run(String name, String script) throws Exception {
    return new ContainerRunner(store, System.err::println).run(spec(name, script, Limits.NONE,
        false));
  }

  String read(String file) throws Exception {
    return Files.readString(out.resolve(file)).trim();
  }

  @Test
  void pid1HostnameEnvironmentAndIsolation() throws Exception {
    int code = run("iso", "echo $$ > /out/pid; hostname > /out/hostname; echo $GREETING > /out/env;"
        + " cat /proc/mounts > /out/mounts; ps -o pid,comm > /out/ps; cat /proc/net/dev > /out/net;"
        + " id -u > /out/uid; grep CapEff /proc/self/status > /out/caps");
    assertThat(code).isZero();
    assertThat(read("pid")).isEqualTo("1");
    assertThat(read("hostname")).isEqualTo("box");
    assertThat(read("env")).isEqualTo("hi");
    assertThat(read("mounts")).doesNotContain("/work").doesNotContain(store.root().toString());
    assertThat(read("ps").split("\n")).hasSizeLessThanOrEqualTo(4); // header, sh, ps
    assertThat(read("net")).contains("lo:").doesNotContain("eth").doesNotContain("ens");
    assertThat(read("uid")).isEqualTo("0");
    assertThat(read("caps")).doesNotContain("000001ffffffffff"); // not the full set
  }

  @Test
  void writesLandInTheUpperAndNotInTheImageNorInAnotherContainer() throws Exception {
    assertThat(run("w1", "echo mine > /root/file; echo one > /etc/passwd")).isZero();
    assertThat(run("w2", "ls /root > /out/ls; cat /etc/passwd > /out/passwd")).isZero();
    assertThat(read("ls")).isEmpty();
    assertThat(read("passwd")).startsWith("root:x:0:0");
    Containers c = new Containers(store.root(), s -> { });
    assertThat(c.upperOf("w1").resolve("root/file")).hasContent("mine");
    assertThat(Files.exists(store.layerTree(busybox.diffIds().get(0)).resolve("root/file"))).isFalse();
    c.remove("w1");
    c.remove("w2");
    assertThat(Files.exists(c.dirOf("w1"))).isFalse();
  }

  @Test
  void aUserNamespaceMakesContainerRootAnUnprivilegedHostId() throws Exception {
    ContainerRunner.Spec plain = spec("userns", "id -u > /out/uid; cat /proc/self/uid_map > /out/map;"
        + " stat -c %u /etc/passwd > /out/owner; echo x > /root/mine;"
        + " mknod /root/dev c 1 3 2> /out/mknod || echo refused >> /out/mknod", Limits.NONE, false);
    ContainerRunner.Spec withNs = new ContainerRunner.Spec(plain.name(), plain.image(),
        plain.command(), plain.env(), null, null, plain.hostname(), plain.network(),
        plain.volumes(), false, false, false, Limits.NONE,
        ContainerRunner.UserNamespace.DEFAULT, true);
    io.strata.layers.fs.Posix.chmod(out, 0777); // host uid 100000 writes the results here
    assertThat(new ContainerRunner(store, s -> { }).run(withNs)).isZero();
    assertThat(read("uid")).isEqualTo("0");
    assertThat(read("map").split("\\s+")).containsExactly("0", "100000", "65536");
    assertThat(read("owner")).isEqualTo("0"); // the image's root-owned files stay root's inside
    assertThat(read("mknod")).contains("refused");
    Containers c = new Containers(store.root(), s -> { });
    // On disk the upper holds what container root wrote under the image's own ids.
    assertThat(Files.getAttribute(c.upperOf("userns").resolve("root/mine"), "unix:uid"))
        .isEqualTo(0);
    c.remove("userns");
  }

  /**
   * Issue 16, item 7: -v HOSTDIR:DIR:ro never started (the read-only remount went to the
   * directory below the bind); -v FILE:PATH was refused. Read-only holds for what is mounted
   * below the volume too, and in a user namespace.
   */
  @Test
  void readOnlyVolumesAndFileVolumes(@TempDir Path host) throws Exception {
    Path dir = Files.createDirectories(host.resolve("dir"));
    Files.writeString(dir.resolve("in"), "host data");
    Path sub = Files.createDirectories(dir.resolve("sub"));
    Path subSrc = Files.createDirectories(host.resolve("sub-src"));
    Path file = Files.writeString(host.resolve("file"), "file data");
    Path roFile = Files.writeString(host.resolve("ro-file"), "ro data");
    io.strata.layers.fs.Posix.chmod(host, 0777);
    for (Path p : List.of(dir, subSrc)) {
      io.strata.layers.fs.Posix.chmod(p, 0777);
    }
    assertThat(new ProcessBuilder("mount", "--bind", subSrc.toString(), sub.toString())
        .inheritIO().start().waitFor()).isZero();
    try {
      for (ContainerRunner.UserNamespace ns : new ContainerRunner.UserNamespace[] {null,
          ContainerRunner.UserNamespace.DEFAULT}) {
        io.strata.layers.fs.Trees.deleteRecursively(out);
        Files.createDirectories(out);
        io.strata.layers.fs.Posix.chmod(out, 0777);
        List<String> volumes = List.of(out + ":/out", dir + ":/ro:ro", file + ":/etc/app.conf",
            roFile + ":/new/dir/ro.conf:ro");
        String script = "cat /ro/in > /out/read; (echo x > /ro/new) 2> /out/write-ro;"
            + " echo $? >> /out/write-ro; (echo x > /ro/sub/new) 2> /out/write-sub;"
            + " echo $? >> /out/write-sub; cat /etc/app.conf > /out/file;"
            + " echo changed > /etc/app.conf; cat /new/dir/ro.conf > /out/ro-file;"
            + " (echo x > /new/dir/ro.conf) 2> /out/write-ro-file; echo $? >> /out/write-ro-file";
        ContainerRunner.Spec spec = new ContainerRunner.Spec("vol", "busybox:test",
            List.of("/bin/sh", "-c", script), List.of(), null, null, "box", "none", volumes,
            false, false, true, Limits.NONE, ns, true);
        assertThat(new ContainerRunner(store, System.err::println).run(spec))
            .as("userns " + ns).isZero();
        assertThat(read("read")).isEqualTo("host data");
        assertThat(read("write-ro")).contains("Read-only file system").endsWith("1");
        assertThat(read("write-sub")).as("a mount below the volume")
            .contains("Read-only file system").endsWith("1");
        assertThat(read("file")).isEqualTo(ns == null ? "file data" : "changed");
        assertThat(read("ro-file")).isEqualTo("ro data");
        assertThat(read("write-ro-file")).contains("Read-only file system").endsWith("1");
        assertThat(Files.readString(file).trim()).isEqualTo("changed");
        assertThat(Files.exists(dir.resolve("new"))).isFalse();
        assertThat(Files.readString(roFile)).isEqualTo("ro data");
        io.strata.layers.fs.Posix.chmod(file, 0666); // the user-namespaced root writes it next
      }
    } finally {
      new ProcessBuilder("umount", sub.toString()).inheritIO().start().waitFor();
    }
  }

  @Test
  void exitCodesAndSignalsPropagate() throws Exception {
    assertThat(run("e1", "exit 3")).isEqualTo(3);
    assertThat(new ContainerRunner(store, s -> { }).run(spec("e2", "kill -TERM $$; sleep 5",
        Limits.NONE, true))).isEqualTo(143);
    assertThat(run("e3", "/no/such/command")).isEqualTo(127);
  }

  @Test
  void aMemoryHogIsOomKilledAndReported() throws Exception {
    int code = new ContainerRunner(store, s -> { }).run(spec("oom",
        "x=a; while true; do x=$x$x$x$x; done", new Limits(32L << 20, -1, -1, 100_000, -1), false));
    assertThat(code).isEqualTo(137);
    ContainerState s = new Containers(store.root(), m -> { }).read("oom");
    assertThat(s.reason()).isEqualTo("out of memory: limit 32 MiB");
    assertThat(s.usage().oomKills()).isPositive();
  }

  @Test
  void aForkBombIsStoppedByThePidsLimit() throws Exception {
    int code = new ContainerRunner(store, s -> { }).run(spec("pids",
        "exec 2> /out/err; i=0; while [ $i -lt 60 ]; do sleep 2 & i=$((i+1)); done; wait",
        new Limits(-1, -1, -1, 100_000, 16), false));
    // The shell reports that it cannot fork (and busybox's ash gives up with status 2).
    assertThat(code).isIn(0, 2);
    assertThat(read("err")).contains("fork");
    assertThat(new Containers(store.root(), m -> { }).read("pids").usage().pidsLimitHits())
        .isPositive();
  }

  /**
   * Issue 16, item 10: --pids-limit 1 failed with exit 125, since the helper's own monitor (and,
   * under --userns, the namespace's maker) counted against it. Now only the container's
   * processes are in its cgroup: a limit of one runs one process, and a second fork fails.
   */
  @Test
  void aPidsLimitOfOneRunsOneProcess() throws Exception {
    for (ContainerRunner.UserNamespace ns : new ContainerRunner.UserNamespace[] {null,
        ContainerRunner.UserNamespace.DEFAULT}) {
      Limits one = new Limits(-1, -1, -1, 100_000, 1);
      ContainerRunner.Spec alone = new ContainerRunner.Spec("one", "busybox:test",
          List.of("/bin/true"), List.of(), null, null, "box", "none", List.of(), false, false,
          true, one, ns, true);
      assertThat(new ContainerRunner(store, System.err::println).run(alone)).as("userns " + ns)
          .isZero();
      ContainerRunner.Spec forks = new ContainerRunner.Spec("two", "busybox:test",
          List.of("/bin/sh", "-c", "/bin/true; echo $?"), List.of(), null, null, "box", "none",
          List.of(), false, false, true, one, ns, true);
      assertThat(new ContainerRunner(store, System.err::println).run(forks)).as("userns " + ns)
          .isNotZero();
    }
  }

  /**
   * PID 1 runs nothing of the container's before it is in every one of the container's
   * cgroups (it joins them itself; under a user namespace the monitor moves it while it
   * waits). The command's first process and its child read where they are. A version in
   * which the monitor moved PID 1 while PID 1 set its root up failed here under the user
   * namespace when PID 1 did not wait for the move.
   */
  @Test
  void theContainersFirstProcessRunsInItsCgroups() throws Exception {
    int hierarchies = Files.isDirectory(Path.of("/sys/fs/cgroup/memory/strata")) ? 5 : 1;
    for (ContainerRunner.UserNamespace ns : new ContainerRunner.UserNamespace[] {null,
        ContainerRunner.UserNamespace.DEFAULT}) {
      String where = "/strata/ctr-where$";
      ContainerRunner.Spec s = new ContainerRunner.Spec("where", "busybox:test",
          List.of("/bin/sh", "-c", "[ $(grep -c '" + where + "' /proc/1/cgroup) = " + hierarchies
              + " ] || exit 3; [ $(grep -c '" + where + "' /proc/self/cgroup) = " + hierarchies
              + " ] || exit 4"),
          List.of(), null, null, "box", "none", List.of(), false, false, true, Limits.NONE, ns,
          true);
      assertThat(new ContainerRunner(store, System.err::println).run(s)).as("userns " + ns)
          .isZero();
    }
  }

  @Test
  void aCpuQuotaShowsAsThrottling() throws Exception {
    int code = new ContainerRunner(store, s -> { }).run(spec("cpu",
        "end=$(( $(date +%s) + 2 )); while [ $(date +%s) -lt $end ]; do :; done",
        new Limits(-1, -1, 10_000, 100_000, -1), false));
    assertThat(code).isZero();
    assertThat(new Containers(store.root(), m -> { }).read("cpu").usage().throttledPeriods())
        .isPositive();
  }

  @Test
  void theNextCommandCleansUpAfterAStrataThatWasKilled() throws Exception {
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    Process strata = new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"),
        "io.strata.cli.Main", "--root", store.root().toString(), "run", "--name", "orphan",
        "busybox:test", "sleep", "60").redirectErrorStream(true)
        .redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
    Containers c = new Containers(store.root(), s -> { });
    try {
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
      while (!Files.exists(c.dirOf("orphan").resolve("state.json"))
          || !c.read("orphan").status().equals(ContainerState.RUNNING)) {
        assertThat(strata.isAlive()).isTrue();
        assertThat(System.nanoTime()).isLessThan(deadline);
        Thread.sleep(20);
      }
    } finally {
      strata.destroyForcibly(); // SIGKILL: no hook runs, the FUSE daemon dies with the JVM
      strata.waitFor(30, TimeUnit.SECONDS);
    }
    long helper = c.read("orphan").helperPid();
    ContainerState s = c.list().stream().filter(x -> x.name().equals("orphan")).findFirst()
        .orElseThrow();
    assertThat(s.status()).isEqualTo(ContainerState.EXITED);
    assertThat(s.reason()).contains("strata died");
    assertThat(running(helper)).as("helper " + helper + " still running").isFalse();
    store.gc(); // the pin of the killed strata no longer counts, and goes
    assertThat(store.root().resolve("pins/ctr-orphan.json")).doesNotExist();
    c.remove("orphan");
  }

  /** Alive and not a zombie (this sandbox's PID 1 does not reap orphans). */
  private static boolean running(long pid) throws Exception {
    Path stat = Path.of("/proc/" + pid + "/stat");
    if (!Files.exists(stat)) {
      return false;
    }
    String s = Files.readString(stat);
    return !s.substring(s.lastIndexOf(')') + 2).startsWith("Z");
  }

  @Test
  void killFromOutsideEndsTheContainerAndPsShowsIt() throws Exception {
    ContainerRunner runner = new ContainerRunner(store, s -> { });
    CompletableFuture<Integer> running = CompletableFuture.supplyAsync(() -> {
      try {
        return runner.run(spec("victim", "sleep 60", Limits.NONE, false));
      } catch (Exception e) {
        throw new RuntimeException(e);
      }
    });
    Containers c = new Containers(store.root(), s -> { });
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (true) {
      List<ContainerState> all = new ArrayList<>(c.list());
      if (all.stream().anyMatch(s -> s.name().equals("victim")
          && s.status().equals(ContainerState.RUNNING))) {
        break;
      }
      assertThat(System.nanoTime()).isLessThan(deadline);
      Thread.sleep(20);
    }
    var psCli = io.strata.cli.Main.commandLine();
    var oldOut = System.out;
    java.io.ByteArrayOutputStream psOut = new java.io.ByteArrayOutputStream();
    System.setOut(new java.io.PrintStream(psOut, true));
    try {
      assertThat(psCli.execute("--root", store.root().toString(), "ps")).isZero();
    } finally {
      System.setOut(oldOut);
    }
    assertThat(psOut.toString()).contains("victim").contains("running");
    assertThat(io.strata.cli.Main.commandLine().execute("--root", store.root().toString(),
        "kill", "victim")).isZero(); // SIGKILL by default
    assertThat(running.get(30, TimeUnit.SECONDS)).isEqualTo(137);

    ContainerState s = c.read("victim");
    assertThat(s.status()).isEqualTo(ContainerState.EXITED);
    assertThat(s.usage().oomKills()).isZero();
    assertThat(s.reason()).isNull(); // not reported as out of memory
    assertThat(io.strata.cli.Main.commandLine().execute("--root", store.root().toString(),
        "rm", "victim")).isZero();
    assertThat(Files.exists(c.dirOf("victim"))).isFalse();
  }
}
