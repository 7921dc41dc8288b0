package io.strata.union.mount;

import io.strata.union.view.UnionView;
import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * What strata's own transport adds over jnr-fuse, against kernel overlayfs with the kernel's
 * caches on: renameat2's flags, fstat of an unlinked open file, hard links seen through both
 * names, mmap around a copy-up, SEEK_DATA/SEEK_HOLE, O_TMPFILE; and passthrough, shown by the
 * daemon's request counts, with its fallbacks.
 */
class TransportTest {
  @TempDir Path tmp;

  private static void requireOwnTransport() {
    assumeTrue(Mounted.settings().transport() == FuseMount.Transport.KERNEL,
        "strata's own transport (root, /dev/fuse)");
  }

  private Path lower() throws Exception {
    Path l = tmp.resolve("lower");
    Mounted.run("sh", "-ec", "L=$1; mkdir -p $L/ldir; echo one > $L/lf1; echo two > $L/lf2;"
        + " echo three > $L/lf3; echo x > $L/ldir/x; echo link > $L/lh1; ln $L/lh1 $L/lh2;"
        + " head -c 131072 /dev/zero | tr '\\0' a > $L/mm; truncate -s 1M $L/sparse;"
        + " printf data >> $L/sparse; truncate -s 3M $L/sparse", "sh", l.toString());
    return l;
  }

  /** strata over {@code lower}, its upper, work and mountpoint beside it in the test's dir. */
  private Mounted strataOver(Path lower) throws Exception {
    return Mounted.strata(List.of(lower), tmp.resolve("su"), tmp.resolve("sw"),
        tmp.resolve("sm"));
  }

  @Test
  void theNewCasesMatchKernelOverlayfs() throws Exception {
    requireOwnTransport();
    Path script = tmp.resolve("cases.py");
    try (InputStream in = TransportTest.class.getResourceAsStream("/transport-cases.py")) {
      Files.write(script, in.readAllBytes());
    }
    Path lower = lower();
    String kernel;
    Map<String, String> kernelTree;
    try (Mounted k = Mounted.kernel(List.of(lower), tmp.resolve("ku"), tmp.resolve("kw"),
        tmp.resolve("km"))) {
      kernel = Mounted.run("python3", script.toString(), k.mountpoint.toString());
      kernelTree = TreeSnapshot.of(k.mountpoint);
    }
    try (Mounted s = strataOver(lower)) {
      String strata = Mounted.run("python3", script.toString(), s.mountpoint.toString());
      assertThat(strata).isEqualTo(kernel);
      assertThat(TreeSnapshot.of(s.mountpoint)).isEqualTo(kernelTree);
    }
    // what the script must have seen, so that a silently broken script cannot pass
    assertThat(kernel).contains("('noreplace onto an existing name', 'EEXIST'")
        .contains("('exchange two lower files', 'ok', 'three\\n', 'two\\n')")
        .contains("('fstat of an unlinked open file', 0, 6, 'ENOENT')")
        .contains("('nlink after link', 2, 2)")
        .contains("('exchange a lower directory', 'ok', ['x'],")
        .contains("('read through the other name', 'h appended', 10)")
        .contains("('O_TMPFILE in a lower directory', 0, 9, '0o100640', ['x'])")
        .contains("('O_TMPFILE given a name', 'ok', 1, 'anonymous', ['named-tmp', 'x'])")
        .contains("('fstat after rename, a directory at the old name, unlink', 0, 7,")
        .contains("('fchmod through a descriptor on it', '0o100600', 1)");
  }

  /**
   * {@code noxattrs} answers ENOSYS, as fuse-overlayfs does, so that the kernel stops asking:
   * a hundred lgetxattr calls (what `ls -l` makes per file) cost one upcall, and every caller
   * is told EOPNOTSUPP.
   */
  @Test
  void noxattrsIsAskedOnceThenTheKernelAnswersItself() throws Exception {
    requireOwnTransport();
    UnionView.Options d = UnionView.Options.defaults();
    UnionView.Options noxattrs = new UnionView.Options(d.whiteoutForm(), d.metacopy(), false,
        d.fsync(), d.uids(), d.gids(), d.squashToRoot(), d.cacheEntries(), d.redirectDir(),
        false);
    try (Mounted s = Mounted.strata(List.of(lower()), tmp.resolve("su"), tmp.resolve("sw"),
        tmp.resolve("sm"), noxattrs)) {
      String got = Mounted.run("python3", "-c", "import errno, os, sys\n"
          + "seen = set()\n"
          + "for n in ['lf1', 'lf2', 'ldir', 'mm', 'lh1'] * 20:\n"
          + "    try:\n"
          + "        os.getxattr(os.path.join(sys.argv[1], n), 'security.selinux',"
          + " follow_symlinks=False)\n"
          + "        seen.add('a value')\n"
          + "    except OSError as e:\n"
          + "        seen.add(e.errno == errno.EOPNOTSUPP and 'EOPNOTSUPP' or str(e))\n"
          + "print(sorted(seen))", s.mountpoint.toString());
      assertThat(got.trim()).isEqualTo("['EOPNOTSUPP']");
      assertThat(s.fuse().stats().get("GETXATTR")).isEqualTo(1L);
    }
  }

  /**
   * A missing {@code security.selinux} is EOPNOTSUPP ({@link UnionView#missingXattr}), so
   * `ls -l` asks for it once per mount, not once per file as FUSE, caching no extended
   * attributes, would make it: 100 files listed again cost at most two upcalls. A file that
   * has a label still shows it, one set through the mount reads back, and other names stay
   * ENODATA.
   */
  @Test
  void lsAsksForLabelsOncePerMountNotOncePerFile() throws Exception {
    requireOwnTransport();
    Path l = tmp.resolve("many");
    Mounted.run("sh", "-ec", "mkdir -p $1/d; for i in $(seq 1 100); do echo $i > $1/d/f$i;"
        + " done; echo l > $1/labeled; echo u > $1/unlabeled", "sh", l.toString());
    Mounted.run("python3", "-c", "import os, sys\n"
        + "os.setxattr(sys.argv[1], 'security.selinux', b'lower_t\\0')",
        l.resolve("labeled").toString());
    try (Mounted s = strataOver(l)) {
      String got = Mounted.run("python3", "-c", "import errno, os, sys\n"
          + "def get(n, x='security.selinux'):\n"
          + "    try:\n"
          + "        return os.getxattr(os.path.join(sys.argv[1], n), x)\n"
          + "    except OSError as e:\n"
          + "        return errno.errorcode[e.errno]\n"
          + "os.setxattr(os.path.join(sys.argv[1], 'unlabeled'), 'security.selinux',"
          + " b'upper_t\\0')\n"
          + "print([get('d/f1'), get('d'), get('labeled'), get('unlabeled'),"
          + " get('d/f2', 'user.none'), get('d/f3', 'security.capability')])",
          s.mountpoint.toString());
      // errno 95, EOPNOTSUPP, is named ENOTSUP by Python
      assertThat(got.trim()).isEqualTo("['ENOTSUP', 'ENOTSUP', b'lower_t\\x00',"
          + " b'upper_t\\x00', 'ENODATA', 'ENODATA']");
      String d = s.mountpoint.resolve("d").toString();
      String first = Mounted.run("ls", "-l", d);
      long before = s.fuse().stats().getOrDefault("GETXATTR", 0L);
      assertThat(Mounted.run("ls", "-l", d)).isEqualTo(first).contains(" f100\n");
      long asked = s.fuse().stats().getOrDefault("GETXATTR", 0L) - before;
      assertThat(asked).as("GETXATTR upcalls of a second ls -l of 100 files").isBetween(0L, 2L);
    }
  }

  /**
   * Every chunk of a listing is a READDIRPLUS, so the stats that find, ls -l or du make after
   * reading a directory are answered from it. With READDIRPLUS_AUTO the kernel asked PLUS
   * for the first chunk only, and each of the other names was a LOOKUP (this test failed so).
   */
  @Test
  void aListingAnswersTheStatsThatFollowIt() throws Exception {
    requireOwnTransport();
    Path l = tmp.resolve("wide");
    Mounted.run("sh", "-ec", "mkdir -p $1/d; cd $1/d; for i in $(seq 1000 1999); do"
        + " echo $i > file-with-a-longer-name-$i; done", "sh", l.toString());
    try (Mounted s = strataOver(l)) {
      String sizes = Mounted.run("find", s.mountpoint.resolve("d").toString(), "-type", "f",
          "-printf", "%s\\n");
      assertThat(sizes.split("\n")).hasSize(1000).containsOnly("5");
      Map<String, Long> st = s.fuse().stats();
      assertThat(st.getOrDefault("READDIRPLUS", 0L)).isGreaterThan(1L);
      assertThat(st.getOrDefault("LOOKUP", 0L)).as("LOOKUPs after listing 1,000 names")
          .isLessThan(10L);
    }
  }

  /**
   * Strata takes FUSE_HANDLE_KILLPRIV_V2, so the kernel (with SB_NOSEC) asks for a file's
   * {@code security.capability} before its first write only: before, every write(2) through
   * passthrough was a GETXATTR (a 256 MiB file written 4 KiB at a time, 65,536 upcalls; this
   * test failed so). A chown no longer asks for the file's attributes first either.
   */
  @Test
  void writesAskForCapabilitiesOncePerFileNotOncePerWrite() throws Exception {
    requireOwnTransport();
    try (Mounted s = strataOver(lower())) {
      for (String name : List.of("new", "lf1")) { // a file made here, a file copied up
        Path f = s.mountpoint.resolve(name);
        long before = s.fuse().stats().getOrDefault("GETXATTR", 0L);
        try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(f,
            java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.WRITE,
            java.nio.file.StandardOpenOption.TRUNCATE_EXISTING)) {
          for (int i = 0; i < 200; i++) {
            ch.write(java.nio.ByteBuffer.wrap(new byte[4096]));
          }
        }
        long asked = s.fuse().stats().getOrDefault("GETXATTR", 0L) - before;
        assertThat(asked).as("GETXATTR upcalls of 200 writes to " + name).isBetween(1L, 2L);
        assertThat(Files.size(f)).isEqualTo(200 * 4096);
        long getattrs = s.fuse().stats().getOrDefault("GETATTR", 0L);
        io.strata.layers.fs.Posix.lchown(f, 1, 1);
        assertThat(s.fuse().stats().getOrDefault("GETATTR", 0L) - getattrs)
            .as("GETATTR upcalls of a chown").isZero();
      }
    }
  }

  /**
   * A read-only open of a small file below is served from the page cache, not passed through:
   * a second reading of 50 files makes an OPEN and a RELEASE each, no READ and no GETATTR
   * (through passthrough the kernel takes the access time for stale after each read, and cat's
   * fstat cost a GETATTR a file; this test failed so). A write made while such a file is open
   * reaches the descriptor and the mapping opened before it, through the one page cache; kernel
   * overlayfs shows the descriptor the new data too, but keeps mapping the lower file for the
   * mapping (a deliberate difference).
   */
  @Test
  void smallFilesBelowAreReadFromThePageCache() throws Exception {
    requireOwnTransport();
    Path l = tmp.resolve("small");
    Mounted.run("sh", "-ec", "mkdir -p $1/d; for i in $(seq 1 50); do echo $i > $1/d/f$i;"
        + " done; printf original > $1/kept", "sh", l.toString());
    try (Mounted s = strataOver(l)) {
      String cat = "cat " + s.mountpoint.resolve("d") + "/*";
      String first = Mounted.run("sh", "-c", cat);
      Map<String, Long> before = s.fuse().stats();
      assertThat(Mounted.run("sh", "-c", cat)).isEqualTo(first).startsWith("1\n");
      Map<String, Long> after = s.fuse().stats();
      Map<String, Long> made = new java.util.TreeMap<>();
      for (String op : List.of("OPEN", "READ", "GETATTR")) {
        made.put(op, after.getOrDefault(op, 0L) - before.getOrDefault(op, 0L));
      }
      assertThat(made).as("requests of a second cat of 50 small files")
          .containsEntry("OPEN", 50L).containsEntry("READ", 0L);
      assertThat(made.get("GETATTR")).as("GETATTRs of it (the directory's may come)")
          .isLessThan(5L);
      String seen = Mounted.run("python3", "-c", "import mmap, os, sys\n"
          + "p = os.path.join(sys.argv[1], 'kept')\n"
          + "fd = os.open(p, os.O_RDONLY)\n"
          + "m = mmap.mmap(fd, 0, prot=mmap.PROT_READ)\n"
          + "w = os.open(p, os.O_WRONLY)\n"
          + "os.write(w, b'CHANGED!')\n"
          + "os.close(w)\n"
          + "print(os.pread(fd, 8, 0), m[:8])\n", s.mountpoint.toString());
      assertThat(seen.trim()).isEqualTo("b'CHANGED!' b'CHANGED!'");
      assertThat(Files.readString(s.mountpoint.resolve("kept"))).isEqualTo("CHANGED!");
      assertThat(Files.readString(tmp.resolve("su/kept"))).isEqualTo("CHANGED!");
      assertThat(Files.readString(l.resolve("kept"))).isEqualTo("original");
    }
  }

  private FuseMount mount(Path lower, FuseMount.Settings settings, List<String> log)
      throws Exception {
    Path upper = Files.createDirectories(tmp.resolve("upper"));
    Path work = Files.createDirectories(tmp.resolve("work"));
    Path mp = Files.createDirectories(tmp.resolve("mnt"));
    UnionView view = UnionView.open(List.of(lower), upper, work, UnionView.Options.defaults());
    return FuseMount.mount(view, mp, settings, log::add, Duration.ofSeconds(30));
  }

  private static long readAll(Path p) throws Exception {
    long n = 0;
    byte[] buf = new byte[1 << 16];
    try (InputStream in = Files.newInputStream(p)) {
      int r;
      while ((r = in.read(buf)) > 0) {
        n += r;
      }
    }
    return n;
  }

  private Path bigLower() throws Exception {
    Path l = Files.createDirectories(tmp.resolve("big-lower"));
    Mounted.run("sh", "-c", "head -c 67108864 /dev/urandom > " + l.resolve("big"));
    return l;
  }

  @Test
  void passedThroughFilesAreReadAndWrittenWithoutARequest() throws Exception {
    requireOwnTransport();
    List<String> log = new CopyOnWriteArrayList<>();
    try (FuseMount m = mount(bigLower(), Mounted.settings(), log)) {
      assumeTrue(m.passthrough(), "this kernel offers FUSE passthrough");
      String sum = Mounted.run("sha256sum", tmp.resolve("big-lower/big").toString()).split(" ")[0];
      for (int i = 0; i < 3; i++) { // new opens each time: no page cache kept across them
        assertThat(readAll(m.mountpoint().resolve("big"))).isEqualTo(64L << 20);
      }
      assertThat(Mounted.run("sha256sum", m.mountpoint().resolve("big").toString()))
          .startsWith(sum);
      Mounted.run("sh", "-c", "printf X | dd of=" + m.mountpoint().resolve("big")
          + " bs=1 seek=5 conv=notrunc 2>/dev/null");
      Map<String, Long> stats = m.stats();
      assertThat(stats.getOrDefault("READ", 0L)).isZero();
      assertThat(stats.getOrDefault("WRITE", 0L)).isZero();
      assertThat(stats.get("opens passed through")).isGreaterThanOrEqualTo(5);
      assertThat(Files.readAllBytes(tmp.resolve("upper/big"))[5]).isEqualTo((byte) 'X');
    }
  }

  @Test
  void withoutPassthroughStrataServesTheReads() throws Exception {
    requireOwnTransport();
    List<String> log = new CopyOnWriteArrayList<>();
    try (FuseMount m = mount(bigLower(), Mounted.settings().withPassthrough(false), log)) {
      assertThat(m.passthrough()).isFalse();
      assertThat(readAll(m.mountpoint().resolve("big"))).isEqualTo(64L << 20);
      assertThat(m.stats().get("READ")).isPositive();
      assertThat(m.stats().get("opens passed through")).isZero();
    }
  }

  /**
   * The kernel refuses a backing file on a filesystem that itself stacks (here kernel
   * overlayfs under the lower): such opens are served, the log says so once, data is right.
   */
  @Test
  void aBackingFileTheKernelRefusesIsServedInstead() throws Exception {
    requireOwnTransport();
    Path real = bigLower();
    Path empty = Files.createDirectories(tmp.resolve("empty")); // a read-only overlay needs two
    try (Mounted ovl = Mounted.kernel(List.of(real, empty), null, null, tmp.resolve("ovl"))) {
      List<String> log = new CopyOnWriteArrayList<>();
      try (FuseMount m = mount(ovl.mountpoint, Mounted.settings(), log)) {
        assumeTrue(m.passthrough(), "this kernel offers FUSE passthrough");
        String sum = Mounted.run("sha256sum", real.resolve("big").toString()).split(" ")[0];
        for (int i = 0; i < 2; i++) {
          assertThat(Mounted.run("sha256sum", m.mountpoint().resolve("big").toString()))
              .startsWith(sum);
        }
        assertThat(m.stats().get("READ")).isPositive();
        assertThat(m.stats().get("opens served")).isGreaterThanOrEqualTo(2);
        assertThat(log.stream().filter(l -> l.contains("passthrough refused"))).hasSize(1);
      }
    }
  }

  /**
   * A mount's FUSE workers are threads kept for the next mount once it ends, not threads made
   * per mount and lost: after the first mount and unmount some wait idle, and ten more mount
   * cycles leave no more threads than one mount may have workers (8) or the first left (a
   * worker that never went back would add a thread each time; one made per mount would leave
   * none idle).
   */
  @Test
  void workersOfEndedMountsServeTheNextOnes() throws Exception {
    requireOwnTransport();
    Path lower = lower();
    cycle(lower, 0);
    awaitNoBusyWorkers();
    long first = workerThreads();
    assertThat(first).as("idle workers after the first mount").isPositive();
    for (int i = 1; i <= 10; i++) {
      cycle(lower, i);
    }
    awaitNoBusyWorkers();
    assertThat(workerThreads()).as("worker threads after eleven mounts")
        .isLessThanOrEqualTo(Math.max(first, 8));
  }

  /** A mount, a few parallel reads through it (so that more workers start), its unmount. */
  private void cycle(Path lower, int i) throws Exception {
    try (Mounted s = Mounted.strata(List.of(lower), tmp.resolve("u" + i), tmp.resolve("w" + i),
        tmp.resolve("m" + i))) {
      Mounted.run("sh", "-c", "for f in lf1 lf2 lf3 ldir/x lh1; do cat $1/$f & done; wait", "sh",
          s.mountpoint.toString());
    }
  }

  /** Threads of the workers' pool, idle or serving. */
  private static long workerThreads() {
    return Thread.getAllStackTraces().keySet().stream()
        .filter(t -> t.getName().startsWith("fuse-worker") && !t.getName().equals(
            "fuse-worker-starter"))
        .count();
  }

  /** Waits until every worker has seen its mount end (a worker serving has a numbered name). */
  private static void awaitNoBusyWorkers() throws InterruptedException {
    long deadline = System.nanoTime() + 10_000_000_000L;
    while (Thread.getAllStackTraces().keySet().stream()
        .anyMatch(t -> t.getName().startsWith("fuse-worker-") && t.isAlive()
            && !t.getName().equals("fuse-worker-starter"))) {
      assertThat(System.nanoTime()).as("workers still serving unmounted mounts")
          .isLessThan(deadline);
      Thread.sleep(20);
    }
  }
}
