package io.strata.union.mount;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.strata.union.view.UnionView;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.stream.LongStream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Descriptors held across renames, exchanges, replacements, unlinks and copy-ups, then used:
 * {@code descriptor-fuzz.py} makes random sequences of such operations (a seed each), on kernel
 * overlayfs and on strata's own transport with passthrough on and off; the outputs must match
 * line for line. It found what the fixed-sequence tests had not: a handle that remembered the
 * name it was opened by (an fstat answered for a directory that took that name: EIO), the node
 * of a lower hard link's name lost at a revalidating lookup after its copy-up (fchmod through a
 * descriptor: ENOENT), fchmod, fchown, futimens and ftruncate of an unlinked open file
 * refused, a removed open directory without attributes, a pure-upper directory renamed over an
 * opaque one letting the lower directory show through, a link of a lower hard link's name
 * given a second kernel inode, a handle whose name was replaced while the file kept another
 * name answering for the replacement, an open directory replaced by a rename, and a reader of
 * a file whose metadata alone was copied up left with nothing to answer for once the name
 * went, and (the wider set) a name whose file got a new number from a second copy-up given a
 * new node, which left the held descriptor's inode with a stale link count, and a new file
 * given the node of another whose old number the filesystem reused. With passthrough, the bytes read through a read-only descriptor are not compared (the
 * kernel reads the lower file for one opened before a copy-up: strata's one written-down
 * difference, see HeldDescriptorTest); nor, in the wider set, a map through a read-only
 * descriptor, where kernel overlayfs maps the lower file it opened even after a copy-up (its
 * documented non-standard behaviour) and strata the upper, as reads through it do.
 */
class DescriptorFuzzTest {
  @TempDir Path tmp;
  private Path script;

  /** 1 to 32, and the seeds past them that once failed (kept so that they stay fixed). */
  static LongStream seeds() {
    return LongStream.concat(LongStream.rangeClosed(1, 32),
        LongStream.of(63, 67, 68, 93, 144, 151, 284, 369, 370, 376));
  }

  @BeforeEach
  void setUp() throws Exception {
    assumeTrue(Mounted.settings().transport() == FuseMount.Transport.KERNEL,
        "strata's own transport (root, /dev/fuse): jnr-fuse serves an unlinked file by path");
    script = tmp.resolve("descriptor-fuzz.py");
    try (InputStream in = DescriptorFuzzTest.class.getResourceAsStream("/descriptor-fuzz.py")) {
      Files.write(script, in.readAllBytes());
    }
  }

  private Path lower() throws Exception {
    Path l = tmp.resolve("lower");
    Mounted.run("sh", "-ec", "L=$1; mkdir -p $L/d0 $L/d2; echo zero > $L/f0; echo one > $L/f1;"
        + " echo two > $L/f2; echo three > $L/d0/f3; echo four > $L/d0/f4; ln $L/f1 $L/d2/hl",
        "sh", l.toString());
    return l;
  }

  @ParameterizedTest(name = "seed {0}")
  @MethodSource("seeds")
  void heldDescriptorsSeeWhatTheyDoOnKernelOverlayfs(long seed) throws Exception {
    compare(seed, "plain");
  }

  /**
   * The wider set: chmod and truncate by path, symlinks, maps through held descriptors, fsync
   * and O_TMPFILE files, linked or not.
   */
  @ParameterizedTest(name = "seed {0}")
  @MethodSource("extendedSeeds")
  void theWiderSetToo(long seed) throws Exception {
    compare(seed, "extended");
  }

  /** 1 to 16, and the seeds past them that once failed. */
  static LongStream extendedSeeds() {
    return LongStream.concat(LongStream.rangeClosed(1, 16), LongStream.of(190, 361));
  }

  private void compare(long seed, String ops) throws Exception {
    boolean passthrough = seed % 2 == 1;
    String mask = passthrough ? "mask-held-reads" : "compare-all";
    Path lower = lower();
    String kernel;
    try (Mounted k = Mounted.kernel(List.of(lower), tmp.resolve("ku"), tmp.resolve("kw"),
        tmp.resolve("km"))) {
      kernel = Mounted.run("python3", script.toString(), k.mountpoint.toString(),
          String.valueOf(seed), mask, ops);
    }
    Path mp = Files.createDirectories(tmp.resolve("sm"));
    UnionView view = UnionView.open(List.of(lower), Files.createDirectories(tmp.resolve("su")),
        Files.createDirectories(tmp.resolve("sw")), UnionView.Options.defaults());
    try (Mounted s = Mounted.of(FuseMount.mount(view, mp,
        Mounted.settings().withPassthrough(passthrough),
        line -> System.err.println("fuse: " + line), Duration.ofSeconds(30)))) {
      String strata = Mounted.run("python3", script.toString(), s.mountpoint.toString(),
          String.valueOf(seed), mask, ops);
      assertThat(strata).as("seed " + seed + ", passthrough " + passthrough).isEqualTo(kernel);
    }
    // the script ran: it opened, used and closed descriptors and printed the tree
    assertThat(kernel).contains(" -> slot 1").contains("tree ./");
  }
}
