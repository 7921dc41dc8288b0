package io.strata.runtime.container;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.strata.layers.fs.Posix;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * strata as a person without root runs it: a real user the test makes, with subordinate ids,
 * through the strata command (the C client), which runs import, run, commit and rm as root of
 * a user namespace of the user's ids (newuidmap/newgidmap) and the rest as the user. The store
 * is the user's own ({@code ~/.local/share/strata}). This machine has /dev/fuse and
 * /dev/net/tun 0600; a normal host has them 0666 (Debian's udev rules), which the test sets
 * and restores; its /tmp is 0755,
 * so the user's JVM keeps its temporary files (jnr's native stub) in their home.
 */
class RootlessRunTest {
  private static Path base;
  private static TestUser user;
  private static String devFuseMode;
  private static String devTunMode;
  private static Path client;
  private static long subuid;
  private static long subgid;
  private static Path store;

  @BeforeAll
  static void setUp() throws Exception {
    assumeTrue(Posix.isRoot(), "root makes the test user");
    TestUser.assumeInstalled("newuidmap", "newgidmap", "setpriv", "useradd");
    base = Files.createTempDirectory(Path.of("/var/tmp"), "strata-rootless-run-");
    Posix.chmod(base, 0755);
    user = TestUser.createWithHome(base.resolve("home"));
    long[] ids = user.subordinateIds();
    subuid = ids[0];
    subgid = ids[1];
    store = base.resolve("home/.local/share/strata");
    devFuseMode = sh("stat -c %a /dev/fuse").trim();
    sh("chmod 666 /dev/fuse");
    if (Files.exists(Path.of("/dev/net/tun"))) {
      devTunMode = sh("stat -c %a /dev/net/tun").trim();
      sh("chmod 666 /dev/net/tun");
    }

    client = TestUser.clientFor(base.resolve("bin"));

    // busybox with files of other owners, a setuid file, a device node and a sticky /tmp
    Path root = TestImages.busyboxRoot(base.resolve("image"));
    Files.createDirectories(root.resolve("home/app"));
    Files.writeString(root.resolve("home/app/file"), "app's\n");
    Files.createDirectories(root.resolve("tmp"));
    sh("cd " + root + " && chown -R 1000:1000 home/app && chmod 1777 tmp"
        + " && cp bin/busybox bin/suid && chmod 4755 bin/suid && mknod dev-null c 1 3");
    TestImages.tar(root, base.resolve("image.tar"));
    sh("chmod a+r " + base.resolve("image.tar"));
    TestUser.Result r = strata("import", "-q", base.resolve("image.tar").toString(), "--name",
        "bb:1");
    assertThat(r.code()).as(r.output()).isZero();
  }

  @AfterAll
  static void tearDown() throws Exception {
    if (user != null) {
      user.close();
    }
    if (devFuseMode != null) {
      sh("chmod " + devFuseMode + " /dev/fuse");
    }
    if (devTunMode != null) {
      sh("chmod " + devTunMode + " /dev/net/tun");
    }
    if (base != null) {
      sh("rm -rf " + base);
    }
  }

  private static String sh(String script) throws Exception {
    Process p = new ProcessBuilder("sh", "-c", script).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes());
    assertThat(p.waitFor()).as(script + "\n" + out).isZero();
    return out;
  }

  /** The strata command as the user types it (no daemon), with its output and status. */
  private static TestUser.Result strata(String... args) throws Exception {
    StringBuilder cmd = new StringBuilder("STRATA_JAVA=" + base.resolve("bin/java")
        + " STRATA_SOCKET=none " + client);
    for (String a : args) {
      cmd.append(" '").append(a.replace("'", "'\\''")).append("'");
    }
    return user.sh(cmd.toString());
  }

  /** The extracted image layer of a store (a commit adds others, which hold no busybox). */
  private static Path baseLayer(Path store) throws Exception {
    try (Stream<Path> s = Files.list(store.resolve("layers"))) {
      return s.map(p -> p.resolve("diff")).filter(d -> Files.exists(d.resolve("bin/busybox")))
          .findFirst().orElseThrow();
    }
  }

  private static long hostOwner(Path p) throws Exception {
    return ((Number) Files.getAttribute(p, "unix:uid")).longValue();
  }

  @Test
  void layersKeepTheirOwnersAsTheUsersSubordinateIds() throws Exception {
    Path diff = baseLayer(store);
    assertThat(hostOwner(diff.resolve("home/app/file"))).isEqualTo(subuid + 999);
    assertThat(hostOwner(diff.resolve("bin/busybox"))).isEqualTo(user.uid);
    assertThat((Integer) Files.getAttribute(diff.resolve("bin/suid"), "unix:mode") & 07777)
        .isEqualTo(04755);
    assertThat(diff.resolve("dev-null")).as("no device node in a user namespace").doesNotExist();
    // the store is private to the user
    assertThat((Integer) Files.getAttribute(store.resolve("layers"), "unix:mode") & 077)
        .isZero();
  }

  @Test
  void aContainerRunsAsRootOfTheUsersNamespace() throws Exception {
    TestUser.Result r = strata("run", "--rm", "bb:1", "sh", "-c",
        "cat /proc/self/uid_map; echo ---; id -u; ls -ln /home/app/file; touch /mine;"
            + " ls -ln /mine; grep Seccomp: /proc/self/status; ls /dev;"
            + " mknod /dev/x c 1 3 2>/dev/null && echo mknod-made || echo mknod-refused");
    assertThat(r.code()).as(r.output()).isZero();
    String[] maps = r.output().substring(0, r.output().indexOf("---")).trim().split("\n");
    assertThat(maps[0].trim().split("\\s+")).containsExactly("0", String.valueOf(user.uid), "1");
    assertThat(maps[1].trim().split("\\s+"))
        .containsExactly("1", String.valueOf(subuid), "65536");
    assertThat(r.output()).contains("\n0\n").contains(" 1000 ").contains("0        0")
        .contains("Seccomp:\t2").contains("mknod-refused").doesNotContain("mknod-made");
    assertThat(r.output()).contains("null").contains("urandom");
    nothingLeft();
  }

  @Test
  void theHostSeesTheMappedIdsAndACommitKeepsThem() throws Exception {
    TestUser.Result r = strata("run", "--name", "c1", "bb:1", "sh", "-c",
        "echo made > /made && chown 5:6 /made && echo root > /rootfile");
    assertThat(r.code()).as(r.output()).isZero();
    Path upper = store.resolve("containers/c1/diff/upper");
    assertThat(hostOwner(upper.resolve("made"))).isEqualTo(subuid + 4);
    assertThat(((Number) Files.getAttribute(upper.resolve("made"), "unix:gid")).longValue())
        .isEqualTo(subgid + 5);
    assertThat(hostOwner(upper.resolve("rootfile"))).isEqualTo(user.uid);
    r = strata("commit", "c1", "committed:1");
    assertThat(r.code()).as(r.output()).isZero();
    r = strata("run", "--rm", "committed:1", "ls", "-ln", "/made");
    assertThat(r.code()).as(r.output()).isZero();
    assertThat(r.output()).contains(" 5        6 ");
    assertThat(strata("rm", "c1").code()).isZero();
    assertThat(store.resolve("containers/c1")).doesNotExist();
    nothingLeft();
  }

  @Test
  void aContainerCannotReachWhatTheUserCannot() throws Exception {
    TestUser.Result r = strata("run", "--rm", "-v", "/etc/shadow:/shadow:ro", "-v",
        "/root:/hostroot", "bb:1", "sh", "-c",
        "cat /shadow >/dev/null 2>&1 && echo READ-SHADOW;"
            + " ls /hostroot >/dev/null 2>&1 && echo LISTED-ROOT;"
            + " (echo x > /hostroot/planted) 2>/dev/null && echo PLANTED; echo done");
    assertThat(r.code()).as(r.output()).isZero();
    assertThat(r.output()).isEqualTo("done\n");
    assertThat(Path.of("/root/planted")).doesNotExist();
    nothingLeft();
  }

  @Test
  void limitsAreRefusedWithTheReasonAndNetworksWork() throws Exception {
    TestUser.Result r = strata("run", "--rm", "--memory", "64m", "bb:1", "true");
    assertThat(r.code()).as(r.output()).isEqualTo(2);
    assertThat(r.output()).contains("--memory").contains("user's container");
    TestUser.Result none = strata("run", "--rm", "--network", "none", "bb:1", "cat",
        "/proc/net/dev");
    TestUser.Result host = strata("run", "--rm", "--network", "host", "bb:1", "cat",
        "/proc/net/dev");
    assertThat(none.code()).as(none.output()).isZero();
    assertThat(host.code()).as(host.output()).isZero();
    assertThat(none.output().trim().split("\n")).hasSize(3); // two header lines and lo
    assertThat(host.output().trim().split("\n").length)
        .isEqualTo(sh("cat /proc/net/dev").trim().split("\n").length);
    nothingLeft();
  }

  /**
   * A user whose cgroup v2 cgroup is delegated to them (as systemd's user manager delegates
   * one, emulated here on the host's cgroup2: a directory chowned to the user, the command
   * moved into it) gets limits there; this machine's memory, cpu and pids controllers are
   * cgroup v1's, so the delegated cgroup offers none of them, and a limit is refused naming
   * that, not the missing delegation. A container without limits runs and makes no cgroup.
   * What the limits write below a delegated cgroup: CgroupV2Test, on a fake tree.
   */
  @Test
  void aDelegatedCgroupIsUsedAndWhatItLacksIsNamed() throws Exception {
    String v2 = sh("awk '$3 == \"cgroup2\" {print $2}' /proc/mounts").trim();
    assumeTrue(!v2.isEmpty() && !v2.contains("\n"), "one cgroup2 hierarchy mounted");
    Path delegated = Path.of(v2, "strata-test-user-" + user.uid);
    sh("mkdir " + delegated + " && chown " + user.uid + ":" + user.gid + " " + delegated + " "
        + delegated + "/cgroup.procs " + delegated + "/cgroup.subtree_control " + delegated
        + "/cgroup.threads");
    try {
      String strata = "STRATA_JAVA=" + base.resolve("bin/java") + " STRATA_SOCKET=none "
          + client;
      // root's shell moves itself into the delegated cgroup, then becomes the user
      String in = "echo $$ > " + delegated + "/cgroup.procs && exec setpriv --reuid="
          + user.uid + " --regid=" + user.gid + " --init-groups env HOME=" + base.resolve("home")
          + " PATH=/usr/bin:/bin sh -c ";
      String r = sh("exec 2>&1; " + in + "'" + strata + " run --rm --pids-limit 10 bb:1 true;"
          + " echo rc=$?; cat /proc/self/cgroup'");
      assertThat(r).contains("--pids-limit: a user's container cannot have limits here")
          .contains("pids controller is not delegated to the user (" + delegated + " offers:")
          .contains("rc=2").contains("0::/" + delegated.getFileName());
      r = sh("exec 2>&1; " + in + "'" + strata + " run --rm bb:1 cat /proc/self/cgroup;"
          + " echo rc=$?'");
      assertThat(r).contains("rc=0");
      assertThat(delegated.resolve("strata")).as("no limits, no cgroup").doesNotExist();
      // from the leaf a limited container moves the delegated cgroup's processes to, the
      // delegated cgroup is still the one below which containers go
      Path self = delegated.resolve("strata-self");
      sh("mkdir " + self + " && chown " + user.uid + ":" + user.gid + " " + self + " " + self
          + "/cgroup.procs");
      r = sh("exec 2>&1; " + in.replace(delegated + "/cgroup.procs", self + "/cgroup.procs")
          + "'" + strata + " run --rm --pids-limit 10 bb:1 true; echo rc=$?'");
      assertThat(r).contains("(" + delegated + " offers:").contains("rc=2");
    } finally {
      sh("for d in " + delegated + "/strata-self " + delegated + "; do [ ! -d $d ] || rmdir $d"
          + " || { sleep 1; rmdir $d; }; done");
    }
    nothingLeft();
  }

  /**
   * --network slirp4netns: the container's own network reaches a server on the host's address
   * (outbound, NAT'd by slirp4netns), but not the host's loopback (10.0.2.2), as podman's
   * default.
   */
  @Test
  void aPrivateNetworkReachesOutThroughSlirp4netns() throws Exception {
    assumeTrue(Files.isExecutable(Path.of("/usr/bin/slirp4netns")), "slirp4netns");
    String host = sh("hostname -I").trim().split("\\s+")[0];
    assumeTrue(!host.isEmpty() && !host.startsWith("127."), "a non-loopback address");
    Path www = Files.createDirectories(base.resolve("www"));
    Files.writeString(www.resolve("hello"), "from the host\n");
    int port = 20000 + (int) (ProcessHandle.current().pid() % 20000);
    Process httpd = new ProcessBuilder("busybox", "httpd", "-f", "-p", "0.0.0.0:" + port, "-h",
        www.toString()).redirectErrorStream(true).start();
    try {
      TestUser.Result r = strata("run", "--rm", "--network", "slirp4netns", "bb:1", "sh", "-c",
          "ip -4 addr show tap0 | grep -o 'inet [0-9./]*';"
              + " timeout 10 wget -q -O - http://" + host + ":" + port + "/hello;"
              + " timeout 10 wget -q -O - http://10.0.2.2:" + port + "/hello >/dev/null 2>&1"
              + " && echo LOOPBACK-REACHED || echo loopback refused");
      assertThat(r.code()).as(r.output()).isZero();
      assertThat(r.output()).contains("inet 10.0.2.100/24").contains("from the host")
          .contains("loopback refused").doesNotContain("LOOPBACK-REACHED");
    } finally {
      httpd.destroy();
      httpd.waitFor();
    }
    assertThat(sh("pgrep -c slirp4netns || true").trim()).isEqualTo("0");
    nothingLeft();
  }

  /**
   * The rest of a user's day: save and gc run in the namespace, a mount on the host goes
   * through fusermount3 and shows the layer's owners as the host sees them.
   */
  @Test
  void saveGcAndAMountOnTheHost() throws Exception {
    TestUser.Result r = strata("save", "bb:1", "-o", base.resolve("home/saved.tar").toString());
    assertThat(r.code()).as(r.output()).isZero();
    assertThat(sh("tar -tvf " + base.resolve("home/saved.tar"))).contains("manifest.json");
    r = strata("gc");
    assertThat(r.code()).as(r.output()).isZero();
    assertThat(strata("images").output()).contains("bb");
    Path mp = base.resolve("home/mnt");
    assertThat(user.sh("mkdir -p " + mp).code()).isZero();
    r = strata("mount", "bb:1", mp.toString());
    assertThat(r.code()).as(r.output()).isZero();
    try {
      assertThat(sh("grep ' " + mp + " ' /proc/mounts")).contains("fuse")
          .contains("user_id=" + user.uid);
      TestUser.Result ls = user.sh("ls -ln " + mp + "/home/app/file && echo x > " + mp
          + "/made-on-host && cat " + mp + "/made-on-host");
      assertThat(ls.code()).as(ls.output()).isZero();
      assertThat(ls.output()).contains(" " + (subuid + 999) + " ").endsWith("x\n");
    } finally {
      r = strata("umount", "--rm", mp.toString());
      assertThat(r.code()).as(r.output()).isZero();
    }
    nothingLeft();
  }

  /**
   * push and pull as the user, against Debian's docker-registry on 127.0.0.1: what comes back
   * into a fresh store of the user's keeps its owners as the user's subordinate ids.
   */
  @Test
  void pushAndPullAsTheUser() throws Exception {
    assumeTrue(Files.isExecutable(Path.of("/usr/bin/docker-registry")), "docker-registry");
    Path reg = Files.createDirectories(base.resolve("registry"));
    int port;
    try (java.net.ServerSocket s = new java.net.ServerSocket(0, 1,
        java.net.InetAddress.getLoopbackAddress())) {
      port = s.getLocalPort();
    }
    Path config = Files.writeString(reg.resolve("config.yml"), "version: 0.1\nlog:\n"
        + "  level: warn\nstorage:\n  filesystem:\n    rootdirectory: " + reg.resolve("data")
        + "\nhttp:\n  addr: 127.0.0.1:" + port + "\n");
    Process registry = new ProcessBuilder("docker-registry", "serve", config.toString())
        .redirectErrorStream(true).redirectOutput(reg.resolve("log").toFile()).start();
    try {
      long deadline = System.nanoTime() + 30_000_000_000L;
      while (true) {
        try (java.net.Socket s = new java.net.Socket("127.0.0.1", port)) {
          break;
        } catch (java.io.IOException notYet) {
          assertThat(registry.isAlive() && System.nanoTime() < deadline)
              .as(Files.readString(reg.resolve("log"))).isTrue();
          Thread.sleep(50);
        }
      }
      String ref = "127.0.0.1:" + port + "/bb:1";
      TestUser.Result r = strata("push", "--tls-verify=false", "bb:1", ref);
      assertThat(r.code()).as(r.output()).isZero();
      Path other = base.resolve("home/other-store");
      r = strata("--root", other.toString(), "pull", "--tls-verify=false", ref);
      assertThat(r.code()).as(r.output()).isZero();
      Path diff = baseLayer(other);
      assertThat(hostOwner(diff.resolve("home/app/file"))).isEqualTo(subuid + 999);
      assertThat(hostOwner(diff.resolve("bin/busybox"))).isEqualTo(user.uid);
    } finally {
      registry.destroy();
      registry.waitFor();
    }
  }

  /**
   * A user without subordinate ids gets a namespace of their own id alone, is told so, and
   * runs containers; files of other owners in the image become root's.
   */
  @Test
  void aUserWithoutSubordinateIdsRunsWithOneIdMapped() throws Exception {
    try (TestUser lone = TestUser.createWithHome(base.resolve("lone"))) {
      long[] ids = lone.subordinateIds();
      sh("usermod --del-subuids " + ids[0] + "-" + (ids[0] + 65535) + " --del-subgids "
          + ids[1] + "-" + (ids[1] + 65535) + " " + lone.name);
      assertThat(lone.subordinateIds()).containsExactly(-1L, -1L);
      String strata = "STRATA_JAVA=" + base.resolve("bin/java") + " STRATA_SOCKET=none "
          + client;
      TestUser.Result r = lone.sh(strata + " import -q " + base.resolve("image.tar")
          + " --name bb:1 && " + strata + " run --rm bb:1 sh -c 'cat /proc/self/uid_map;"
          + " ls -ln /home/app/file'");
      assertThat(r.code()).as(r.output()).isZero();
      assertThat(r.output()).contains("has no subordinate ids")
          .containsPattern("\\s0\\s+" + lone.uid + "\\s+1\\n")
          .contains(" 0        0 "); // app's file (uid 1000) stayed root's
    }
  }

  /** No process of the user's is left, nothing of theirs is mounted, and no container. */
  private static void nothingLeft() throws Exception {
    // a mount's server ends once unmounted, a moment after umount returns
    long deadline = System.nanoTime() + 20_000_000_000L;
    while (!sh("pgrep -u " + user.uid + " || true").isBlank() && System.nanoTime() < deadline) {
      Thread.sleep(50);
    }
    assertThat(sh("pgrep -a -u " + user.uid + " || true").trim()).isEmpty();
    assertThat(sh("grep -c " + base + " /proc/mounts || true").trim()).isEqualTo("0");
    TestUser.Result ps = strata("ps");
    assertThat(ps.code()).as(ps.output()).isZero();
    assertThat(ps.output().trim().split("\n")).hasSizeLessThanOrEqualTo(1);
  }
}
