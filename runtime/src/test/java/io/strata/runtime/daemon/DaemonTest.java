package io.strata.runtime.daemon;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.strata.layers.base.Json;
import io.strata.layers.fs.Mounts;
import io.strata.layers.fs.Posix;
import io.strata.runtime.container.TestImages;
import io.strata.runtime.container.TestUser;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The daemon as people meet it: through the C client, as root and as another user, with the
 * faults a host sees (a FUSE connection aborted, an upper out of space, a lower removed, the
 * daemon itself killed with containers running) and fifty mounts at once. Each test starts
 * daemons of its own on private sockets and stops them; the rest of the suite runs once more
 * against a daemon (TestDaemon, the surefire execution "daemon").
 */
class DaemonTest {
  @TempDir static Path shared;
  static TestUser user;
  static Path client;
  static Path classpath;
  static Path store;
  static final List<Daemon> daemons = new ArrayList<>();

  /** A daemon this test started. */
  record Daemon(Process process, Path socket, Path log) {
    String logText() throws IOException {
      return Files.exists(log) ? Files.readString(log) : "";
    }
  }

  /** What a command printed and its status. */
  record Result(int code, String out, String err) {
    String output() {
      return out + err;
    }
  }

  @BeforeAll
  static void setUp() throws Exception {
    Posix.chmod(shared, 0755); // the user runs programs from here
    Path bin = Files.createDirectories(shared.resolve("bin"));
    client = bin.resolve("strata");
    Files.copy(Path.of("target/native/strata-client"), client);
    Posix.chmod(client, 0755);
    classpath = readableClasspath(Files.createDirectories(shared.resolve("cp")));
    Path root = TestImages.busyboxRoot(shared.resolve("bb"));
    store = shared.resolve("store");
    Path tar = TestImages.tar(root, shared.resolve("bb.tar"));
    Result imported = inProcess("--root", store.toString(), "import", tar.toString(), "--name",
        "bb:d");
    assertThat(imported.code()).as(imported.output()).isZero();
    user = TestUser.create();
  }

  @AfterEach
  void stopDaemons() throws Exception {
    List<String> logs = new ArrayList<>();
    for (Daemon d : daemons) {
      d.process().destroy();
      if (!d.process().waitFor(30, TimeUnit.SECONDS)) {
        d.process().destroyForcibly().waitFor();
      }
      logs.add(d.logText());
    }
    daemons.clear();
    // every daemon's warm-up played a mount's requests (as root and as the user) without a
    // failure (Rehearsal logs what failed)
    assertThat(logs).noneMatch(l -> l.contains("rehearsal of a mount's requests"));
    for (Mounts.Entry e : Mounts.table()) {
      if (e.mountpoint().startsWith(shared)) {
        Mounts.unmount(e.mountpoint(), true);
      }
    }
  }

  @AfterAll
  static void removeUser() throws Exception {
    if (user != null) {
      user.close();
    }
    assertThat(Mounts.table()).noneMatch(e -> e.mountpoint().startsWith(shared));
  }

  // ------------------------------------------------------------------------- who may use it

  @Test
  void theRootDaemonServesRootOnlyWhateverTheSocketsMode() throws Exception {
    Path dir = Files.createDirectories(shared.resolve("root-daemon"));
    Daemon d = start(dir.resolve("strata.sock"), List.of(), Map.of());
    // the modes would let anyone in: the peer's credentials are what keeps the user out
    Posix.chmod(dir, 0755);
    Posix.chmod(d.socket(), 0666);
    TestUser.Result r = user.sh("STRATA_SOCKET=" + d.socket() + " " + client + " --root "
        + store + " images");
    assertThat(r.code()).as(r.output()).isEqualTo(DaemonServer.REFUSED);
    assertThat(r.output()).contains("refused a client running as " + user.name)
        .contains("serves root only");
    Result status = run(d, "daemon", "status", "--format", "json");
    assertThat(status.code()).as(status.output()).isZero();
    JsonNode s = Json.MAPPER.readTree(status.output());
    assertThat(s.path("clientsRefused").asLong()).isEqualTo(1);
    assertThat(s.path("pid").asLong()).isEqualTo(d.process().pid());
    // and root's own commands are served
    assertThat(run(d, "--root", store.toString(), "images").output()).contains("bb");
  }

  @Test
  void aUsersCommandsRunInTheirOwnDaemonAsThemselves() throws Exception {
    Path xdg = Files.createDirectories(shared.resolve("xdg"));
    Path home = Files.createDirectories(shared.resolve("home/work"));
    for (Path p : List.of(xdg, home.getParent(), home)) {
      Posix.lchown(p, user.uid, user.gid);
    }
    Posix.chmod(xdg, 0700);
    Files.copy(shared.resolve("bb.tar"), home.resolve("bb.tar"));
    Posix.lchown(home.resolve("bb.tar"), user.uid, user.gid);
    String env = "XDG_RUNTIME_DIR=" + xdg + " HOME=" + home.getParent();
    Daemon d = startAsUser(xdg.resolve("strata/strata.sock"), env, xdg);

    // the user's client finds the user's daemon by itself, never root's
    TestUser.Result status = user.sh(env + " " + client + " daemon status --format json");
    assertThat(status.code()).as(status.output()).isZero();
    JsonNode s = Json.MAPPER.readTree(status.output());
    assertThat(s.path("pid").asLong()).isEqualTo(d.process().pid());
    assertThat(s.path("socket").asText()).isEqualTo(xdg.resolve("strata/strata.sock").toString());

    // relative paths from the user's working directory; what it makes is the user's
    TestUser.Result imported = user.sh("cd " + home + " && " + env + " " + client
        + " --root mystore import bb.tar --name mine:1");
    assertThat(imported.code()).as(imported.output()).isZero();
    try (Stream<Path> all = Files.walk(home.resolve("mystore"))) {
      for (Path p : all.toList()) {
        assertThat((Integer) Files.getAttribute(p, "unix:uid", java.nio.file.LinkOption.NOFOLLOW_LINKS))
            .as(p.toString()).isEqualTo(user.uid);
      }
    }

    // root's store stays out of reach: nothing read, nothing written
    List<String> before = listing(store);
    TestUser.Result images = user.sh(env + " " + client + " --root " + store + " images");
    assertThat(images.code()).as(images.output()).isNotZero();
    assertThat(images.output()).contains("permission denied (the store is another user's")
        .doesNotContain("unexpected");
    TestUser.Result write = user.sh("cd " + home + " && " + env + " " + client + " --root "
        + store + " import bb.tar --name stolen:1");
    assertThat(write.code()).as(write.output()).isNotZero();
    TestUser.Result rm = user.sh(env + " " + client + " --root " + store + " rmi bb:d");
    assertThat(rm.code()).as(rm.output()).isNotZero();
    assertThat(listing(store)).isEqualTo(before);
    assertThat(inProcess("--root", store.toString(), "images").output()).contains("bb")
        .doesNotContain("stolen");
  }

  /**
   * With no daemon the client runs a JVM: a daemon, the snapshotter and a mount served in the
   * foreground with the daemon's settings (both compilers, the small heap, glibc's arenas,
   * jnr's generated bindings), any other command with those for a quick start (C1, jnr bound
   * by reflection).
   */
  @Test
  void theClientStartsJvmsWithTheSettingsOfTheirRole() throws Exception {
    Path java = shared.resolve("bin/fake-java");
    Files.writeString(java, "#!/bin/sh\necho \"MALLOC_ARENA_MAX=$MALLOC_ARENA_MAX $*\"\n");
    Posix.chmod(java, 0755);
    java.util.function.Function<List<String>, String> launch = args -> {
      try {
        List<String> cmd = new ArrayList<>(List.of(client.toString()));
        cmd.addAll(args);
        ProcessBuilder pb = new ProcessBuilder(cmd);
        pb.environment().put("STRATA_JAVA", java.toString());
        pb.environment().put("STRATA_JAR", "/nonexistent/strata.jar");
        pb.environment().put("STRATA_SOCKET", shared.resolve("nobody-here.sock").toString());
        pb.environment().remove("MALLOC_ARENA_MAX");
        return finish(pb, cmd).out();
      } catch (Exception e) {
        throw new AssertionError(e);
      }
    };
    String daemon = launch.apply(List.of("daemon", "--socket", "/tmp/x.sock"));
    assertThat(daemon).contains("MALLOC_ARENA_MAX=2").contains("-Xms8m")
        .doesNotContain("TieredStopAtLevel").endsWith("daemon --socket /tmp/x.sock\n");
    String status = launch.apply(List.of("daemon", "--socket", "/tmp/x.sock", "status"));
    assertThat(status).contains("-XX:TieredStopAtLevel=1").doesNotContain("-Xms8m")
        .contains("MALLOC_ARENA_MAX= ");
    assertThat(launch.apply(List.of("images"))).contains("-XX:TieredStopAtLevel=1")
        .contains("-Djnr.ffi.asm.enabled=false")
        .contains("-jar /nonexistent/strata.jar images");
    // commands that serve for long in their JVM get the daemon's settings
    for (List<String> serves : List.of(List.of("snapshotter", "--address", "/tmp/s.sock"),
        List.of("--root", "/tmp/r", "overlay", "-f", "-o", "lowerdir=/l", "/m"),
        List.of("overlay", "-d", "-o", "lowerdir=/l", "/m"),
        List.of("mount", "--foreground", "img", "/m"))) {
      assertThat(launch.apply(serves)).as(String.join(" ", serves)).contains("-Xms8m")
          .doesNotContain("TieredStopAtLevel").doesNotContain("jnr.ffi.asm");
    }
    assertThat(launch.apply(List.of("mount", "-o", "ro", "img", "/m"))).as("a mount that"
        + " returns (it relaunches its server)").contains("-XX:TieredStopAtLevel=1");
  }

  /**
   * A daemon mounts in its own namespaces, so a client in a user namespace (root inside rootless
   * podman's, where podman runs its mount program) never hands it a command: the same client
   * that connects from the host's namespace runs the command in a JVM of its own there.
   */
  @Test
  void aClientInAUserNamespaceRunsTheCommandItself() throws Exception {
    Path fakeJava = shared.resolve("bin/fake-java-ns");
    Files.writeString(fakeJava, "#!/bin/sh\necho \"jvm $*\"\n");
    Posix.chmod(fakeJava, 0755);
    Path sock = shared.resolve("listening.sock");
    Files.deleteIfExists(sock);
    try (var server = java.nio.channels.ServerSocketChannel.open(
        java.net.StandardProtocolFamily.UNIX)) {
      server.bind(java.net.UnixDomainSocketAddress.of(sock));
      server.configureBlocking(false);
      java.util.function.Function<List<String>, ProcessBuilder> launch = prefix -> {
        List<String> cmd = new ArrayList<>(prefix);
        cmd.addAll(List.of(client.toString(), "images"));
        ProcessBuilder pb = new ProcessBuilder(cmd);
        pb.environment().put("STRATA_JAVA", fakeJava.toString());
        pb.environment().put("STRATA_JAR", "/nonexistent/strata.jar");
        pb.environment().put("STRATA_SOCKET", sock.toString());
        return pb;
      };
      ProcessBuilder ns = launch.apply(List.of("unshare", "--user", "--map-root-user"));
      Result inNamespace = finish(ns, ns.command());
      assertThat(inNamespace.out()).as(inNamespace.err()).startsWith("jvm ")
          .endsWith(" -jar /nonexistent/strata.jar images\n");
      assertThat(server.accept()).as("the client in a user namespace connected").isNull();
      // the control: from the host's namespace the same client connects
      Process onHost = launch.apply(List.of()).redirectErrorStream(true).start();
      try {
        java.nio.channels.SocketChannel accepted = null;
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (accepted == null && System.nanoTime() < deadline) {
          accepted = server.accept();
          Thread.sleep(10);
        }
        assertThat(accepted).as("the client on the host connected").isNotNull();
        accepted.close();
        assertThat(onHost.waitFor(30, TimeUnit.SECONDS)).isTrue();
      } finally {
        onHost.destroyForcibly();
      }
    }
  }

  /** contrib/systemd: strata.socket starts the daemon with its socket on stdin. */
  @Test
  void aSocketActivatedDaemonServesTheFirstCommand() throws Exception {
    org.junit.jupiter.api.Assumptions.assumeTrue(
        Files.isExecutable(Path.of("/usr/bin/systemd-socket-activate")),
        "systemd-socket-activate (Debian's systemd) is not installed");
    Path sock = Files.createDirectories(shared.resolve("activated")).resolve("strata.sock");
    // the socket made and listened on by another process, handed over as stdin on the first
    // connection, as systemd does with StandardInput=socket
    List<String> cmd = new ArrayList<>(List.of("systemd-socket-activate", "--inetd", "-l",
        sock.toString(), java(), "-XX:+UseSerialGC", "-cp", classpath.resolve("*") + ":"
            + classpath.resolve("classes"), "io.strata.cli.Main", "daemon"));
    Path log = Files.createTempFile(shared, "activated", ".log");
    Process activator = new ProcessBuilder(cmd).redirectErrorStream(true)
        .redirectOutput(log.toFile()).start();
    Daemon d = new Daemon(activator, sock, log);
    daemons.add(d);
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (!Files.exists(sock)) {
      assertThat(activator.isAlive()).as(d.logText()).isTrue();
      assertThat(System.nanoTime()).as(d.logText()).isLessThan(deadline);
      Thread.sleep(20);
    }
    Result first = run(d, "--root", store.toString(), "images");
    assertThat(first.code()).as(first.output() + d.logText()).isZero();
    assertThat(first.out()).contains("bb");
    JsonNode s = Json.MAPPER.readTree(run(d, "daemon", "status", "--format", "json").out());
    assertThat(s.path("socket").asText()).isEqualTo(sock.toString());
    // systemd-socket-activate execs the JVM: the daemon is the process it started
    assertThat(s.path("pid").asLong()).isEqualTo(activator.pid());
  }

  // ------------------------------------------------------------------------- faults

  boolean fusectlMounted;

  /**
   * Without a daemon, a background mount's command relaunches itself as the mount's server
   * (`overlay -f` in a JVM of its own) and waits for that server's ready line. A daemon that
   * comes up in between (its socket activated, an administrator starting it) took the server's
   * command as a foreground mount tied to that JVM, its ready line without the starter's token:
   * the starter waited its whole minute and failed (found by a stress run that killed and
   * restarted the daemon under mounts). The server's command line as Background starts it,
   * with a daemon answering on the socket it is told about, serves in its own process.
   */
  @Test
  void aRelaunchedMountServerServesItselfWhenADaemonAnswers() throws Exception {
    Path base = Files.createDirectories(shared.resolve("relaunch"));
    Daemon d = start(base.resolve("strata.sock"), List.of(), Map.of());
    Path lower = lowerWithF(base);
    Path mp = Files.createDirectories(base.resolve("mnt"));
    Path out = base.resolve("server.log");
    System.setProperty(io.strata.union.mount.Background.MAIN_PROPERTY,
        io.strata.cli.Main.class.getName());
    ProcessBuilder pb = new ProcessBuilder(io.strata.union.mount.Background.command(List.of(
        "overlay", "-f", "-o", "lowerdir=" + lower + ",upperdir="
            + Files.createDirectories(base.resolve("upper")) + ",workdir="
            + Files.createDirectories(base.resolve("work")), mp.toString())))
        .redirectErrorStream(true).redirectOutput(out.toFile());
    pb.environment().put("STRATA_SOCKET", d.socket().toString());
    pb.environment().put("STRATA_READY_TOKEN", "the-starters-token");
    Process server = pb.start();
    try {
      awaitContent(out, io.strata.union.mount.Background.readyLine(mp, "the-starters-token")
          + "\n", server);
      assertThat(mp.resolve("f")).hasContent("lower");
      assertThat(d.logText()).doesNotContain(mp.toString());
    } finally {
      if (Mounts.isMountpoint(mp)) {
        Mounts.unmount(mp, false);
      }
      assertThat(server.waitFor(30, TimeUnit.SECONDS)).isTrue();
    }
  }

  /**
   * A foreground mount ends with its command, here its client killed (a hangup) while a
   * process still has its working directory in the mount. The unmount finds it busy; the mount
   * is detached instead, as libfuse does when its server ends, and served until that process
   * lets it go. Before, it stayed mounted, served by a command whose client was gone, with
   * nothing left to unmount it.
   */
  @Test
  void aForegroundMountInUseIsDetachedWhenItsClientHangsUp() throws Exception {
    Path base = Files.createDirectories(shared.resolve("detach"));
    Daemon d = start(base.resolve("strata.sock"), List.of(), Map.of());
    Path lower = lowerWithF(base);
    Path mp = Files.createDirectories(base.resolve("mnt"));
    ProcessBuilder pb = new ProcessBuilder(client.toString(), "overlay", "-f", "-o", "lowerdir="
        + lower + ",upperdir=" + Files.createDirectories(base.resolve("upper")) + ",workdir="
        + Files.createDirectories(base.resolve("work")), mp.toString())
        .redirectErrorStream(true).redirectOutput(base.resolve("client.log").toFile());
    pb.environment().put("STRATA_SOCKET", d.socket().toString());
    Process fg = pb.start();
    Process user = null;
    try {
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (!Mounts.isFuseMountpoint(mp)) {
        assertThat(fg.isAlive()).as(Files.readString(base.resolve("client.log"))).isTrue();
        assertThat(System.nanoTime()).isLessThan(deadline);
        Thread.sleep(20);
      }
      user = new ProcessBuilder("sh", "-c", "while sleep 0.05; do cat f > /dev/null || exit 3;"
          + " done").directory(mp.toFile()).start();
      Thread.sleep(200);
      fg.destroyForcibly().waitFor(); // the client's end: the daemon's command gets a hangup
      deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (Mounts.isMountpoint(mp)) {
        assertThat(System.nanoTime()).as("still mounted: " + d.logText()).isLessThan(deadline);
        Thread.sleep(20);
      }
      awaitContent(d.log(), "detached " + mp, d.process()); // logged just after the detach
      Thread.sleep(300);
      assertThat(user.isAlive()).as("the mount's user reads on through the detached mount")
          .isTrue();
      user.destroy();
      user.waitFor();
      deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (!run(d, "daemon", "status").out().contains("0 mounts served")) {
        assertThat(System.nanoTime()).as("the command did not end: " + d.logText())
            .isLessThan(deadline);
        Thread.sleep(50);
      }
    } finally {
      fg.destroyForcibly();
      if (user != null) {
        user.destroyForcibly();
      }
    }
  }

  @Test
  void oneMountsTroubleLeavesTheOthersServing() throws Exception {
    Daemon d = start(shared.resolve("faults/strata.sock"), List.of(), Map.of());
    Path base = Files.createDirectories(shared.resolve("faults"));
    Path lower = lowerWithF(base);
    Files.createDirectories(lower.resolve("d"));
    Path doomedLower = Files.createDirectories(base.resolve("doomed-lower/sub"));
    Files.writeString(doomedLower.resolve("g"), "soon gone\n");
    Path small = Files.createDirectories(base.resolve("small"));
    sh("mount -t tmpfs -o size=1m strata-test " + small);
    try {
      Path healthy = overlay(d, base, "healthy", lower, base);
      Path aborted = overlay(d, base, "aborted", lower, base);
      Path full = overlay(d, base, "full", lower, small);
      Path orphan = overlay(d, base, "orphan", doomedLower.getParent(), base);

      // a FUSE connection aborted by hand (fusectl mounted for it if the host has not)
      long dev = devOf(aborted);
      if (!Files.exists(Path.of("/sys/fs/fuse/connections/" + dev))) {
        sh("mount -t fusectl fusectl /sys/fs/fuse/connections");
        fusectlMounted = true;
      }
      Files.writeString(Path.of("/sys/fs/fuse/connections/" + dev + "/abort"), "1");
      assertThat(readable(aborted.resolve("f"))).isFalse();
      assertServes(healthy);

      // an upper out of space: the writer hears ENOSPC, the mount and the others go on
      byte[] mib = new byte[1 << 20];
      try {
        for (int i = 0; i < 4; i++) {
          Files.write(full.resolve("big" + i), mib);
        }
        throw new AssertionError("4 MiB fit in a 1 MiB upper");
      } catch (IOException expected) {
        assertThat(expected.getMessage()).containsIgnoringCase("no space");
      }
      assertThat(full.resolve("f")).hasContent("lower");
      assertServes(healthy);

      // its lower removed under it
      sh("rm -rf " + doomedLower.getParent());
      assertThat(readable(orphan.resolve("sub/g"))).isFalse();
      assertServes(healthy);

      JsonNode status = Json.MAPPER.readTree(run(d, "daemon", "status", "--format", "json")
          .output());
      assertThat(status.path("mounts").size()).isGreaterThanOrEqualTo(3);
      for (Path mp : List.of(healthy, full, orphan)) {
        Result u = run(d, "--root", store.toString(), "umount", mp.toString());
        assertThat(u.code()).as(mp + ": " + u.output()).isZero();
      }
      // the aborted one: its serving side ended; it is gone, or umount clears it
      if (Mounts.isMountpoint(aborted)) {
        run(d, "--root", store.toString(), "umount", aborted.toString());
      }
      assertThat(Mounts.table()).noneMatch(e -> e.mountpoint().startsWith(base)
          && e.fsType().startsWith("fuse"));
      assertThat(Json.MAPPER.readTree(run(d, "daemon", "status", "--format", "json").output())
          .path("mounts")).isEmpty();
    } finally {
      sh("umount -l " + small + " || true");
      if (fusectlMounted) {
        sh("umount /sys/fs/fuse/connections");
      }
    }
  }

  @Test
  void aKilledDaemonLosesNothingFsyncedAndRmCleansUp() throws Exception {
    Path sock = shared.resolve("killed/strata.sock");
    Daemon d = start(sock, List.of(), Map.of());
    List<Process> clients = new ArrayList<>();
    List<Path> outs = new ArrayList<>();
    try {
      for (int i = 0; i < 8; i++) {
        Path out = shared.resolve("killed/c" + i + ".out");
        outs.add(out);
        ProcessBuilder pb = new ProcessBuilder(client.toString(), "--root", store.toString(),
            "run", "--name", "k" + i, "bb:d", "sh", "-c", "echo data" + i + " > /f && sync /f"
                + " && echo ready && exec sleep 600")
            .redirectErrorStream(true).redirectOutput(out.toFile());
        pb.environment().put("STRATA_SOCKET", sock.toString());
        clients.add(pb.start());
      }
      for (int i = 0; i < 8; i++) {
        awaitContent(outs.get(i), "ready", clients.get(i));
      }
      d.process().destroyForcibly().waitFor(); // SIGKILL
      for (Process c : clients) {
        assertThat(c.waitFor(30, TimeUnit.SECONDS)).isTrue();
        assertThat(c.exitValue()).isNotZero();
      }
      assertThat(Files.readString(outs.get(0))).contains("the daemon went away");

      // ps (here with no daemon) says what happened, rm clears each
      Result ps = inProcess("--root", store.toString(), "ps", "--format", "json");
      assertThat(ps.code()).as(ps.output()).isZero();
      JsonNode rows = Json.MAPPER.readTree(ps.out());
      assertThat(rows).hasSize(8);
      for (JsonNode row : rows) {
        assertThat(row.path("status").asText()).isEqualTo("exited");
        assertThat(row.path("reason").asText()).contains("died while the container ran");
      }
      for (int i = 0; i < 8; i++) {
        Path upper = store.resolve("containers/k" + i + "/diff/upper/f");
        assertThat(upper).as("fsynced before the kill").hasContent("data" + i);
        Result rm = inProcess("--root", store.toString(), "rm", "k" + i);
        assertThat(rm.code()).as(rm.output()).isZero();
        assertThat(Path.of("/sys/fs/cgroup/memory/strata/ctr-k" + i)).doesNotExist();
        assertThat(Path.of("/sys/fs/cgroup/pids/strata/ctr-k" + i)).doesNotExist();
      }
      assertThat(Mounts.table()).noneMatch(e -> e.mountpoint().startsWith(store));
      assertThat(processesMentioning("sleep 600")).isZero();

      // a new daemon starts on the dead one's socket and serves
      Daemon again = start(sock, List.of(), Map.of());
      assertThat(run(again, "--root", store.toString(), "ps").output())
          .doesNotContain("k0");
    } finally {
      for (Process c : clients) {
        c.destroyForcibly();
      }
      for (int i = 0; i < 8; i++) {
        inProcess("--root", store.toString(), "rm", "k" + i);
      }
    }
  }

  // ------------------------------------------------------------------------- restarts

  /** Works in {@code dir} (inside a mount) until {@code stop} exists, printing what failed. */
  static final String WORKER = String.join("\n",
      "import os, sys, time",
      "d, stop = sys.argv[1], sys.argv[2]",
      "os.chdir(d)",
      "held = os.open('f', os.O_RDONLY)",
      "i = 0",
      "while not os.path.exists(stop):",
      "    for what, step in (('read', lambda: open('f').read() == 'below\\n'),",
      "                       ('held', lambda: os.pread(held, 5, 0) == b'below'),",
      "                       ('bind', lambda: open('sub/b').read() == 'bound\\n'),",
      "                       ('list', lambda: 'f' in os.listdir('.')),",
      "                       ('write', lambda: open('log', 'a').write('%d\\n' % i) > 0)):",
      "        try:",
      "            if not step(): print('FAIL', what, i, flush=True)",
      "        except OSError as e:",
      "            print('FAIL', what, i, e, flush=True)",
      "    i += 1",
      "    print('tick', i, flush=True)",
      "    time.sleep(0.02)",
      "print('done', i, flush=True)");

  /**
   * Issue 18, beyond every peer: a daemon stopped with SIGTERM (an upgrade) hands its mounts
   * to strata-holder, and the next daemon on the socket takes them over. A process working in
   * the mount (its working directory there, a file held open, a bind mount inside it as a
   * container's /proc is, reads, listings and appends all the time) sees nothing fail across
   * two restarts; what it wrote is all there; the holder is gone once the mounts are taken,
   * and the last daemon unmounts as usual.
   */
  @Test
  void aRestartedDaemonTakesItsMountsOverAndTheirUsersSeeNothingFail() throws Exception {
    Path base = Files.createDirectories(shared.resolve("handover"));
    Path sock = base.resolve("strata.sock");
    Path bound = workerTree(base);
    Daemon d = start(sock, List.of(), Map.of());
    Path mp = overlay(d, base, "m", base.resolve("lower"), base);
    Files.writeString(mp.resolve("setuid"), "x");
    Posix.chmod(mp.resolve("setuid"), 04777);
    // and an image of the store, mounted with strata mount: its pin must hold throughout
    Path image = mountImage(d, base, "before the restarts\n");
    Path stop = base.resolve("stop");
    Path out = base.resolve("worker.out");
    Process worker = null;
    sh("mount --bind " + bound + " " + mp.resolve("d/sub"));
    try {
      worker = new ProcessBuilder("python3", "-c", WORKER, mp.resolve("d").toString(),
          stop.toString()).redirectErrorStream(true).redirectOutput(out.toFile()).start();
      awaitContent(out, "tick 20\n", worker);
      for (int restart = 1; restart <= 2; restart++) {
        d.process().destroy(); // SIGTERM
        assertThat(d.process().waitFor(60, TimeUnit.SECONDS)).isTrue();
        assertThat(d.logText()).contains("handed 2 mounts to the holder");
        List<Long> holders = pidsMentioning("strata-holder");
        assertThat(holders).hasSize(1);
        assertThat(inProcess("--root", store.toString(), "layers").output())
            .as("the image mount's pin stays while it is held").contains("mount-");
        d = start(sock, List.of(), Map.of());
        awaitContent(d.log(), "took over " + mp, d.process());
        awaitContent(d.log(), "took over " + image, d.process());
        assertThat(image.resolve("written")).hasContent("before the restarts");
        assertThat(image.resolve("bin/busybox")).exists();
        int ticks = ticks(out);
        awaitContent(out, "tick " + (ticks + 20) + "\n", worker);
        // the holder ends once taken from; the new daemon keeps the mounts with its own
        assertThat(pidsMentioning("strata-holder")).as("the holder ends once taken from")
            .doesNotContainAnyElementsOf(holders).hasSize(1);
      }
      // what the first INIT agreed to holds for the daemon that took over: it applies the
      // caller's umask (FUSE_DONT_MASK), and takes set-user-ID off at a write by a user
      // (FUSE_HANDLE_KILLPRIV_V2); both were the kernel's job with the flags off
      sh("cd " + mp + " && umask 077 && touch made-after");
      assertThat((int) Files.getAttribute(mp.resolve("made-after"), "unix:mode") & 07777)
          .isEqualTo(0600);
      sh("setpriv --reuid=65534 --regid=65534 --clear-groups sh -c 'printf y >&3' 3>>"
          + mp.resolve("setuid"));
      assertThat(mp.resolve("setuid")).hasContent("xy");
      assertThat((int) Files.getAttribute(mp.resolve("setuid"), "unix:mode") & 07777)
          .isEqualTo(0777);
      Files.writeString(stop, "");
      assertThat(worker.waitFor(60, TimeUnit.SECONDS)).isTrue();
      String said = Files.readString(out);
      assertThat(said).doesNotContain("FAIL").contains("done");
      int n = ticks(out);
      List<String> logged = Files.readAllLines(mp.resolve("d/log"));
      assertThat(logged).hasSize(n);
      assertThat(Files.readAllLines(base.resolve("upper-m/d/log"))).isEqualTo(logged);
    } finally {
      if (worker != null) {
        worker.destroyForcibly().waitFor();
      }
      sh("umount " + mp.resolve("d/sub") + " || umount -l " + mp.resolve("d/sub") + " || true");
    }
    Result u = run(d, "umount", mp.toString());
    assertThat(u.code()).as(u.output()).isZero();
    assertThat(Mounts.isMountpoint(mp)).isFalse();
    u = run(d, "--root", store.toString(), "umount", image.toString());
    assertThat(u.code()).as(u.output()).isZero();
    assertThat(Mounts.isMountpoint(image)).isFalse();
    assertThat(inProcess("--root", store.toString(), "layers").output()).doesNotContain("mount-");
  }

  /**
   * Issue 18, beyond every peer, for a crash: a daemon killed with SIGKILL (the OOM killer, a
   * fault of the JVM) leaves its strata-overlay and strata mount mounts to the holder it kept
   * them with while it served them, and the next daemon takes them over from their last
   * checkpoint. A process working in the mount (as in the restart test: its working directory
   * there, a file held open, a bind mount inside) sees nothing fail; a file fsynced before the
   * kill keeps its bytes; and names changed after the last checkpoint lead to what they are
   * now, not to the file the checkpoint knew under them.
   */
  @Test
  void aKilledDaemonsMountsAreTakenOverFromTheirCheckpoint() throws Exception {
    Path base = Files.createDirectories(shared.resolve("crash"));
    Path sock = base.resolve("strata.sock");
    Path bound = workerTree(base);
    Files.writeString(base.resolve("lower/d/old"), "old name\n");
    byte[] big = new byte[300_000]; // passed through (not a small file served from the cache)
    new java.util.Random(18).nextBytes(big);
    Files.write(base.resolve("lower/d/big"), big);
    // checkpoints only when the list of mounts changes: what the test does after the last one
    // is what a checkpoint missed
    String[] options = {"--checkpoint-interval", "3600000"};
    Daemon d = start(sock, List.of(), Map.of(), options);
    Path mp = overlay(d, base, "m", base.resolve("lower"), base);
    Path image = mountImage(d, base, "before the crash\n");
    Path stop = base.resolve("stop");
    Path out = base.resolve("worker.out");
    Process worker = null;
    Path third = null;
    java.nio.channels.FileChannel held = null;
    sh("mount --bind " + bound + " " + mp.resolve("d/sub"));
    try {
      // a file held open through the crash: its backing, registered with the kernel by the
      // daemon that dies, may or may not be there for the next one, which gives new opens a
      // backing of their own
      held = java.nio.channels.FileChannel.open(mp.resolve("d/big"));
      worker = new ProcessBuilder("python3", "-c", WORKER, mp.resolve("d").toString(),
          stop.toString()).redirectErrorStream(true).redirectOutput(out.toFile()).start();
      awaitContent(out, "tick 20\n", worker);
      assertThat(mp.resolve("d/old")).hasContent("old name\n");
      // a third mount: a checkpoint of each mount that changed, with the worker's files
      third = overlay(d, base, "third", base.resolve("lower"), base);
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (true) {
        JsonNode status = Json.MAPPER.readTree(run(d, "daemon", "status", "--format",
            "json").output());
        long kept = 0;
        for (JsonNode m : status.path("mounts")) {
          kept += m.path("outlivesACrash").asBoolean() ? 1 : 0;
        }
        if (kept == 3) {
          break;
        }
        assertThat(System.nanoTime()).as("mounts kept with the holder: " + status)
            .isLessThan(deadline);
        Thread.sleep(50);
      }
      Thread.sleep(1000); // the keeper's round ends (the test holds either way)
      // after the checkpoint: a rename, a new file under the old name, a file fsynced
      Files.move(mp.resolve("d/old"), mp.resolve("d/renamed"));
      Files.writeString(mp.resolve("d/old"), "new file\n");
      try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(
          mp.resolve("synced"), java.nio.file.StandardOpenOption.CREATE,
          java.nio.file.StandardOpenOption.WRITE)) {
        ch.write(java.nio.ByteBuffer.wrap("fsynced\n".getBytes(StandardCharsets.UTF_8)));
        ch.force(true);
      }
      long holder = processesMentioning("strata-holder");
      assertThat(holder).as("the daemon's holder, running beside it").isEqualTo(1);
      d.process().destroyForcibly().waitFor(); // SIGKILL

      d = start(sock, List.of(), Map.of(), options);
      awaitContent(d.log(), "took over " + mp, d.process());
      awaitContent(d.log(), "took over " + image, d.process());
      awaitContent(d.log(), "took over " + third, d.process());
      assertThat(d.logText()).contains("resumed from the checkpoint of a server that died");
      int ticks = ticks(out);
      awaitContent(out, "tick " + (ticks + 20) + "\n", worker);
      assertThat(mp.resolve("synced")).hasContent("fsynced");
      assertThat(base.resolve("upper-m/synced")).hasContent("fsynced");
      assertThat(mp.resolve("d/old")).hasContent("new file");
      assertThat(mp.resolve("d/renamed")).hasContent("old name");
      assertThat(image.resolve("written")).hasContent("before the crash");
      assertThat(image.resolve("bin/busybox")).exists();
      assertThat(third.resolve("d/f")).hasContent("below");
      assertThat(Files.readAllBytes(mp.resolve("d/big"))).isEqualTo(big);
      java.nio.ByteBuffer got = java.nio.ByteBuffer.allocate(big.length);
      while (got.hasRemaining() && held.read(got, got.position()) > 0) {
        // read it all through the descriptor held since before the crash
      }
      assertThat(got.array()).isEqualTo(big);
      Files.writeString(stop, "");
      assertThat(worker.waitFor(60, TimeUnit.SECONDS)).isTrue();
      assertThat(Files.readString(out)).doesNotContain("FAIL").contains("done");
      assertThat(Files.readAllLines(mp.resolve("d/log"))).hasSize(ticks(out));
    } finally {
      if (held != null) {
        held.close();
      }
      if (worker != null) {
        worker.destroyForcibly().waitFor();
      }
      sh("umount " + mp.resolve("d/sub") + " || umount -l " + mp.resolve("d/sub") + " || true");
    }
    for (Path m : List.of(mp, image, third)) {
      Result u = run(d, "--root", store.toString(), "umount", m.toString());
      assertThat(u.code()).as(u.output()).isZero();
      assertThat(Mounts.isMountpoint(m)).isFalse();
    }
    assertThat(inProcess("--root", store.toString(), "layers").output()).doesNotContain("mount-");
    // the daemon's holder lets unmounted mounts go (else a host's mount cycles pile up there)
    List<Long> holders = pidsMentioning("strata-holder");
    assertThat(holders).hasSize(1);
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (fuseDescriptors(holders.get(0)) > 0) {
      assertThat(System.nanoTime()).as("the holder still keeps unmounted connections")
          .isLessThan(deadline);
      Thread.sleep(50);
    }
  }

  /** How many /dev/fuse descriptors process {@code pid} has open. */
  static long fuseDescriptors(long pid) throws IOException {
    long n = 0;
    try (Stream<Path> fds = Files.list(Path.of("/proc/" + pid + "/fd"))) {
      for (Path fd : fds.toList()) {
        try {
          n += Files.readSymbolicLink(fd).toString().equals("/dev/fuse") ? 1 : 0;
        } catch (IOException closed) {
          // closed meanwhile
        }
      }
    }
    return n;
  }

  /**
   * With no daemon within the grace, the mounts handed over fail as after a crash (ENOTCONN),
   * the holder ends, and the next daemon clears them; with --hold-mounts 0, a stop unmounts
   * as before.
   */
  /**
   * A strata-overlay that comes while the daemon stops (podman starting a container during a
   * restart) was served by the stopping daemon, not handed over, and unmounted under its users
   * when that daemon exited. A stopping daemon now takes no command: the client runs it in a
   * JVM of its own (here held in the stop for four seconds to let the client come), while the
   * mount made before is handed over and taken over by the next daemon.
   */
  @Test
  void aMountAskedForWhileTheDaemonStopsOutlivesIt() throws Exception {
    Path base = Files.createDirectories(shared.resolve("late"));
    Path sock = base.resolve("strata.sock");
    Daemon d = start(sock, List.of(), Map.of("STRATA_TEST_STOP_PAUSE_MS", "4000"));
    Path lower = lowerWithF(base);
    Path before = overlay(d, base, "before", lower, base);
    // the client's JVM, when it runs the command itself: the test's classes (no jar is built yet)
    Path java = shared.resolve("bin/java-classpath");
    Files.writeString(java, "#!/bin/sh\nwhile [ \"$1\" != -jar ]; do shift; done; shift 2\n"
        + "exec " + java() + " -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp '"
        + System.getProperty("java.class.path") + "' io.strata.cli.Main \"$@\"\n");
    Posix.chmod(java, 0755);
    d.process().destroy(); // SIGTERM: the daemon stops taking commands, then hands over
    Thread.sleep(500);
    Path late = Files.createDirectories(base.resolve("mnt-late"));
    List<String> cmd = List.of(client.toString(), "overlay", "-o", "lowerdir=" + lower
        + ",upperdir=" + Files.createDirectories(base.resolve("upper-late")) + ",workdir="
        + Files.createDirectories(base.resolve("work-late")), late.toString());
    ProcessBuilder pb = new ProcessBuilder(cmd);
    pb.environment().put("STRATA_SOCKET", sock.toString());
    pb.environment().put("STRATA_JAVA", java.toString());
    try {
      Result r = finish(pb, cmd);
      assertThat(r.code()).as(r.output()).isZero();
      assertThat(d.process().waitFor(60, TimeUnit.SECONDS)).isTrue();
      assertThat(d.logText()).contains("handed 1 mount").doesNotContain(late.toString());
      List<Long> holders = pidsMentioning("strata-holder");
      assertThat(late.resolve("f")).hasContent("lower"); // served by a JVM of its own
      Daemon next = start(sock, List.of(), Map.of());
      awaitContent(next.log(), "took over " + before, next.process());
      assertThat(before.resolve("f")).hasContent("lower");
      assertThat(pidsMentioning("strata-holder")).as("the holder ends once taken from")
          .doesNotContainAnyElementsOf(holders);
      // unmounted here, so that the daemon's stop after the test hands nothing to a holder
      Result u = run(next, "umount", before.toString());
      assertThat(u.code()).as(u.output()).isZero();
    } finally {
      if (Mounts.isMountpoint(late)) {
        Mounts.unmount(late, false); // its JVM ends with it
      }
    }
  }

  @Test
  void heldMountsFailWhenNoDaemonComesInTimeAndTheNextClearsThem() throws Exception {
    Path base = Files.createDirectories(shared.resolve("grace"));
    Path sock = base.resolve("strata.sock");
    Path lower = Files.createDirectories(base.resolve("lower"));
    Files.writeString(lower.resolve("f"), "below\n");
    Daemon d = start(sock, List.of(), Map.of(), "--hold-mounts", "2");
    Path mp = overlay(d, base, "m", lower, base);
    d.process().destroy();
    assertThat(d.process().waitFor(60, TimeUnit.SECONDS)).isTrue();
    assertThat(d.logText()).contains("handed 1 mount");
    // a reader waits through the grace, then fails: nothing serves, nothing will
    Process reader = new ProcessBuilder("cat", mp.resolve("f").toString())
        .redirectErrorStream(true).start();
    assertThat(reader.waitFor(30, TimeUnit.SECONDS)).isTrue();
    assertThat(reader.exitValue()).isNotZero();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (processesMentioning("strata-holder") > 0) {
      assertThat(System.nanoTime()).as("the holder did not end").isLessThan(deadline);
      Thread.sleep(50);
    }
    assertThat(readable(mp.resolve("f"))).isFalse();
    Daemon again = start(sock, List.of(), Map.of(), "--hold-mounts", "0");
    awaitContent(again.log(), "detached " + mp, again.process());
    assertThat(Mounts.isMountpoint(mp)).isFalse();

    // --hold-mounts 0: a stop unmounts what the daemon serves, and starts no holder
    Path mp2 = overlay(again, base, "m2", lower, base);
    again.process().destroy();
    assertThat(again.process().waitFor(60, TimeUnit.SECONDS)).isTrue();
    assertThat(Mounts.isMountpoint(mp2)).isFalse();
    assertThat(processesMentioning("strata-holder")).isZero();

    // a mount the next daemon cannot serve again (its lower removed while it was held) fails
    // at once, says so, and is detached; nothing waits for the grace
    Path doomed = Files.createDirectories(base.resolve("doomed"));
    Files.writeString(doomed.resolve("g"), "soon gone\n");
    Daemon third = start(sock, List.of(), Map.of());
    Path mp3 = overlay(third, base, "m3", doomed, base);
    third.process().destroy();
    assertThat(third.process().waitFor(60, TimeUnit.SECONDS)).isTrue();
    assertThat(third.logText()).contains("handed 1 mount");
    sh("rm -rf " + doomed);
    Daemon fourth = start(sock, List.of(), Map.of(), "--hold-mounts", "0");
    awaitContent(fourth.log(), "could not take over " + mp3, fourth.process());
    awaitContent(fourth.log(), "detached " + mp3, fourth.process());
    assertThat(Mounts.isMountpoint(mp3)).isFalse();
    assertThat(processesMentioning("strata-holder")).isZero();
  }

  /**
   * The descriptor fuzzer (unionfs's descriptor-fuzz.py: opens held across renames, unlinks,
   * copy-ups, then fstat, pread, pwrite, ftruncate and fchmod through them) with the daemon
   * serving the mount restarted in the middle of the run: it prints what it prints on kernel
   * overlayfs without one. Held descriptors of files whose names went, O_TMPFILE files and
   * maps included: the view's open files travel by descriptor. Odd seeds pass files through.
   */
  @org.junit.jupiter.params.ParameterizedTest(name = "seed {0}")
  @org.junit.jupiter.params.provider.ValueSource(strings = {"3 plain", "8 plain", "21 plain",
      "2 extended", "5 extended", "12 extended"})
  void theDescriptorFuzzerAgreesWithKernelOverlayfsAcrossARestart(String run) throws Exception {
    String[] a = run.split(" ");
    long seed = Long.parseLong(a[0]);
    Path script = Path.of("../unionfs/src/test/resources/descriptor-fuzz.py").toAbsolutePath();
    assertThat(script).as("the fuzzer, beside this module in the checkout").exists();
    Path base = Files.createTempDirectory(shared, "fuzz");
    Path lower = base.resolve("lower");
    sh("L=" + lower + "; mkdir -p $L/d0 $L/d2; echo zero > $L/f0; echo one > $L/f1;"
        + " echo two > $L/f2; echo three > $L/d0/f3; echo four > $L/d0/f4; ln $L/f1 $L/d2/hl");
    String mask = seed % 2 == 1 ? "mask-held-reads" : "compare-all";
    Path km = Files.createDirectories(base.resolve("km"));
    sh("mkdir -p " + base + "/ku " + base + "/kw && mount -t overlay overlay -o lowerdir="
        + lower + ",upperdir=" + base + "/ku,workdir=" + base + "/kw,redirect_dir=on,index=off,"
        + "metacopy=off,xino=off " + km);
    String kernel;
    try {
      kernel = sh("python3 " + script + " " + km + " " + seed + " " + mask + " " + a[1]);
    } finally {
      sh("umount " + km);
    }
    Path sock = base.resolve("strata.sock");
    Daemon d = start(sock, List.of(), Map.of());
    Path mp = Files.createDirectories(base.resolve("sm"));
    Result r = run(d, "overlay", "-o", "lowerdir=" + lower + ",upperdir="
        + Files.createDirectories(base.resolve("su")) + ",workdir="
        + Files.createDirectories(base.resolve("sw")) + ",passthrough=" + (seed % 2), mp.toString());
    assertThat(r.code()).as(r.output()).isZero();
    Path pause = base.resolve("pause");
    Path out = base.resolve("strata.out");
    ProcessBuilder pb = new ProcessBuilder("python3", script.toString(), mp.toString(),
        String.valueOf(seed), mask, a[1]).redirectErrorStream(true).redirectOutput(out.toFile());
    pb.environment().put("PAUSE", "60:" + pause);
    Process fuzz = pb.start();
    try {
      d = restartWhenReady(d, Path.of(pause + ".ready"), fuzz, out, mp);
      Files.writeString(Path.of(pause + ".go"), "");
      assertThat(fuzz.waitFor(60, TimeUnit.SECONDS)).isTrue();
      assertThat(Files.readString(out)).isEqualTo(kernel);
    } finally {
      fuzz.destroyForcibly().waitFor();
      Result u = run(d, "umount", mp.toString());
      assertThat(u.code()).as(u.output()).isZero();
    }
  }

  /**
   * A mount with 600 files open through it (every other one for writing, one in seven
   * unlinked meanwhile) is handed over whole: more descriptors than one packet carries (250),
   * and every file reads and writes through its old descriptor after the restart, with
   * passthrough on and off.
   */
  @Test
  void hundredsOfOpenFilesGoAlongWithTheMount() throws Exception {
    Path base = Files.createDirectories(shared.resolve("many"));
    Path lower = Files.createDirectories(base.resolve("lower"));
    for (int i = 1; i <= 600; i++) {
      Files.writeString(lower.resolve("f" + i), "file " + i + "\n");
    }
    Path sock = base.resolve("strata.sock");
    for (int passthrough = 0; passthrough <= 1; passthrough++) {
      Daemon d = start(sock, List.of(), Map.of());
      Path mp = Files.createDirectories(base.resolve("mnt" + passthrough));
      Result r = run(d, "overlay", "-o", "lowerdir=" + lower + ",upperdir="
          + Files.createDirectories(base.resolve("upper" + passthrough)) + ",workdir="
          + Files.createDirectories(base.resolve("work" + passthrough)) + ",passthrough="
          + passthrough, mp.toString());
      assertThat(r.code()).as(r.output()).isZero();
      Path ready = base.resolve("ready" + passthrough);
      Path go = base.resolve("go" + passthrough);
      Path out = base.resolve("out" + passthrough);
      String script = String.join("\n",
          "import os, resource, sys, time",
          "resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))",
          "mp, ready, go = sys.argv[1:4]",
          "fds = [os.open('%s/f%d' % (mp, i), os.O_RDONLY if i % 2 else os.O_RDWR)",
          "       for i in range(1, 601)]",
          "for i in range(1, 601, 7): os.unlink('%s/f%d' % (mp, i))",
          "open(ready, 'w').close()",
          "while not os.path.exists(go): time.sleep(0.01)",
          "bad = [i for i, fd in enumerate(fds, 1) if os.pread(fd, 20, 0) != b'file %d\\n' % i]",
          "for i, fd in enumerate(fds, 1):",
          "    if i % 2 == 0 and (os.pwrite(fd, b'F', 0) != 1 or os.pread(fd, 1, 0) != b'F'):",
          "        bad.append(-i)",
          "print('bad', bad)");
      Process p = new ProcessBuilder("python3", "-c", script, mp.toString(), ready.toString(),
          go.toString()).redirectErrorStream(true).redirectOutput(out.toFile()).start();
      try {
        d = restartWhenReady(d, ready, p, out, mp);
        Files.writeString(go, "");
        assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
        assertThat(Files.readString(out)).as("passthrough=" + passthrough).isEqualTo("bad []\n");
      } finally {
        p.destroyForcibly().waitFor();
        Result u = run(d, "umount", mp.toString());
        assertThat(u.code()).as(u.output()).isZero();
        d.process().destroy();
        assertThat(d.process().waitFor(60, TimeUnit.SECONDS)).isTrue();
      }
    }
  }

  /**
   * Once {@code worker} (writing to {@code out}) has made {@code ready}, stops {@code d} with
   * SIGTERM (it hands its one mount over) and starts the next daemon on its socket, which takes
   * {@code mp} over; returns the new daemon.
   */
  private static Daemon restartWhenReady(Daemon d, Path ready, Process worker, Path out, Path mp)
      throws Exception {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    while (!Files.exists(ready)) {
      assertThat(worker.isAlive()).as(Files.readString(out)).isTrue();
      assertThat(System.nanoTime()).isLessThan(deadline);
      Thread.sleep(10);
    }
    d.process().destroy();
    assertThat(d.process().waitFor(60, TimeUnit.SECONDS)).isTrue();
    assertThat(d.logText()).contains("handed 1 mount");
    Daemon next = start(d.socket(), List.of(), Map.of());
    awaitContent(next.log(), "took over " + mp, next.process());
    return next;
  }

  private static int ticks(Path out) throws IOException {
    int n = 0;
    for (String line : Files.readAllLines(out)) {
      if (line.startsWith("tick ") || line.startsWith("done ")) {
        n = Integer.parseInt(line.substring(5).trim());
      }
    }
    return n;
  }

  // ------------------------------------------------------------------------- load

  @Test
  void fiftyMountsOfOneImageAnswerParallelWalks() throws Exception {
    Daemon d = start(shared.resolve("load/strata.sock"), List.of(), Map.of());
    Path base = Files.createDirectories(shared.resolve("load"));
    long expected;
    try (Stream<Path> s = Files.walk(shared.resolve("bb/rootfs"))) {
      expected = s.count();
    }
    ExecutorService pool = Executors.newFixedThreadPool(8);
    List<Path> mps = new ArrayList<>();
    try {
      List<Future<Result>> mounts = new ArrayList<>();
      for (int i = 0; i < 50; i++) {
        Path mp = Files.createDirectories(base.resolve("m" + i));
        mps.add(mp);
        mounts.add(pool.submit(() -> run(d, "--root", store.toString(), "mount", "--read-only",
            "bb:d", mp.toString())));
      }
      for (Future<Result> f : mounts) {
        Result r = f.get(120, TimeUnit.SECONDS);
        assertThat(r.code()).as(r.output()).isZero();
      }
      long rssOne = rss(d);
      List<Future<String>> walks = new ArrayList<>();
      for (Path mp : mps) {
        walks.add(pool.submit((Callable<String>) () -> sh("find " + mp + " | wc -l").trim()));
      }
      for (Future<String> w : walks) {
        assertThat(Long.parseLong(w.get(120, TimeUnit.SECONDS))).isEqualTo(expected);
      }
      System.err.printf("daemon with 50 mounts: %d MiB resident after the walks (%d MiB"
          + " before)%n", rss(d) >> 20, rssOne >> 20);
      assertThat(Json.MAPPER.readTree(run(d, "daemon", "status", "--format", "json").output())
          .path("mounts").size()).isEqualTo(50);
      // one merged lower tree for all fifty, and every walk's requests counted
      JsonNode stats = Json.MAPPER.readTree(run(d, "stats", "--format", "json").out());
      assertThat(stats.path("mounts")).hasSize(50);
      for (JsonNode m : stats.path("mounts")) {
        assertThat(m.path("caches").path("lowerDirectories").path("sharedByMounts").asInt())
            .isEqualTo(50);
        assertThat(m.path("requests").path("READDIRPLUS").path("count").asLong()
            + m.path("requests").path("READDIR").path("count").asLong()).isPositive();
      }
    } finally {
      List<Future<Result>> umounts = new ArrayList<>();
      for (Path mp : mps) {
        umounts.add(pool.submit(() -> run(d, "--root", store.toString(), "umount",
            mp.toString())));
      }
      for (Future<Result> f : umounts) {
        Result r = f.get(120, TimeUnit.SECONDS);
        assertThat(r.code()).as(r.output()).isZero();
      }
      pool.shutdownNow();
    }
    assertThat(Mounts.table()).noneMatch(e -> e.mountpoint().startsWith(base));
    assertThat(Json.MAPPER.readTree(run(d, "daemon", "status", "--format", "json").output())
        .path("mounts")).isEmpty();
  }

  // ------------------------------------------------------------------------- live figures

  @Test
  void statsShowsRequestsCachesAndMemoryPerMount() throws Exception {
    Daemon d = start(shared.resolve("stats/strata.sock"), List.of(), Map.of());
    Path mp = Files.createDirectories(shared.resolve("stats/mnt"));
    assertThat(run(d, "--root", store.toString(), "mount", "bb:d", mp.toString()).code()).isZero();
    try {
      Files.writeString(mp.resolve("written"), "x");
      assertThat(Files.readAllBytes(mp.resolve("bin/busybox"))).isNotEmpty();
      try (var f = Files.newInputStream(mp.resolve("etc/passwd"))) {
        Result one = run(d, "stats", "--format", "json", mp.toString());
        assertThat(one.code()).as(one.output()).isZero();
        JsonNode s = Json.MAPPER.readTree(one.out());
        assertThat(s.path("daemon").path("pid").asLong()).isEqualTo(d.process().pid());
        assertThat(s.path("daemon").path("residentBytes").asLong()).isPositive();
        JsonNode m = s.path("mounts").get(0);
        assertThat(m.path("mountpoint").asText()).isEqualTo(mp.toRealPath().toString());
        assertThat(m.path("requests").path("LOOKUP").path("count").asLong()).isPositive();
        assertThat(m.path("requests").path("CREATE").path("count").asLong()).isEqualTo(1);
        JsonNode lookup = m.path("requests").path("LOOKUP");
        assertThat(lookup.path("p50Micros").asDouble())
            .isLessThanOrEqualTo(lookup.path("p99Micros").asDouble());
        assertThat(m.path("caches").path("openFiles").asInt()).as("etc/passwd is open")
            .isGreaterThanOrEqualTo(m.path("passthrough").asBoolean() ? 0 : 1);
        assertThat(m.path("workers").asInt()).isBetween(1, 4);
      }
      Result table = run(d, "stats", mp.toString());
      assertThat(table.out()).contains("OPCODE").contains("LOOKUP").contains("caches: lower");
      assertThat(run(d, "stats").out()).contains("daemon pid " + d.process().pid())
          .contains(mp.toRealPath().toString());
      Result none = run(d, "stats", shared.toString());
      assertThat(none.code()).isEqualTo(io.strata.cli.Main.NOT_FOUND);
      assertThat(none.err()).contains("serves no mount at");
    } finally {
      assertThat(run(d, "--root", store.toString(), "umount", mp.toString()).code()).isZero();
    }
    // the store's layers never change: their merged tree waits for the image's next mount
    // (the session ends just after umount returns)
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (Json.MAPPER.readTree(run(d, "stats", "--format", "json").out()).path("daemon")
        .path("keptLowerTrees").asInt() != 1) {
      assertThat(System.nanoTime()).as("no lower tree kept after the unmount")
          .isLessThan(deadline);
      Thread.sleep(50);
    }
    assertThat(run(d, "--root", store.toString(), "mount", "bb:d", mp.toString()).code())
        .isZero();
    try {
      assertThat(Files.readAllBytes(mp.resolve("bin/busybox"))).isNotEmpty();
      JsonNode again = Json.MAPPER.readTree(run(d, "stats", "--format", "json", mp.toString())
          .out());
      assertThat(again.path("mounts").get(0).path("caches").path("lowerDirectories")
          .path("keptFromEarlierMounts").asLong()).isEqualTo(1);
      assertThat(again.path("daemon").path("keptLowerTrees").asInt()).isZero();
      assertThat(run(d, "stats", mp.toString()).out()).contains("(kept from an earlier mount)");
    } finally {
      assertThat(run(d, "--root", store.toString(), "umount", mp.toString()).code()).isZero();
    }
    Result noDaemon = inProcess("stats");
    assertThat(noDaemon.code()).isEqualTo(io.strata.cli.Main.NOT_FOUND);
    assertThat(noDaemon.err()).contains("start one with `strata daemon`");
  }

  // ------------------------------------------------------------------------- helpers

  /** Starts a root daemon on {@code socket} and waits until it answers. */
  static Daemon start(Path socket, List<String> prefix, Map<String, String> env,
      String... options) throws Exception {
    Files.createDirectories(socket.getParent());
    List<String> cmd = new ArrayList<>(prefix);
    cmd.addAll(List.of(java(), "-XX:+UseSerialGC", "-cp", classpath.resolve("*").toString()
        + ":" + classpath.resolve("classes").toString(), "io.strata.cli.Main", "daemon"));
    cmd.addAll(List.of("--socket", socket.toString()));
    cmd.addAll(List.of(options));
    Path log = Files.createTempFile(shared, "daemon", ".log");
    Posix.chmod(log, 0666);
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true)
        .redirectOutput(log.toFile());
    pb.environment().putAll(env);
    Daemon d = new Daemon(pb.start(), socket, log);
    daemons.add(d);
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    while (!Files.exists(socket) || !answers(socket)) {
      assertThat(d.process().isAlive()).as("the daemon ended: " + d.logText()).isTrue();
      assertThat(System.nanoTime()).as("the daemon did not answer: " + d.logText())
          .isLessThan(deadline);
      Thread.sleep(20);
    }
    return d;
  }

  /** Starts the user's daemon, as the user, with {@code env} (VAR=VALUE ...). */
  Daemon startAsUser(Path socket, String env, Path tmp) throws Exception {
    List<String> prefix = new ArrayList<>(List.of("setpriv", "--reuid=" + user.uid,
        "--regid=" + user.gid, "--init-groups", "--reset-env", "env"));
    prefix.addAll(List.of(env.split(" ")));
    List<String> cmd = new ArrayList<>(prefix);
    // (jnr's stub is unpacked to java.io.tmpdir, which must be the user's to write)
    cmd.addAll(List.of(java(), "-XX:+UseSerialGC", "-Djava.io.tmpdir=" + tmp, "-cp",
        classpath.resolve("*") + ":" + classpath.resolve("classes"), "io.strata.cli.Main",
        "daemon"));
    Path log = Files.createTempFile(shared, "user-daemon", ".log");
    Posix.chmod(log, 0666);
    Daemon d = new Daemon(new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile())
        .start(), socket, log);
    daemons.add(d);
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    while (!Files.exists(socket)) {
      assertThat(d.process().isAlive()).as("the daemon ended: " + d.logText()).isTrue();
      assertThat(System.nanoTime()).as("the daemon did not start: " + d.logText())
          .isLessThan(deadline);
      Thread.sleep(20);
    }
    return d;
  }

  static boolean answers(Path socket) {
    return DaemonServer.answers(socket);
  }

  static String java() {
    return Path.of(System.getProperty("java.home"), "bin", "java").toString();
  }

  /**
   * The test's classpath where another user can read it: the jars hard-linked (or copied)
   * into {@code dir}, the class directories copied to {@code dir/classes}. (Maven's repository
   * under /root is not for other users.)
   */
  static Path readableClasspath(Path dir) throws Exception {
    Path classes = Files.createDirectories(dir.resolve("classes"));
    for (String entry : System.getProperty("java.class.path").split(":")) {
      Path p = Path.of(entry);
      if (Files.isDirectory(p)) {
        sh("cp -a " + p + "/. " + classes + "/");
      } else if (Files.isRegularFile(p) && entry.endsWith(".jar")) {
        Path to = dir.resolve(p.getFileName());
        if (!Files.exists(to)) {
          try {
            Files.createLink(to, p);
          } catch (IOException crossDevice) {
            Files.copy(p, to);
          }
        }
      }
    }
    // the container helper, found beside the classes as in a build
    sh("cp -a target/native " + dir + "/native");
    sh("chmod -R a+rX " + dir);
    return dir;
  }

  /** Runs the C client against {@code d} as root. */
  static Result run(Daemon d, String... args) throws Exception {
    List<String> cmd = new ArrayList<>(List.of(client.toString()));
    cmd.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(cmd);
    pb.environment().put("STRATA_SOCKET", d.socket().toString());
    return finish(pb, cmd);
  }

  /** Runs a command in a JVM of its own, no daemon. */
  static Result inProcess(String... args) throws Exception {
    List<String> cmd = new ArrayList<>(List.of(java(), "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
        "-cp", System.getProperty("java.class.path"), "io.strata.cli.Main"));
    cmd.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(cmd);
    pb.environment().put("STRATA_SOCKET", "none");
    return finish(pb, cmd);
  }

  /** Runs {@code pb}, its stderr read beside its stdout, and waits for it. */
  static Result finish(ProcessBuilder pb, List<String> cmd) throws Exception {
    Path err = Files.createTempFile(shared, "err", ".txt");
    Process p = pb.redirectError(err.toFile()).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor(120, TimeUnit.SECONDS)).as(String.join(" ", cmd)).isTrue();
    Result r = new Result(p.exitValue(), out, Files.readString(err));
    Files.delete(err);
    return r;
  }

  static String sh(String script) throws Exception {
    Process p = new ProcessBuilder("sh", "-c", script).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor()).as(script + "\n" + out).isZero();
    return out;
  }

  /** {@code base/lower}, holding the file f ("lower"), what {@link #assertServes} reads. */
  static Path lowerWithF(Path base) throws IOException {
    Path lower = Files.createDirectories(base.resolve("lower"));
    Files.writeString(lower.resolve("f"), "lower\n");
    return lower;
  }

  /** Mounts lowerdir=LOWER with an upper under {@code upperBase} via strata-overlay. */
  /**
   * What {@link #WORKER} works in: {@code base}/lower/d with f and sub (a bind mount's place),
   * and the directory bound there; returns the latter.
   */
  static Path workerTree(Path base) throws IOException {
    Files.createDirectories(base.resolve("lower/d/sub"));
    Files.writeString(base.resolve("lower/d/f"), "below\n");
    Path bound = Files.createDirectories(base.resolve("bound"));
    Files.writeString(bound.resolve("b"), "bound\n");
    return bound;
  }

  /** The store's image mounted with strata mount at {@code base}/image, {@code written} in it. */
  static Path mountImage(Daemon d, Path base, String written) throws Exception {
    Path image = Files.createDirectories(base.resolve("image"));
    Result mounted = run(d, "--root", store.toString(), "mount", "bb:d", image.toString());
    assertThat(mounted.code()).as(mounted.output()).isZero();
    Files.writeString(image.resolve("written"), written);
    return image;
  }

  static Path overlay(Daemon d, Path base, String name, Path lower, Path upperBase)
      throws Exception {
    Path mp = Files.createDirectories(base.resolve("mnt-" + name));
    Path upper = Files.createDirectories(upperBase.resolve("upper-" + name));
    Path work = Files.createDirectories(upperBase.resolve("work-" + name));
    Result r = run(d, "overlay", "-o", "lowerdir=" + lower + ",upperdir=" + upper + ",workdir="
        + work, mp.toString());
    assertThat(r.code()).as(r.output()).isZero();
    assertThat(Mounts.isFuseMountpoint(mp)).isTrue();
    return mp;
  }

  /** A healthy mount still reads, writes and lists. */
  static void assertServes(Path mp) throws Exception {
    assertThat(mp.resolve("f")).hasContent("lower");
    Files.writeString(mp.resolve("new-" + System.nanoTime()), "x");
    try (Stream<Path> s = Files.list(mp)) {
      assertThat(s.count()).isGreaterThanOrEqualTo(3);
    }
  }

  static boolean readable(Path p) {
    try {
      Files.readAllBytes(p);
      return true;
    } catch (IOException e) {
      return false;
    }
  }

  /** The FUSE connection number of a mount (its device's minor number). */
  static long devOf(Path mp) throws Exception {
    for (String line : Files.readAllLines(Path.of("/proc/self/mountinfo"))) {
      String[] f = line.split(" ");
      if (f[4].equals(mp.toString())) {
        return Long.parseLong(f[2].substring(f[2].indexOf(':') + 1));
      }
    }
    throw new AssertionError(mp + " is not mounted");
  }

  static List<String> listing(Path dir) throws IOException {
    try (Stream<Path> s = Files.walk(dir)) {
      return s.map(p -> {
        try {
          return p + " " + Files.size(p) + " " + Files.getLastModifiedTime(p,
              java.nio.file.LinkOption.NOFOLLOW_LINKS);
        } catch (IOException e) {
          return p + " ?";
        }
      }).sorted().toList();
    }
  }

  static void awaitContent(Path out, String text, Process p) throws Exception {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    while (!Files.readString(out).contains(text)) {
      assertThat(p.isAlive()).as("the client ended: " + Files.readString(out)).isTrue();
      assertThat(System.nanoTime()).as(out + ": " + Files.readString(out)).isLessThan(deadline);
      Thread.sleep(20);
    }
  }

  static long processesMentioning(String text) throws IOException {
    return pidsMentioning(text).size();
  }

  /** The processes whose command line contains {@code text}. */
  static List<Long> pidsMentioning(String text) throws IOException {
    List<Long> found = new ArrayList<>();
    try (Stream<Path> procs = Files.list(Path.of("/proc"))) {
      for (Path p : procs.filter(x -> x.getFileName().toString().matches("[0-9]+")).toList()) {
        try {
          String cmd = new String(Files.readAllBytes(p.resolve("cmdline")), StandardCharsets.UTF_8)
              .replace('\0', ' ');
          if (cmd.contains(text)) {
            found.add(Long.parseLong(p.getFileName().toString()));
          }
        } catch (IOException gone) {
          // ended meanwhile
        }
      }
    }
    return found;
  }

  static long rss(Daemon d) throws IOException {
    for (String line : Files.readAllLines(Path.of("/proc/" + d.process().pid() + "/status"))) {
      if (line.startsWith("VmRSS:")) {
        return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
      }
    }
    return -1;
  }
}
