package io.strata.runtime.container;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.strata.layers.LayerStore;
import io.strata.layers.base.Progress;
import io.strata.layers.fs.Mounts;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * What a container must not reach, in one place to audit: host devices, paths outside its root,
 * ids that wrap, the system calls Docker's default profile denies, an image that points /proc
 * elsewhere, inheritable capabilities, the host path of the init. Each test failed before the
 * hardening of issue 8 (the device, volume, --user and seccomp cases with the reproductions of
 * the issue). Containers run on busybox-static plus {@code probe} (src/test/c/probe.c).
 */
class SecurityTest {
  @TempDir static Path shared;
  static LayerStore store;
  @TempDir Path out;

  @BeforeAll
  static void buildImages() throws Exception {
    Path root = TestImages.busyboxRoot(shared.resolve("bb"));
    TestImages.compileStatic(Path.of("src/test/c/probe.c"), root.resolve("bin/probe"));
    store = LayerStore.open(shared.resolve("store"), System.err::println);
    store.importImage(TestImages.tar(root, shared.resolve("bb.tar")), "bb:test", null,
        Progress.NONE);
    // /etc points out of the root: a volume below it must not land on the host.
    Path escape = shared.resolve("escape");
    copyRoot(root, escape);
    Files.delete(escape.resolve("etc/passwd"));
    Files.delete(escape.resolve("etc"));
    Files.createSymbolicLink(escape.resolve("etc"), Path.of("/../../" + outside()));
    store.importImage(TestImages.tar(escape, shared.resolve("escape.tar")), "escape:test", null,
        Progress.NONE);
    // /proc, /dev, /sys as symlinks: each image must be refused.
    Map<String, String> links = Map.of("proc", "/", "dev", "../../..", "sys", "/etc");
    for (var e : links.entrySet()) {
      Path r = shared.resolve("link-" + e.getKey());
      copyRoot(root, r);
      Files.createSymbolicLink(r.resolve(e.getKey()), Path.of(e.getValue()));
      store.importImage(TestImages.tar(r, shared.resolve(e.getKey() + ".tar")),
          "link-" + e.getKey() + ":test", null, Progress.NONE);
    }
  }

  private static Path outside() {
    return shared.resolve("outside-of-the-root");
  }

  private static void copyRoot(Path from, Path to) throws Exception {
    assertThat(new ProcessBuilder("cp", "-a", from.toString(), to.toString()).inheritIO().start()
        .waitFor()).isZero();
  }

  @AfterEach
  void nothingLeftBehind() throws Exception {
    assertThat(Mounts.table()).noneMatch(e -> e.mountpoint().startsWith(store.root()));
    for (String c : List.of("memory", "cpu", "pids", "devices")) {
      Path dir = Path.of("/sys/fs/cgroup", c, "strata");
      if (Files.isDirectory(dir)) {
        try (var s = Files.list(dir)) {
          assertThat(s.filter(Files::isDirectory)).as("cgroups left in " + dir).isEmpty();
        }
      }
    }
  }

  private int run(String image, String script, String... opts) throws Exception {
    return run(image, script, true, opts);
  }

  private int run(String image, String script, boolean seccomp, String... opts) throws Exception {
    List<String> volumes = new java.util.ArrayList<>(List.of(out + ":/out"));
    volumes.addAll(List.of(opts));
    return new ContainerRunner(store, System.err::println).run(new ContainerRunner.Spec(null,
        image, List.of("/bin/sh", "-c", script), List.of(), null, null, null, "none", volumes,
        false, false, true, Limits.NONE, null, seccomp));
  }

  private String read(String file) throws Exception {
    return Files.readString(out.resolve(file)).trim();
  }

  // ---- devices (issue 8, item 1)

  @Test
  void aBlockDeviceMadeInsideCannotBeWrittenInDevNorOnTheRootfs() throws Exception {
    assertThat(run("bb:test", "mknod /dev/x b 7 1; echo X | dd of=/dev/x 2> /out/dev; echo $? >> /out/dev;"
        + " mknod /x b 7 1; echo X | dd of=/x 2> /out/root; echo $? >> /out/root")).isZero();
    assertThat(read("dev")).contains("dd: can't open '/dev/x'").endsWith("1");
    assertThat(read("root")).contains("dd: can't open '/x'").endsWith("1");
  }

  @Test
  void aCharDeviceOutsideTheAllowListCannotBeRead() throws Exception {
    // 1:1 is /dev/mem; 4:1 a virtual console.
    assertThat(run("bb:test", "mknod /dev/mem c 1 1; head -c1 /dev/mem > /dev/null 2> /out/mem;"
        + " echo $? >> /out/mem; mknod /tty1 c 4 1; echo x > /tty1 2> /out/tty; echo $? >> /out/tty"))
        .isZero();
    assertThat(read("mem")).contains("/dev/mem").endsWith("1");
    assertThat(read("tty")).isEqualTo("1"); // the shell could not open it
  }

  @Test
  void theStandardDevicesWork() throws Exception {
    assertThat(run("bb:test", "echo x > /dev/null && head -c 8 /dev/zero | wc -c > /out/zero"
        + " && head -c 8 /dev/urandom | wc -c > /out/rand && head -c 8 /dev/random | wc -c"
        + " >> /out/rand && ! echo x > /dev/full && [ -c /dev/pts/ptmx ] && echo ok > /out/ok"))
        .isZero();
    assertThat(read("zero")).isEqualTo("8");
    assertThat(read("rand")).isEqualTo("8\n8");
    assertThat(read("ok")).isEqualTo("ok");
  }

  @Test
  void theDevicesCgroupHoldsExactlyThePolicy() throws Exception {
    Cgroups.Layout layout = Cgroups.detect();
    Path devices = layout.v1().get(Cgroups.DEVICES);
    org.junit.jupiter.api.Assumptions.assumeTrue(devices != null, "no v1 devices controller here");
    try (Cgroup cg = Cgroups.create(layout, "test-devices")) {
      assertThat(cg.restrictsDevices()).isTrue();
      List<String> list = Files.readAllLines(devices.resolve("strata/test-devices/devices.list"));
      assertThat(list).containsExactlyInAnyOrderElementsOf(
          DevicePolicy.ALLOWED.stream().map(DevicePolicy.Rule::line).toList());
    }
  }

  // ---- paths resolved inside the root (item 2)

  @Test
  void aVolumeBelowASymlinkOutOfTheRootStaysInTheRoot() throws Exception {
    Path vol = Files.createDirectories(out.resolve("vol"));
    int code = run("escape:test", "true", vol + ":/etc/x");
    // In the root, /etc leads to /…/outside-of-the-root, which the image lacks: refused.
    assertThat(code).isEqualTo(125);
    assertThat(Files.exists(outside())).as("made on the host").isFalse();
  }

  @Test
  void aVolumeTargetWithDotDotIsAUsageError() {
    assertThatThrownBy(() -> run("bb:test", "true", out + ":/../../../tmp/outside/y"))
        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("'..' is not allowed");
    assertThatThrownBy(() -> run("bb:test", "true", out + ":/proc/sys"))
        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("cannot mount on");
  }

  @Test
  void aMissingVolumeTargetIsMadeInsideTheRoot() throws Exception {
    Files.writeString(Files.createDirectories(out.resolve("data")).resolve("f"), "inside");
    assertThat(run("bb:test", "cat /deep/er/f > /out/seen", out.resolve("data") + ":/deep/er"))
        .isZero();
    assertThat(read("seen")).isEqualTo("inside");
  }

  // ---- ids (item 3)

  @ParameterizedTest
  @ValueSource(strings = {"4294967296", "4294967296:4294967297", "99999999999", "4294967295",
      "0:4294967295", "-1", "root", "1:2:3"})
  void idsThatWouldWrapOrMeanNothingAreUsageErrors(String user) {
    assertThatThrownBy(() -> Users.resolve(user, "--user", path -> null))
        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("--user '" + user);
  }

  @Test
  void theLargestIdsAreTakenAsThey() {
    // A number the image does not know gets group 0, as runc gives it.
    assertThat(Users.resolve("4294967294", "--user", path -> null)).isEqualTo("4294967294:0");
    assertThat(Users.resolve("0:4294967294", "--user", path -> null)).isEqualTo("0:4294967294");
  }

  // ---- system calls (item 4)

  static final List<String> SECCOMP_ONLY = List.of("clone-newuser", "clone3", "keyctl",
      "add_key", "setns", "name_to_handle_at", "io_uring_setup", "userfaultfd", "unshare");

  private Map<String, Integer> probe(boolean seccomp) throws Exception {
    // unshare last: once in a new user namespace, a second one is refused for other reasons.
    assertThat(run("bb:test", "probe clone-plain getpid mount " + String.join(" ", SECCOMP_ONLY)
        + " > /out/probe", seccomp)).isZero();
    Map<String, Integer> m = new HashMap<>();
    for (String line : Files.readAllLines(out.resolve("probe"))) {
      String[] p = line.split(" ");
      m.put(p[0], Integer.parseInt(p[1]));
    }
    return m;
  }

  @Test
  void theFilterDeniesWhatDockersProfileDeniesAndNothingElseThatProgramsNeed() throws Exception {
    Map<String, Integer> on = probe(true);
    Map<String, Integer> off = probe(false);
    for (String call : SECCOMP_ONLY) {
      int expected = call.equals("clone3") ? 38 /* ENOSYS: libc falls back to clone */ : 1;
      assertThat(on.get(call)).as(call + " under the filter").isEqualTo(expected);
      assertThat(off.get(call)).as(call + " without the filter").isNotEqualTo(expected);
    }
    assertThat(on.get("mount")).isEqualTo(1);
    assertThat(on.get("clone-plain")).isZero(); // fork still works
    assertThat(on.get("getpid")).isZero();
  }

  @Test
  void statusShowsTheFilterAndOrdinaryProgramsRun() throws Exception {
    assertThat(run("bb:test", "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status > /out/st;"
        + " tar -cf /root/t.tar /etc && mkdir /root/x && tar -C /root/x -xf /root/t.tar"
        + " && sort /etc/passwd | sha256sum > /dev/null && echo ran > /out/ran")).isZero();
    assertThat(read("st")).contains("Seccomp:\t2").contains("NoNewPrivs:\t1");
    assertThat(read("ran")).isEqualTo("ran");
  }

  // ---- the image's own /proc, /dev, /sys; capabilities; the init (item 5)

  @ParameterizedTest
  @ValueSource(strings = {"proc", "dev", "sys"})
  void anImageWhoseSpecialDirectoryIsASymlinkIsRefused(String dir) throws Exception {
    assertThat(run("link-" + dir + ":test", "echo started > /out/started")).isEqualTo(125);
    assertThat(Files.exists(out.resolve("started"))).isFalse();
  }

  @Test
  void noInheritableCapabilitiesAndInitRunsFromASealedCopy() throws Exception {
    int code = new ContainerRunner(store, System.err::println).run(new ContainerRunner.Spec(null,
        "bb:test", List.of("/bin/sh", "-c", "grep CapInh /proc/self/status > /out/inh;"
            + " readlink /proc/1/exe > /out/exe; echo x >> /proc/1/exe; echo $? > /out/write"),
        List.of(), null, null, null, "none", List.of(out + ":/out"), false, true, true,
        Limits.NONE, null, true));
    assertThat(code).isZero();
    assertThat(read("inh")).endsWith("0000000000000000");
    assertThat(read("exe")).startsWith("/memfd:strata-init");
    assertThat(read("write")).isNotEqualTo("0");
  }
}
