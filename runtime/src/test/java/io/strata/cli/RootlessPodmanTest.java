package io.strata.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.strata.layers.fs.Posix;
import io.strata.layers.fs.RawFs;
import io.strata.runtime.container.TestUser;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Rootless podman and buildah (Debian's 4.3 and 1.28) on strata-overlay, as a real
 * unprivileged user the test makes with subordinate ids of its own: containers/storage runs its
 * mount program inside podman's user namespace, where strata-overlay is root of that namespace
 * and mounts /dev/fuse itself: served by a JVM of its own ("strata"), or mounted by the C
 * client and handed to the user's daemon, which lives in a user namespace of the user's ids
 * ("strata-daemon"). Every run is done on each and on fuse-overlayfs, and the uppers (file by
 * file: type, mode, host owner, content) and built layers must be equal.
 *
 * <p>This sandbox needs two settings a normal host has: /dev/fuse 0666 (Debian's udev rule;
 * it is 0600 here, restored after) and --network none for buildah's RUN (its slirp4netns
 * fails here: "failed to read from slirp4netns sync pipe: EOF", with either mount program).
 */
class RootlessPodmanTest {
  private static final String ULIMITS = "--ulimit nofile=1024:1024 --ulimit nproc=4096:4096";
  private static Path base;
  private static TestUser user;
  private static Path runtimeDir;
  private static String devFuseMode;
  private static Path strataOverlay;
  private static long subuid;
  private static long subgid;
  private static Path client;

  @BeforeAll
  static void setUp() throws Exception {
    assumeTrue(Posix.isRoot(), "root makes the test user");
    TestUser.assumeInstalled("podman", "buildah", "fuse-overlayfs", "newuidmap", "newgidmap",
        "setpriv", "useradd");
    base = Files.createTempDirectory(Path.of("/var/tmp"), "strata-rootless-");
    Posix.chmod(base, 0755);
    user = TestUser.createWithHome(base.resolve("home"));
    long[] ids = user.subordinateIds();
    subuid = ids[0];
    subgid = ids[1];
    runtimeDir = Path.of("/run/user", String.valueOf(user.uid));
    sh("mkdir -p -m 700 " + runtimeDir + " && chown " + user.uid + ":" + user.gid + " "
        + runtimeDir);
    devFuseMode = sh("stat -c %a /dev/fuse").trim();
    sh("chmod 666 /dev/fuse");
    strataOverlay = overlayProgram(Files.createDirectories(base.resolve("strata")));
    client = TestUser.clientFor(base.resolve("client/bin"));
    // the user's daemon, started as the user's systemd starts it with contrib/systemd/user
    // (strata.socket: its socket on stdin, the first command starting it), else by hand: the
    // client makes it a user namespace of the user's ids, where it serves the mounts podman's
    // mount program hands it
    boolean activated = Files.isExecutable(Path.of("/usr/bin/systemd-socket-activate"));
    Path socket = runtimeDir.resolve("strata/strata.sock");
    user.sh("cd; export XDG_RUNTIME_DIR=" + runtimeDir + " STRATA_JAVA=" + javaForClient()
        + "; mkdir -p -m 700 " + socket.getParent() + "; setsid "
        + (activated ? "systemd-socket-activate --inetd -E XDG_RUNTIME_DIR -E HOME -E PATH"
            + " -E STRATA_JAVA -l " + socket + " " : "")
        + client + " daemon > daemon.log 2>&1 < /dev/null & echo $! > daemon.pid");
    long deadline = System.nanoTime() + 60_000_000_000L;
    while (activated ? !Files.exists(socket) : daemon("daemon status").code() != 0) {
      assertThat(System.nanoTime()).as("the user's daemon did not start: "
          + Files.readString(base.resolve("home/daemon.log"))).isLessThan(deadline);
      Thread.sleep(100);
    }
    if (activated) {
      // the first command starts it; systemd-socket-activate execs the client, which makes the
      // namespace and execs the JVM: the daemon is the process it started
      TestUser.Result first = daemon("daemon status --format json");
      assertThat(first.code()).as(first.output() + Files.readString(
          base.resolve("home/daemon.log"))).isZero();
      com.fasterxml.jackson.databind.JsonNode st = io.strata.layers.base.Json.MAPPER.readTree(
          first.output().substring(first.output().indexOf('{')));
      assertThat(st.path("socket").asText()).isEqualTo(socket.toString());
      assertThat(st.path("pid").asLong()).isEqualTo(Long.parseLong(
          Files.readString(base.resolve("home/daemon.pid")).trim()));
    }

    // a busybox image with a directory to make opaque, as a docker-archive podman loads
    Path bb = Files.createDirectories(base.resolve("bb/bin"));
    Files.copy(Path.of("/bin/busybox"), bb.resolve("busybox"));
    for (String a : List.of("sh", "echo", "cat", "ls", "rm", "mkdir", "chmod", "chown", "ln",
        "mv", "true", "test", "id", "touch")) {
      Files.createSymbolicLink(bb.resolve(a), Path.of("busybox"));
    }
    Files.createDirectories(base.resolve("bb/etc"));
    Files.writeString(base.resolve("bb/etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    Files.createDirectories(base.resolve("bb/opq/old"));
    Files.writeString(base.resolve("bb/opq/old/f"), "old\n");
    sh("tar -C " + base.resolve("bb") + " -cf " + base.resolve("bb.tar") + " .");
    String store = base.resolve("store").toString();
    assertThat(Main.run("--root", store, "import", base.resolve("bb.tar").toString(), "--name",
        "bb:1")).isZero();
    assertThat(Main.run("--root", store, "save", "bb:1", "-o",
        base.resolve("bb-archive.tar").toString())).isZero();
    sh("chmod 644 " + base.resolve("bb-archive.tar"));
  }

  @AfterAll
  static void tearDown() throws Exception {
    if (user != null) {
      user.close(); // kills podman's pause process: its namespaces and the mounts in them end
      assertThat(sh("pgrep -u " + user.uid + " || true").trim()).isEmpty();
    }
    if (devFuseMode != null) {
      sh("chmod " + devFuseMode + " /dev/fuse");
    }
    if (runtimeDir != null) {
      sh("rm -rf " + runtimeDir);
    }
    if (base != null) {
      sh("rm -rf " + base);
    }
  }

  /**
   * strata-overlay as the user runs it: a JVM of its own on a copy of this test's class path
   * (root's Maven repository is not theirs to read).
   */
  private static Path overlayProgram(Path dir) throws Exception {
    String cp = TestUser.readableClasspath(dir.resolve("cp"));
    Path script = dir.resolve("strata-overlay");
    Files.writeString(script, "#!/bin/sh\nexec " + TestUser.java() + " -XX:+UseSerialGC"
        + " -XX:TieredStopAtLevel=1 -Dstrata.main=" + Main.class.getName() + " -cp " + cp
        + " " + Main.class.getName() + " overlay \"$@\"\n");
    Posix.chmod(script, 0755);
    sh("chmod -R a+rX " + dir);
    return script;
  }

  private static String javaForClient() {
    return client.resolveSibling("java").toString();
  }

  /** A strata command as the user, through the client (to the user's daemon). */
  private static TestUser.Result daemon(String args) throws Exception {
    return user.sh("export XDG_RUNTIME_DIR=" + runtimeDir + " STRATA_JAVA=" + javaForClient()
        + "; " + client + " " + args);
  }

  /** How many commands the user's daemon has served. */
  private static long served() throws Exception {
    TestUser.Result r = daemon("daemon status --format json");
    assertThat(r.code()).as(r.output()).isZero();
    return io.strata.layers.base.Json.MAPPER.readTree(r.output()).path("commandsServed")
        .asLong();
  }

  private static String sh(String script) throws Exception {
    return CommitTest.sh(script);
  }

  /** Runs a script as the test user with podman's rootless environment and one storage.conf. */
  private static String asUser(String name, String script) throws Exception {
    Path dir = base.resolve("home").resolve(name);
    String env = "export XDG_RUNTIME_DIR=" + runtimeDir + " CONTAINERS_STORAGE_CONF=" + dir
        + "/storage.conf STRATA_JAVA=" + javaForClient() + "; cd " + dir + " && ";
    TestUser.Result r = user.sh(env + script);
    assertThat(r.code()).as(name + ": " + script + "\n" + r.output()).isZero();
    return r.output();
  }

  /** A storage.conf (as the user) whose overlay driver mounts through {@code program}. */
  private static void storage(String name, String program) throws Exception {
    user.sh("mkdir -p ~/" + name + " && printf '[storage]\\ndriver = \"overlay\"\\n"
        + "graphroot = \"%s\"\\nrunroot = \"%s\"\\n[storage.options.overlay]\\n"
        + "mount_program = \"%s\"\\n' ~/" + name + "/graph " + runtimeDir + "/" + name
        + " " + program + " > ~/" + name + "/storage.conf");
  }

  private static Map<String, String> programs() {
    Map<String, String> p = new TreeMap<>();
    p.put("strata", strataOverlay.toString());
    p.put("strata-daemon", client.resolveSibling("strata-overlay").toString());
    p.put("fuse-overlayfs", "/usr/bin/fuse-overlayfs");
    return p;
  }

  @Test
  void aRootlessContainerWritesTheSameUpperAsOnFuseOverlayfs() throws Exception {
    String script = "echo hi > /hello && mkdir -p /made/sub && echo m > /made/sub/f"
        + " && chown -R 5:6 /made && chown 1000:1000 /hello && chmod 4755 /made/sub/f"
        + " && rm /bin/ls && rm -r /opq && mkdir /opq && echo n > /opq/new"
        + " && ln -s /hello /link && test $(id -u) = 0"
        + " && grep -q \" / / .* - fuse\" /proc/self/mountinfo";
    Map<String, Map<String, String>> uppers = new TreeMap<>();
    for (Map.Entry<String, String> p : programs().entrySet()) {
      String name = "run-" + p.getKey();
      storage(name, p.getValue());
      asUser(name, "podman load -q -i " + base.resolve("bb-archive.tar"));
      long before = served();
      asUser(name, "podman run --name t --runtime runc --network none " + ULIMITS
          + " localhost/bb:1 sh -c '" + script + "'");
      if (p.getKey().equals("strata-daemon")) {
        // the status itself is one command; the mount the other
        assertThat(served()).as("the daemon served the mount").isGreaterThanOrEqualTo(before + 2);
      }
      Path upper = Path.of(asUser(name,
          "podman inspect --format '{{.GraphDriver.Data.UpperDir}}' t").trim());
      uppers.put(p.getKey(), tree(upper));
      // podman commit reads the container's changes through the mount program
      asUser(name, "podman commit -q t committed:1");
      assertThat(asUser(name, "podman run --rm --runtime runc --network none " + ULIMITS
          + " localhost/committed:1 sh -c 'cat /hello; ls /opq; ls -n /made/sub/f'"))
          .contains("hi\n").contains("new\n").doesNotContain("old").contains(" 5 ");
      asUser(name, "podman rm t");
      assertThat(upper).as("podman rm removes the upper").doesNotExist();
      asUser(name, "podman rmi -a -f");
    }
    Map<String, String> strata = uppers.get("strata");
    // root of the container is the user on the host; its id 5 is the 5th subordinate id
    assertThat(strata.get("hello")).startsWith("f 644 " + (subuid + 999) + ":" + (subgid + 999));
    assertThat(strata.get("made/sub/f")).startsWith("f 4755 " + (subuid + 4) + ":" + (subgid + 5));
    assertThat(strata.get("bin/ls")).isEqualTo("c 0/0 " + user.uid + ":" + user.gid);
    assertThat(strata).containsKeys("opq/.wh..wh..opq", "opq/new").doesNotContainKey("opq/old");
    Map<String, String> fuseOverlayfs = uppers.get("fuse-overlayfs");
    assertThat(fuseOverlayfs).containsKeys("opq/.wh..wh..opq", "opq/new");
    assertThat(withoutMarkersOfNewDirectories(strata))
        .isEqualTo(withoutMarkersOfNewDirectories(fuseOverlayfs));
    assertThat(uppers.get("strata-daemon")).isEqualTo(strata);
  }

  /**
   * A user's own mounts on the host, with their daemon running: `strata mount` and
   * `strata overlay` are served by the daemon (no JVM of their own), made by fusermount3 in
   * the client's namespaces (the daemon's are its own: a mount there would not be seen), with
   * the host's ids; `strata umount` (the daemon's, the client unmounting on its word) and
   * `fusermount3 -u` end them. Before, the command went to the daemon, which mounted in its
   * own namespace, out of the user's sight.
   */
  @Test
  void aUsersMountsOnTheHostAreServedByTheirDaemon() throws Exception {
    assertThat(daemon("import -q " + base.resolve("bb.tar") + " --name host:1").code()).isZero();
    Path mp = base.resolve("home/host-mnt");
    Path plain = base.resolve("home/plain");
    assertThat(user.sh("mkdir -p " + mp + " " + plain + "/l " + plain + "/u " + plain + "/w "
        + plain + "/m " + plain + "/u2 " + plain + "/w2 && echo below > " + plain + "/l/f")
        .code()).isZero();
    String javas = sh("pgrep -c -u " + user.uid + " java || true").trim();
    long before;
    TestUser.Result umount;
    TestUser.Result r = daemon("mount host:1 " + mp);
    assertThat(r.code()).as(r.output()).isZero();
    r = daemon("overlay -o lowerdir=" + plain + "/l,upperdir=" + plain + "/u,workdir=" + plain
        + "/w " + plain + "/m");
    assertThat(r.code()).as(r.output()).isZero();
    try {
      // the host's mount table (this test runs there), made by fusermount3 for the user
      assertThat(sh("grep ' " + mp + " ' /proc/mounts")).contains("fuse.strata")
          .contains("user_id=" + user.uid);
      assertThat(sh("grep ' " + plain + "/m ' /proc/mounts")).contains("user_id=" + user.uid);
      assertThat(sh("pgrep -c -u " + user.uid + " java || true").trim()).as("no JVM of their own")
          .isEqualTo(javas);
      assertThat(daemon("daemon status").output()).contains(mp.toString())
          .contains(plain + "/m");
      // the image's root-owned files are the user's on the host, as a JVM of their own shows
      // them; what the user writes is theirs on disk
      r = user.sh("stat -c '%u:%g' " + mp + "/etc/passwd && echo made > " + mp + "/made"
          + " && cat " + plain + "/m/f && echo new > " + plain + "/m/n && stat -c '%u:%g' "
          + plain + "/u/n");
      assertThat(r.code()).as(r.output()).isZero();
      assertThat(r.output()).isEqualTo(user.uid + ":" + user.gid + "\nbelow\n" + user.uid + ":"
          + user.gid + "\n");
      // one kept in the foreground is served by a JVM of its own (the daemon could not unmount
      // it from its namespace when it ends), which ends with it
      assertThat(user.sh("mkdir -p " + plain + "/fg " + plain + "/u3 " + plain + "/w3").code())
          .isZero();
      daemon("overlay -f -o lowerdir=" + plain + "/l,upperdir=" + plain + "/u3,workdir=" + plain
          + "/w3 " + plain + "/fg > " + plain + "/fg.log 2>&1 < /dev/null & echo $! > " + plain
          + "/fg.pid");
      long until = System.nanoTime() + 60_000_000_000L;
      while (sh("grep -c ' " + plain + "/fg ' /proc/mounts || true").trim().equals("0")) {
        assertThat(System.nanoTime()).as(Files.readString(plain.resolve("fg.log")))
            .isLessThan(until);
        Thread.sleep(100);
      }
      assertThat(daemon("daemon status").output()).doesNotContain(plain + "/fg");
      assertThat(user.sh("cat " + plain + "/fg/f && fusermount3 -u " + plain + "/fg").output())
          .isEqualTo("below\n");
      String fg = Files.readString(plain.resolve("fg.pid")).trim();
      while (!sh("ps -o pid= -p " + fg + " || true").isBlank()) {
        assertThat(System.nanoTime()).as("the foreground mount's JVM ends with its mount")
            .isLessThan(until);
        Thread.sleep(100);
      }
      // a mountpoint that is not the user's: fusermount3's refusal, said, and nothing mounted
      Path roots = Files.createDirectories(base.resolve("roots"));
      r = daemon("overlay -o lowerdir=" + plain + "/l,upperdir=" + plain + "/u2,workdir="
          + plain + "/w2 " + roots);
      assertThat(r.code()).isNotZero();
      assertThat(r.output()).contains("fusermount3");
      assertThat(sh("grep -c ' " + roots + " ' /proc/mounts || true").trim()).isEqualTo("0");
    } finally {
      // whatever failed above: nothing of this test stays mounted
      user.sh("for m in " + plain + "/m " + plain + "/fg; do ! grep -q \" $m \" /proc/mounts"
          + " || fusermount3 -u -z $m; done");
      before = served();
      umount = daemon("umount --rm " + mp);
    }
    assertThat(umount.code()).as(umount.output()).isZero();
    // the daemon served it (the status is one command, the umount the other), the client
    // unmounted on its word
    assertThat(served()).isEqualTo(before + 2);
    r = daemon("umount " + mp);
    assertThat(r.code()).as(r.output()).isEqualTo(3);
    assertThat(r.output()).contains("is not a FUSE mount");
    assertThat(sh("grep -c ' " + base + "/home/' /proc/mounts || true").trim()).isEqualTo("0");
    long deadline = System.nanoTime() + 10_000_000_000L;
    while (daemon("daemon status").output().contains(base + "/home/")) {
      assertThat(System.nanoTime()).as("the daemon still serves a mount that is gone")
          .isLessThan(deadline);
      Thread.sleep(100);
    }
    assertThat(daemon("rmi host:1").code()).isZero();
  }

  /** The directories of the test image: only there does an opaque marker mean something. */
  private static final java.util.Set<String> IMAGE_DIRECTORIES =
      java.util.Set.of("", "bin", "etc", "opq", "opq/old");

  /**
   * An upper without the opaque markers of directories no lower layer has. fuse-overlayfs marks
   * every directory it creates opaque (a {@code .wh..wh..opq} file and, in a user namespace, a
   * {@code .wh..opq} whiteout device beside it), also where nothing below could show through;
   * kernel overlayfs and strata mark only a directory that replaces a lower one. Such markers
   * change nothing that any reader of the upper sees.
   */
  private static Map<String, String> withoutMarkersOfNewDirectories(Map<String, String> upper) {
    Map<String, String> out = new TreeMap<>(upper);
    out.keySet().removeIf(k -> {
      int slash = k.lastIndexOf('/');
      String dir = slash < 0 ? "" : k.substring(0, slash);
      String name = k.substring(slash + 1);
      return name.equals(".wh..opq")
          || name.equals(".wh..wh..opq") && !IMAGE_DIRECTORIES.contains(dir);
    });
    return out;
  }

  @Test
  void rootlessBuildahBuildsTheSameLayersAsOnFuseOverlayfs() throws Exception {
    Path ctx = Files.createDirectories(base.resolve("ctx"));
    Files.writeString(ctx.resolve("Containerfile"), "FROM localhost/bb:1\n"
        + "RUN echo a > /a && mkdir -p /d/e /keep && echo x > /d/e/x && echo k > /keep/k"
        + " && chown 7:8 /a /keep/k\n"
        + "RUN rm /bin/ls && chmod 700 /d && rm -r /d/e /opq && mkdir /opq && echo y > /d/y"
        + " && chmod 640 /a && chown -R 9:9 /d\n");
    sh("chmod -R a+rX " + ctx);
    Map<String, Map<String, String>> layers = new TreeMap<>();
    for (Map.Entry<String, String> p : programs().entrySet()) {
      String name = "build-" + p.getKey();
      storage(name, p.getValue());
      asUser(name, "buildah pull -q docker-archive:" + base.resolve("bb-archive.tar"));
      asUser(name, "buildah bud -q --runtime runc --network none --layers=false " + ULIMITS
          + " -f " + ctx.resolve("Containerfile") + " -t built:1 " + ctx);
      asUser(name, "buildah push -q localhost/built:1 oci:$HOME/" + name + "/out:built");
      layers.put(p.getKey(), PodmanTest.layerContents(
          base.resolve("home").resolve(name).resolve("out")));
      asUser(name, "buildah rm -a && buildah rmi -a -f");
    }
    assertThat(String.valueOf(layers.get("strata")))
        .contains("bin/.wh.ls", "opq/.wh.old", "a=-rw-r----- 7/8", "d/=drwx------ 9/9");
    assertThat(layers.get("strata")).isEqualTo(layers.get("fuse-overlayfs"));
    assertThat(layers.get("strata-daemon")).isEqualTo(layers.get("fuse-overlayfs"));
  }

  /**
   * Each entry of an upper: type, mode, host owner, and content (files), target (links) or
   * device (whiteouts). Times differ from run to run; the opaque marker file's own mode is
   * each program's choice (fuse-overlayfs 0700, strata 0644) and not compared.
   */
  private static Map<String, String> tree(Path upper) throws Exception {
    Map<String, String> out = new TreeMap<>();
    try (Stream<Path> s = Files.walk(upper)) {
      for (Path p : (Iterable<Path>) s::iterator) {
        if (p.equals(upper)) {
          continue;
        }
        String rel = upper.relativize(p).toString();
        var a = RawFs.lstat(RawFs.AT_FDCWD, RawFs.raw(p));
        int type = a.mode() & 0170000;
        String owner = a.uid() + ":" + a.gid();
        String mode = Integer.toOctalString(a.mode() & 07777);
        out.put(rel, switch (type) {
          case 0040000 -> "d " + mode + " " + owner;
          case 0120000 -> "l " + owner + " -> " + Files.readSymbolicLink(p);
          case 0020000 -> "c " + (a.rdev() >>> 8) + "/" + (a.rdev() & 0xff) + " " + owner;
          case 0100000 -> rel.endsWith(".wh..wh..opq") ? "f marker " + owner
              : "f " + mode + " " + owner + " " + HexFormat.of().formatHex(
                  MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(p)));
          default -> "? " + Integer.toOctalString(type);
        });
      }
    }
    return out;
  }
}
