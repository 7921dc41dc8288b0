package io.strata.bench.side;

import io.strata.layers.fs.Posix;
import io.strata.union.mount.Background;
import io.strata.layers.fs.Mounts;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.LocalDate;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code strata bench}: the same layers mounted with strata, fuse-overlayfs and kernel
 * overlayfs (and a plain directory as the floor), the same workloads on each, backends in
 * turn, repeated; medians, spread and ratios to strata as Markdown, CSV and a PNG chart.
 */
@Command(name = "bench", mixinStandardHelpOptions = true,
    description = {"Benchmark strata beside fuse-overlayfs, kernel overlayfs and a plain"
        + " directory on the same layers (root: mounts, drop_caches).",
        "Builds its images once under --work (100,000 files over three layers with deletions"
            + " and changes, a 2 GiB file, a git repository, stacks of 1 to 64 layers).",
        "Backends: strata is its own transport over /dev/fuse, strata-uring over FUSE io_uring"
            + " (the fuse module's enable_uring is turned on for the run and put back after),"
            + " strata-daemon through one strata daemon, strata-jnr jnr-fuse;"
            + " strata-noxattrs and fuse-overlayfs-noxattrs (not run unless named) with their"
            + " noxattrs option (no extended attributes, so no file capabilities or ACLs)."})
public final class SideBySide implements Callable<Integer> {
  static final List<String> WORKLOADS = List.of("stat-walk-cold", "stat-walk-warm", "ls-lR-warm",
      "readdir-large", "seq-read-cold", "seq-read-warm", "random-4k-reads", "copy-up-large",
      "small-files", "small-reads-warm", "write-4k", "untar", "chmod-recursive", "git-status");

  @Option(names = "--runs", defaultValue = "3", description = "Repetitions (default ${DEFAULT-VALUE}).")
  int runs;

  @Option(names = "--work", defaultValue = "/var/tmp/strata-bench",
      description = "Where images and mounts live (default ${DEFAULT-VALUE}).")
  Path work;

  @Option(names = "--out", defaultValue = "bench-results",
      description = "Where results.md, results.csv and results.png go (default ${DEFAULT-VALUE}).")
  Path out;

  @Option(names = "--backends", split = ",",
      defaultValue = "plain,kernel,fuse-overlayfs,strata,strata-uring,strata-daemon,strata-jnr",
      description = "Backends to run (default ${DEFAULT-VALUE}).")
  List<String> backends;

  @Option(names = "--workloads", split = ",",
      description = "Only these workloads (default: all).")
  List<String> only;

  @Option(names = "--no-extras",
      description = "Skip the round-trip and layer-scaling measurements.")
  boolean noExtras;

  @Option(names = "--scaling", split = ",", defaultValue = "1,2,4,8,16,32,64",
      description = "Layer counts for the lookup scaling curve (default ${DEFAULT-VALUE}).")
  List<Integer> scaling;

  @Option(names = "--quick", description = "Tiny images and one pass: a smoke test, not numbers.")
  boolean quick;

  private final List<Path> mounted = new ArrayList<>();
  private static final Path URING = Path.of("/sys/module/fuse/parameters/enable_uring");

  public static void main(String[] args) {
    System.setProperty(Background.MAIN_PROPERTY, "io.strata.cli.Main");
    System.exit(new CommandLine(new SideBySide()).execute(args));
  }

  @Override
  public Integer call() throws Exception {
    if (!Posix.isRoot()) {
      throw new IllegalStateException("strata bench mounts overlays and drops caches: run as root");
    }
    Sizes sz = quick ? Sizes.QUICK : Sizes.FULL;
    Thread cleanup = new Thread(this::unmountAll, "bench-cleanup");
    Runtime.getRuntime().addShutdownHook(cleanup);
    String uringWas = null;
    if (backends.contains("strata-uring")) {
      // strata's own transport over FUSE io_uring: the fuse module's enable_uring on for the
      // run (a kernel without it drops the backend), put back as it was at the end
      if (Files.exists(URING)) {
        uringWas = Files.readString(URING).trim();
        Files.writeString(URING, "Y");
      } else {
        System.err.println("no FUSE over io_uring in this kernel: strata-uring left out");
        backends = new ArrayList<>(backends);
        backends.remove("strata-uring");
      }
    }
    try {
      Images img = Images.build(work.resolve(quick ? "images-quick" : "images"), sz);
      List<String> workloads = only == null ? WORKLOADS : only;
      for (String w : workloads) {
        if (!WORKLOADS.contains(w)) {
          throw new IllegalArgumentException("unknown workload " + w + " (" + WORKLOADS + ")");
        }
      }
      Report report = new Report(backends, workloads, machine());
      for (int run = 1; run <= runs; run++) {
        for (String b : backends) {
          System.err.printf("run %d/%d: %s%n", run, runs, b);
          Path dir = work.resolve("run/" + b);
          Path mp = mount(b, img.lowers(), dir);
          try {
            for (String w : workloads) {
              report.add(b, w, workload(w, mp, img, sz, dir));
            }
          } finally {
            unmount(b, mp);
          }
        }
      }
      for (String b : List.of("strata", "strata-uring", "strata-daemon", "strata-jnr",
          "fuse-overlayfs")) {
        if (backends.contains(b) && !noExtras) {
          report.roundTrip.put(b, roundTrip(b, img, sz));
        }
      }
      for (String b : List.of("strata", "strata-daemon", "strata-jnr", "fuse-overlayfs",
          "kernel")) {
        if (!backends.contains(b) || noExtras) {
          continue;
        }
        Map<Integer, Double> curve = new LinkedHashMap<>();
        for (int n : scaling) {
          Path dir = work.resolve("scale/" + b + "-" + n);
          Path mp = mount(b, img.stack(n, sz), dir);
          try {
            Sh.dropCaches();
            curve.put(n, Sh.time("find " + mp + "/bottom -printf '%s %i\\n'"));
          } finally {
            unmount(b, mp);
          }
        }
        report.scaling.put(b, curve);
      }
      report.write(out);
      System.out.println(report.markdown());
      System.out.println("wrote " + out.resolve("results.md") + ", results.csv, results.png");
      return 0;
    } finally {
      unmountAll();
      stopDaemon();
      if (uringWas != null) {
        Files.writeString(URING, uringWas);
      }
      try {
        Runtime.getRuntime().removeShutdownHook(cleanup);
      } catch (IllegalStateException shuttingDown) {
        // the hook runs anyway
      }
    }
  }

  private static String machine() throws IOException {
    String cpu = Sh.sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 || true").trim();
    String mem = Sh.sh("awk '/MemTotal/ {printf \"%.0f GiB\", $2/1048576}' /proc/meminfo").trim();
    return LocalDate.now() + ", " + Runtime.getRuntime().availableProcessors() + " cores ("
        + cpu + "), " + mem + ", Linux " + System.getProperty("os.version");
  }

  /**
   * The FUSE round trip: the median microseconds of an fstat of one open file with every
   * kernel cache off ({@code timeout=0}), so that each is a GETATTR answered by the daemon.
   */
  private double roundTrip(String backend, Images img, Sizes sz) throws IOException {
    Path dir = work.resolve("roundtrip/" + backend);
    Path mp = mount(backend, img.stack(1, sz), dir, ",timeout=0");
    try {
      Path f = mp.resolve("bottom/f0");
      int n = quick ? 2_000 : 50_000;
      // fstat of an open file with the attribute cache off: exactly one GETATTR each (a stat
      // by path adds a LOOKUP and a GETATTR of every directory on the way)
      try (FileChannel ch = FileChannel.open(f)) {
        for (int i = 0; i < n / 10; i++) {
          ch.size();
        }
        long[] took = new long[n];
        for (int i = 0; i < n; i++) {
          long start = System.nanoTime();
          ch.size();
          took[i] = System.nanoTime() - start;
        }
        java.util.Arrays.sort(took);
        return took[n / 2] / 1e3; // the median: a noisy machine's outliers stay out
      }
    } finally {
      unmount(backend, mp);
    }
  }

  private Path mount(String backend, List<Path> lowers, Path dir) throws IOException {
    return mount(backend, lowers, dir, "");
  }

  private Path mount(String backend, List<Path> lowers, Path dir, String extra)
      throws IOException {
    io.strata.layers.fs.Trees.deleteRecursively(dir);
    Path upper = Files.createDirectories(dir.resolve("upper"));
    Path workDir = Files.createDirectories(dir.resolve("work"));
    Path mp = Files.createDirectories(dir.resolve("mnt"));
    StringBuilder lower = new StringBuilder();
    for (Path l : lowers) {
      lower.append(lower.length() == 0 ? "" : ":").append(l);
    }
    String opts = "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + workDir + extra;
    switch (backend) {
      case "plain" -> {
        // The floor: the same merged tree as a plain directory (made through kernel overlayfs).
        Path k = mount("kernel", lowers, dir.resolveSibling(dir.getFileName() + "-src"));
        try {
          Sh.run(List.of("cp", "-a", k + "/.", mp + "/"));
        } finally {
          unmount("kernel", k);
        }
        return mp;
      }
      case "kernel" -> Sh.run(List.of("mount", "-t", "overlay", "overlay", "-o", opts,
          mp.toString()));
      case "fuse-overlayfs" -> Sh.run(List.of("fuse-overlayfs", "-o", opts, mp.toString()));
      case "fuse-overlayfs-noxattrs" -> Sh.run(List.of("fuse-overlayfs", "-o",
          opts + ",noxattrs=1", mp.toString()));
      case "strata-noxattrs" -> Background.startAndWait(List.of("overlay", "-f", "-o",
          opts + ",transport=dev,noxattrs", mp.toString()), mp, dir.resolve("strata.log"),
          Duration.ofSeconds(60));
      case "strata" -> Background.startAndWait(List.of("overlay", "-f", "-o",
          opts + ",transport=dev", mp.toString()), mp, dir.resolve("strata.log"),
          Duration.ofSeconds(60));
      case "strata-uring" -> Background.startAndWait(List.of("overlay", "-f", "-o",
          opts + ",transport=uring", mp.toString()), mp, dir.resolve("strata.log"),
          Duration.ofSeconds(60));
      case "strata-daemon" -> {
        // one warm JVM for every mount, as `strata daemon` serves a host
        int code = io.strata.runtime.daemon.DaemonClient.run(
            io.strata.runtime.daemon.DaemonClient.connect(daemon()),
            List.of("overlay", "-o", opts + ",transport=dev", mp.toString()));
        if (code != 0) {
          throw new IOException("strata overlay in the daemon failed with status " + code);
        }
      }
      case "strata-jnr" -> Background.startAndWait(List.of("overlay", "-f", "-o",
          opts + ",transport=jnr", mp.toString()), mp, dir.resolve("strata.log"),
          Duration.ofSeconds(60));
      default -> throw new IllegalArgumentException("unknown backend " + backend
          + " (plain, kernel, fuse-overlayfs, strata, strata-uring, strata-daemon, strata-jnr,"
          + " strata-noxattrs, fuse-overlayfs-noxattrs)");
    }
    mounted.add(mp);
    return mp;
  }

  private Process daemon;
  private Path daemonSocket;

  /** The bench's own strata daemon (started on first use, stopped at the end): its socket. */
  private Path daemon() throws IOException {
    if (daemon == null) {
      daemonSocket = Files.createDirectories(work.resolve("daemon")).resolve("strata.sock");
      Files.deleteIfExists(daemonSocket);
      List<String> cmd = new ArrayList<>(Background.command(List.of("daemon", "--socket",
          daemonSocket.toString())));
      cmd.remove("setsid");
      // the client's settings for a daemon (runtime/src/main/c/strata-client.c)
      cmd.addAll(2, List.of("-Xms8m", "-XX:MaxNewSize=8m", "-XX:MinHeapFreeRatio=10",
          "-XX:MaxHeapFreeRatio=20"));
      daemon = new ProcessBuilder(cmd).redirectErrorStream(true)
          .redirectOutput(work.resolve("daemon/daemon.log").toFile()).start();
      long deadline = System.nanoTime() + 60_000_000_000L;
      while (!io.strata.runtime.daemon.DaemonServer.answers(daemonSocket)) {
        if (!daemon.isAlive() || System.nanoTime() > deadline) {
          throw new IOException("the bench's strata daemon did not start: see "
              + work.resolve("daemon/daemon.log"));
        }
        try {
          Thread.sleep(20);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new IOException("interrupted");
        }
      }
    }
    return daemonSocket;
  }

  private void stopDaemon() {
    if (daemon != null) {
      daemon.destroy();
      try {
        if (!daemon.waitFor(30, java.util.concurrent.TimeUnit.SECONDS)) {
          daemon.destroyForcibly();
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      daemon = null;
    }
  }

  private void unmount(String backend, Path mp) throws IOException {
    if (!backend.equals("plain") && Mounts.isMountpoint(mp)) {
      Mounts.unmount(mp, false);
    }
    mounted.remove(mp);
  }

  private void unmountAll() {
    for (Path mp : new ArrayList<>(mounted)) {
      try {
        if (Mounts.isMountpoint(mp)) {
          Mounts.unmount(mp, true);
        }
      } catch (IOException e) {
        System.err.println("could not unmount " + mp + ": " + e.getMessage());
      }
    }
    mounted.clear();
  }

  private double workload(String w, Path m, Images img, Sizes sz, Path dir) throws IOException {
    switch (w) {
      case "stat-walk-cold":
        Sh.dropCaches();
        return Sh.time("find " + m + "/tree -printf '%s %i\\n'");
      case "stat-walk-warm":
        return Sh.time("find " + m + "/tree -printf '%s %i\\n'");
      case "ls-lR-warm":
        // the second listing, as the table measured it: the first one also asks each
        // inode's ACL once (then cached by the kernel through FUSE_POSIX_ACL)
        Sh.time("ls -lR " + m + "/tree > /dev/null");
        return Sh.time("ls -lR " + m + "/tree > /dev/null");
      case "readdir-large":
        return Sh.time("for i in 1 2 3 4 5 6 7 8 9 10; do ls -f " + m + "/bigdir; done");
      case "seq-read-cold":
        Sh.dropCaches();
        return Sh.time("cat " + m + "/big/file");
      case "seq-read-warm":
        return Sh.time("cat " + m + "/big/file");
      case "random-4k-reads":
        return randomReads(m.resolve("big/file"), sz.randomReads());
      case "copy-up-large":
        return Sh.time("echo x >> " + m + "/big/file");
      case "small-files":
        return smallFiles(m.resolve("small"), sz.smallFiles());
      case "small-reads-warm":
        // every file of the tree read through, the second time: an open, a read and a close
        // each, as issue 19's table measured it
        Sh.time("find " + m + "/tree -type f -print0 | xargs -0 cat > /dev/null");
        return Sh.time("find " + m + "/tree -type f -print0 | xargs -0 cat > /dev/null");
      case "write-4k": {
        // one file written 4 KiB at a time (an eighth of the big file's size): a GETXATTR
        // upcall per write(2) before strata took FUSE_HANDLE_KILLPRIV_V2
        long blocks = sz.bigFileBytes() / 8 / 4096;
        double t = Sh.time("dd if=/dev/zero of=" + m + "/written bs=4k count=" + blocks
            + " status=none");
        Files.deleteIfExists(m.resolve("written"));
        return t;
      }
      case "untar":
        return Sh.time("mkdir -p " + m + "/untar && tar -C " + m + "/untar -xf " + img.tarball());
      case "chmod-recursive":
        return Sh.time("chmod -R g+w " + m + "/tree");
      case "git-status":
        return Sh.time("git -c safe.directory='*' -C " + m + "/repo status --porcelain");
      default:
        throw new IllegalArgumentException(w);
    }
  }

  private static double randomReads(Path file, int count) throws IOException {
    long start = System.nanoTime();
    try (FileChannel ch = FileChannel.open(file)) {
      long blocks = ch.size() / 4096;
      Random r = new Random(42);
      ByteBuffer buf = ByteBuffer.allocateDirect(4096);
      for (int i = 0; i < count; i++) {
        buf.clear();
        ch.read(buf, (long) r.nextInt((int) Math.max(1, blocks)) * 4096);
      }
    }
    return (System.nanoTime() - start) / 1e9;
  }

  private static double smallFiles(Path dir, int count) throws IOException {
    long start = System.nanoTime();
    Files.createDirectories(dir);
    byte[] data = new byte[100];
    for (int i = 0; i < count; i++) {
      Files.write(dir.resolve("f" + i), data);
    }
    for (int i = 0; i < count; i++) {
      Files.delete(dir.resolve("f" + i));
    }
    return (System.nanoTime() - start) / 1e9;
  }
}
