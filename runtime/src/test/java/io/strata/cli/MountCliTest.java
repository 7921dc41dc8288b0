package io.strata.cli;

import static org.assertj.core.api.Assertions.assertThat;

import io.strata.union.mount.Background;
import io.strata.layers.fs.Mounts;
import java.io.ByteArrayOutputStream;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** strata mount, umount and overlay as people and containers/storage run them. */
class MountCliTest {
  @TempDir Path tmp;
  Path root;
  Path mp;

  record Result(int code, String out, String err) {}

  @BeforeEach
  void setUp() throws Exception {
    System.setProperty(Background.MAIN_PROPERTY, Main.class.getName());
    root = tmp.resolve("store");
    mp = Files.createDirectories(tmp.resolve("mnt"));
    Path layer = tmp.resolve("layer.tar");
    try (TarArchiveOutputStream tar = new TarArchiveOutputStream(Files.newOutputStream(layer))) {
      for (String[] f : new String[][] {{"etc/hostname", "img\n"}, {"bin/tool", "#!/bin/sh\n"}}) {
        byte[] b = f[1].getBytes(StandardCharsets.UTF_8);
        TarArchiveEntry e = new TarArchiveEntry(f[0]);
        e.setSize(b.length);
        tar.putArchiveEntry(e);
        tar.write(b);
        tar.closeArchiveEntry();
      }
    }
    assertThat(strata("--root", root.toString(), "import", layer.toString(), "--name", "img:1")
        .code()).isZero();
  }

  @AfterEach
  void unmountLeftovers() throws Exception {
    for (Path p : new Path[] {mp, tmp.resolve("ovl")}) {
      if (Mounts.isMountpoint(p)) {
        Mounts.unmount(p, true);
      }
    }
    // the logs a mount keeps (its server killed, its start refused) are this test's to remove
    if (Files.isDirectory(Background.logDir())) {
      try (var logs = Files.list(Background.logDir())) {
        for (Path log : logs.toList()) {
          try {
            if (Files.readString(log).contains(tmp.toString())) {
              Files.deleteIfExists(log);
            }
          } catch (java.io.IOException gone) {
            // removed by its mount meanwhile, or not text
          }
        }
      }
    }
  }

  Result strata(String... args) {
    TestDaemon.Output o = TestDaemon.run(args);
    return new Result(o.code(), o.out(), o.err());
  }

  /**
   * podman mounts a container's root again right after unmounting it (commit after run): the
   * server of the mount just unmounted still held the mountpoint's lock for a moment, and 1 in
   * 40 such mounts failed with "another strata is mounting or serving". A mount now waits for
   * a lock that is being let go. Through the daemon (fast, so the race is hit); in-process
   * each mount is a JVM start, which leaves the old server time to end.
   */
  @Test
  void mountingAgainRightAfterAnUnmountSucceeds() throws Exception {
    Path lower = Files.createDirectories(tmp.resolve("plain-lower"));
    Files.writeString(lower.resolve("f"), "x");
    int rounds = TestDaemon.on() ? 40 : 3;
    for (int i = 0; i < rounds; i++) {
      Path up = Files.createDirectories(tmp.resolve("up" + i));
      Path work = Files.createDirectories(tmp.resolve("work" + i));
      Result r = strata("overlay", "-o", "lowerdir=" + lower + ",upperdir=" + up + ",workdir="
          + work, mp.toString());
      assertThat(r.code()).as("round " + i + ": " + r.err()).isZero();
      assertThat(mp.resolve("f")).hasContent("x");
      Mounts.unmount(mp, false);
    }
  }

  /** Issue 8, item 17: both printed "mounted", and the loser's clean-up unmounted the winner. */
  @Test
  void twoMountsOnOneDirectoryAtOnceLeaveExactlyOneWorking() throws Exception {
    java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(2);
    try {
      java.util.concurrent.Callable<Integer> mount = () -> Main.run("--root", root.toString(),
          "mount", "img:1", mp.toString());
      var a = pool.submit(mount);
      var b = pool.submit(mount);
      java.util.List<Integer> codes = java.util.List.of(a.get(), b.get());
      assertThat(codes).containsExactlyInAnyOrder(0, 1);
    } finally {
      pool.shutdownNow();
    }
    Thread.sleep(1000); // the loser's daemon is gone by now; the winner's mount must be there
    assertThat(Mounts.isFuseMountpoint(mp)).isTrue();
    assertThat(mp.resolve("etc/hostname")).hasContent("img");
    Path real = mp.toRealPath();
    assertThat(Mounts.table().stream().filter(e -> e.mountpoint().equals(real)))
        .hasSize(1);
    Result again = strata("--root", root.toString(), "mount", "img:1", mp.toString());
    assertThat(again.code()).isEqualTo(Main.FAILED);
    assertThat(again.err()).contains("already a mountpoint");
    assertThat(strata("--root", root.toString(), "umount", mp.toString()).code()).isZero();
    try (var dirs = Files.list(root.resolve("mounts"))) {
      assertThat(dirs).hasSize(1);
    }
  }

  @Test
  void mountReturnsOnceTheMountAnswersAndUmountUnmounts() throws Exception {
    Result r = strata("--root", root.toString(), "mount", "img:1", mp.toString());
    assertThat(r.code()).as(r.err()).isZero();
    assertThat(Mounts.isFuseMountpoint(mp)).isTrue();
    assertThat(mp.resolve("etc/hostname")).hasContent("img");
    Files.writeString(mp.resolve("etc/hostname"), "changed\n");

    Result again = strata("--root", root.toString(), "mount", "img:1", mp.toString());
    assertThat(again.code()).isEqualTo(Main.FAILED);
    assertThat(again.err()).contains("already a mountpoint");

    assertThat(strata("--root", root.toString(), "umount", mp.toString()).code()).isZero();
    assertThat(Mounts.isMountpoint(mp)).isFalse();
    // The write survives in the upper under the store, and a new mount of the same place sees it.
    assertThat(strata("--root", root.toString(), "mount", "img:1", mp.toString()).code()).isZero();
    assertThat(mp.resolve("etc/hostname")).hasContent("changed");
    assertThat(strata("--root", root.toString(), "umount", mp.toString()).code()).isZero();
  }

  @Test
  void readOnlyMountRefusesWrites() throws Exception {
    assertThat(strata("--root", root.toString(), "mount", "--read-only", "img:1", mp.toString())
        .code()).isZero();
    assertThat(Files.isWritable(mp.resolve("etc/hostname"))).isTrue(); // mode bits say so...
    try {
      Files.writeString(mp.resolve("etc/hostname"), "x");
      throw new AssertionError("write succeeded on a read-only mount");
    } catch (java.nio.file.FileSystemException e) {
      assertThat(e.getMessage()).contains("Read-only file system");
    }
    assertThat(strata("umount", mp.toString()).code()).isZero();
  }

  /** Issue 16, item 15: uppers of `strata mount` outlived umount and gc with nothing to remove them. */
  @Test
  void umountRmRemovesWhatWasWrittenAlsoAfterTheUnmount() throws Exception {
    String r = root.toString();
    assertThat(strata("--root", r, "mount", "img:1", mp.toString()).code()).isZero();
    Files.writeString(mp.resolve("etc/new"), "kept");
    assertThat(strata("--root", r, "umount", mp.toString()).code()).isZero();
    Path mounts = root.resolve("mounts");
    try (var in = Files.list(mounts)) {
      assertThat(in.toList()).hasSize(1); // kept for the next mount, diff and commit
    }
    assertThat(strata("--root", r, "gc").code()).isZero();
    try (var in = Files.list(mounts)) {
      assertThat(in.toList()).as("gc keeps what the user wrote").hasSize(1);
    }
    assertThat(strata("--root", r, "mount", "img:1", mp.toString()).code()).isZero();
    assertThat(mp.resolve("etc/new")).hasContent("kept");
    assertThat(strata("--root", r, "umount", mp.toString()).code()).isZero();
    assertThat(strata("--root", r, "umount", "--rm", mp.toString()).code()).isZero();
    try (var in = Files.list(mounts)) {
      assertThat(in.toList()).isEmpty();
    }
    assertThat(strata("--root", r, "diff", mp.toString()).code()).isEqualTo(Main.NOT_FOUND);
    assertThat(strata("--root", r, "umount", "--rm", mp.toString()).code())
        .isEqualTo(Main.NOT_FOUND);
    // mounted and removed in one step
    assertThat(strata("--root", r, "mount", "img:1", mp.toString()).code()).isZero();
    Files.writeString(mp.resolve("etc/other"), "x");
    assertThat(strata("--root", r, "umount", "--rm", mp.toString()).code()).isZero();
    assertThat(Mounts.isMountpoint(mp)).isFalse();
    try (var in = Files.list(mounts)) {
      assertThat(in.toList()).isEmpty();
    }
  }

  @Test
  void badInputGetsAClearErrorAndTheRightExitCode() {
    assertThat(strata("--root", root.toString(), "mount", "nope:1", mp.toString()).code())
        .isEqualTo(Main.NOT_FOUND);
    Result noDir = strata("--root", root.toString(), "mount", "img:1", tmp.resolve("x").toString());
    assertThat(noDir.code()).isEqualTo(Main.USAGE);
    assertThat(noDir.err()).contains("is not a directory");
    Result badOpt = strata("overlay", "-o", "lowerdir=" + tmp + ",timeout=soon", mp.toString());
    assertThat(badOpt.code()).isEqualTo(Main.USAGE);
    assertThat(badOpt.err()).contains("timeout=soon");
    for (String t : List.of("NaN", "-1", "0x1p-3", "Infinity")) { // issue 16, item 10
      Result badTimeout = strata("--root", root.toString(), "mount", "--timeout", t, "img:1",
          mp.toString());
      assertThat(badTimeout.code()).as(t).isEqualTo(Main.USAGE);
      assertThat(badTimeout.err()).contains("'" + t + "' is not a decimal number");
      Result overlayTimeout = strata("overlay", "-o", "lowerdir=" + tmp + ",timeout=" + t,
          mp.toString());
      assertThat(overlayTimeout.code()).as(t).isEqualTo(Main.USAGE);
    }
    Result noLower = strata("overlay", "-o", "upperdir=/x,workdir=/y", mp.toString());
    assertThat(noLower.code()).isEqualTo(Main.USAGE);
    assertThat(noLower.err()).contains("missing lowerdir");
    Result notMounted = strata("umount", mp.toString());
    assertThat(notMounted.code()).isEqualTo(Main.NOT_FOUND);
  }

  @Test
  void askingForIoUringWhereTheKernelHasItOffFailsSayingHowToTurnItOn() throws Exception {
    Path parameter = Path.of("/sys/module/fuse/parameters/enable_uring");
    org.junit.jupiter.api.Assumptions.assumeTrue(Files.exists(parameter));
    String was = Files.readString(parameter).trim();
    Files.writeString(parameter, "N");
    try {
      Path lower = Files.createDirectories(tmp.resolve("uring-lower"));
      for (int i = 0; i < 2; i++) { // twice: the second error must not carry the first's lines
        Result r = strata("overlay", "-o", "lowerdir=" + lower + ",transport=uring",
            mp.toString());
        assertThat(r.code()).as(r.err()).isNotZero();
        assertThat(r.err()).contains("enable_uring");
        assertThat(r.err().split("was asked for", -1)).as(r.err()).hasSize(2); // said once
        assertThat(Mounts.isMountpoint(mp)).isFalse();
      }
    } finally {
      Files.writeString(parameter, was);
    }
  }

  @Test
  void overlayTakesFuseOverlayfsArgumentsInBothForms() throws Exception {
    Path l1 = Files.createDirectories(tmp.resolve("l1"));
    Path l2 = Files.createDirectories(tmp.resolve("l2"));
    Files.writeString(l1.resolve("f"), "top");
    Files.writeString(l2.resolve("f"), "bottom");
    Files.writeString(l2.resolve("g"), "only below");
    Path ovl = Files.createDirectories(tmp.resolve("ovl"));
    String opts = "lowerdir=" + l1 + ":" + l2 + ",upperdir=" + Files.createDirectories(tmp.resolve("u"))
        + ",workdir=" + Files.createDirectories(tmp.resolve("w")) + ",fsync=0,nodev";
    // containers/storage: strata-overlay -o OPTS DIR
    Result r = strata("overlay", "-o", opts, ovl.toString());
    assertThat(r.code()).as(r.err()).isZero();
    assertThat(ovl.resolve("f")).hasContent("top");
    assertThat(ovl.resolve("g")).hasContent("only below");
    Files.writeString(ovl.resolve("g"), "changed");
    assertThat(tmp.resolve("u/g")).hasContent("changed");
    assertThat(strata("umount", ovl.toString()).code()).isZero();
    // mount.fuse3: strata-overlay SOURCE DIR -o OPTS, read-only without upperdir
    r = strata("overlay", "strata", ovl.toString(), "-o", "lowerdir=" + l1 + ":" + l2);
    assertThat(r.code()).as(r.err()).isZero();
    assertThat(ovl.resolve("g")).hasContent("only below");
    assertThat(strata("umount", ovl.toString()).code()).isZero();
  }

  @Test
  void umountRecoversAMountWhoseDaemonWasKilled() throws Exception {
    org.junit.jupiter.api.Assumptions.assumeFalse(TestDaemon.on(),
        "with a daemon no process serves this mount alone: DaemonTest kills the daemon");
    assertThat(strata("--root", root.toString(), "mount", "img:1", mp.toString()).code()).isZero();
    Optional<ProcessHandle> daemon = daemonOf(mp);
    assertThat(daemon).isPresent();
    daemon.get().destroyForcibly();
    awaitExit(daemon.get());
    assertThat(Files.exists(mp.resolve("etc/hostname"))).isFalse(); // not connected
    Result r = strata("--root", root.toString(), "umount", mp.toString());
    assertThat(r.code()).as(r.err()).isZero();
    assertThat(Mounts.isMountpoint(mp)).isFalse();
    assertThat(strata("--root", root.toString(), "mount", "img:1", mp.toString()).code()).isZero();
    assertThat(mp.resolve("etc/hostname")).hasContent("img");
    assertThat(strata("umount", mp.toString()).code()).isZero();
  }

  /**
   * The daemon serving {@code mountpoint}, found by its command line in /proc (the JDK's
   * ProcessHandle.Info gives no command line past 4 KiB, and a test's classpath is longer).
   */
  static Optional<ProcessHandle> daemonOf(Path mountpoint) throws java.io.IOException {
    try (var procs = Files.list(Path.of("/proc"))) {
      for (Path p : procs.filter(x -> x.getFileName().toString().matches("[0-9]+")).toList()) {
        String cmd;
        try {
          cmd = new String(Files.readAllBytes(p.resolve("cmdline")), StandardCharsets.UTF_8)
              .replace('\0', ' ');
        } catch (java.io.IOException gone) {
          continue;
        }
        if ((cmd.contains(" --foreground") && cmd.contains(" " + mountpoint + " "))
            || (cmd.contains(" overlay -f ") && cmd.endsWith(" " + mountpoint + " "))) {
          return ProcessHandle.of(Long.parseLong(p.getFileName().toString()));
        }
      }
    }
    return Optional.empty();
  }

  /** Waits for a process this JVM did not start directly (onExit can miss it once reaped). */
  private static void awaitExit(ProcessHandle p) throws InterruptedException {
    long deadline = System.nanoTime() + 30_000_000_000L;
    while (p.isAlive()) {
      assertThat(System.nanoTime()).as("process " + p.pid() + " did not exit").isLessThan(deadline);
      Thread.sleep(20);
    }
  }

  /**
   * A background mount's process logs to a file of its own in /run/strata/logs and removes it
   * once its mount has ended cleanly, when it says nothing but the routine lines: a node
   * starting thousands of containers kept a file per container in memory (tmpfs). A log that
   * says more stays.
   */
  @Test
  void aBackgroundMountRemovesItsRoutineLogAtItsEndAndKeepsOneThatSaysMore() throws Exception {
    org.junit.jupiter.api.Assumptions.assumeFalse(TestDaemon.on(),
        "with a daemon a background mount logs to the daemon's stderr, not to a file");
    Path lower = Files.createDirectories(tmp.resolve("plain-lower"));
    Files.writeString(lower.resolve("f"), "x");
    String hash = Integer.toHexString(mp.toAbsolutePath().normalize().hashCode());
    for (boolean warned : new boolean[] {false, true}) {
      Result r = strata("overlay", "-o", "lowerdir=" + lower, mp.toString());
      assertThat(r.code()).as(r.err()).isZero();
      Path log;
      try (var logs = Files.list(Background.logDir())) {
        log = logs.filter(p -> p.getFileName().toString().startsWith("overlay-" + hash + "-"))
            .filter(p -> {
              try {
                return Files.readString(p).contains(Background.READY + mp);
              } catch (java.io.IOException e) {
                return false;
              }
            }).findFirst().orElseThrow();
      }
      ProcessHandle server = daemonOf(mp).orElseThrow();
      if (warned) {
        Files.writeString(log, "strata: warning: something a person should read\n",
            java.nio.file.StandardOpenOption.APPEND);
      }
      assertThat(strata("umount", mp.toString()).code()).isZero();
      awaitExit(server);
      assertThat(Files.exists(log)).as(log + (warned ? ", which says more" : "")).isEqualTo(warned);
      Files.deleteIfExists(log);
    }
  }

  @Test
  void sigtermUnmountsCleanly() throws Exception {
    org.junit.jupiter.api.Assumptions.assumeFalse(TestDaemon.on(),
        "with a daemon no process serves this mount alone: TestDaemon stops it with SIGTERM");
    assertThat(strata("--root", root.toString(), "mount", "img:1", mp.toString()).code()).isZero();
    ProcessHandle daemon = daemonOf(mp).orElseThrow();
    daemon.destroy(); // SIGTERM
    awaitExit(daemon);
    assertThat(Mounts.isMountpoint(mp)).isFalse();
  }
}
