package io.strata.union.mount;

import io.strata.union.view.UnionView;
import static org.assertj.core.api.Assertions.assertThat;

import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Issue 16, items 4 and 5: a file opened while it is still below and held open while it is
 * copied up. No path may write the lower file (a writable shared mapping did, with
 * passthrough), every later open must see the upper (without passthrough, the held reader's
 * reads refilled the page cache with the old bytes), and the held descriptor itself reads the
 * new data as on kernel overlayfs, except through a passthrough reader (the kernel reads the
 * lower file for it; see Dispatcher's openReply), which a file below of more than 64 KiB has
 * (a smaller one is read from the page cache). Its file renamed and its old name reused
 * by a directory, the held descriptor's fstat and fchmod still reach its file (a retired
 * node's kept first name once sent them to the directory: EIO, or a chmod of the wrong file).
 *
 * <p>Shown by {@code held-descriptor.py} against kernel overlayfs, and by fsxlite
 * (src/test/c/fsxlite.c, in the manner of xfstests' fsx: mmap, O_DIRECT, truncate, fallocate,
 * copy_file_range, reopen, fresh opens) with a reader held from before the copy-up.
 */
class HeldDescriptorTest {
  @TempDir static Path shared;
  static Path fsx;
  @TempDir Path tmp;

  @BeforeAll
  static void build() throws Exception {
    fsx = shared.resolve("fsxlite");
    Mounted.run("cc", "-O2", "-Wall", "-o", fsx.toString(), "src/test/c/fsxlite.c");
  }

  /** f1 and f2 of {@code size} bytes of 'a', big1 to big4 of random bytes. */
  private Path lower(int size) throws Exception {
    Path l = Files.createDirectories(tmp.resolve("lower-" + size));
    Mounted.run("sh", "-ec", "cd $1; for f in f1 f2; do head -c $2 /dev/zero | tr '\\0' a > $f;"
        + " done; for f in big1 big2 big3 big4; do head -c 300000 /dev/urandom > $f; done", "sh",
        l.toString(), String.valueOf(size));
    return l;
  }

  /** sha256 of every file of a directory, to show a lower layer did not change. */
  private static Map<String, String> sums(Path dir) throws Exception {
    Map<String, String> out = new TreeMap<>();
    try (Stream<Path> s = Files.list(dir)) {
      for (Path p : s.toList()) {
        out.put(p.getFileName().toString(), Mounted.run("sha256sum", p.toString()).split(" ")[0]);
      }
    }
    return out;
  }

  private static String script(Path mp, int size) throws Exception {
    Path script = mp.getParent().resolve("held-descriptor.py");
    try (InputStream in = HeldDescriptorTest.class.getResourceAsStream("/held-descriptor.py")) {
      Files.write(script, in.readAllBytes());
    }
    return Mounted.run("python3", script.toString(), mp.toString(), String.valueOf(size));
  }

  private Mounted strata(Path lower, String name, FuseMount.Settings settings) throws Exception {
    Path mp = Files.createDirectories(tmp.resolve(name + "-mnt"));
    Path upper = Files.createDirectories(tmp.resolve(name + "-upper"));
    Path work = Files.createDirectories(tmp.resolve(name + "-work"));
    UnionView view = UnionView.open(List.of(lower), upper, work, UnionView.Options.defaults());
    return Mounted.of(FuseMount.mount(view, mp, settings, line -> System.err.println("fuse: "
        + line), Duration.ofSeconds(30)));
  }

  private static boolean passesThrough(Mounted m) {
    return m.fuse().passthrough();
  }

  /**
   * Files of 128 KiB are passed through; files of 8 KiB are read from the page cache (a
   * small file below, see Dispatcher's openReply), whose held descriptors read the new data
   * as on kernel overlayfs.
   */
  @ParameterizedTest(name = "files of {0} bytes")
  @ValueSource(ints = {8192, 131072})
  void aHeldReaderNeitherLetsAMappingWriteTheLowerNorLeavesLaterOpensStale(int size)
      throws Exception {
    Path lower = lower(size);
    Map<String, String> before = sums(lower);
    String kernel;
    try (Mounted k = Mounted.kernel(List.of(lower), tmp.resolve("ku"), tmp.resolve("kw"),
        tmp.resolve("km"))) {
      kernel = script(k.mountpoint, size);
    }
    assertThat(kernel).contains("('held after the mmap write', b'MMAP')")
        .contains("('held2 after the write', b'WRIT')")
        .contains("('new open after the mmap write', b'MMAP')")
        .contains("('held3 after a rename and a directory at its old name', ('0o100644', 1,"
            + " 300000))")
        .contains("reaches its file, not the name's new owner\", '0o100600'");
    for (boolean passthrough : new boolean[] {true, false}) {
      String name = passthrough ? "pt" : "cached";
      try (Mounted s = strata(lower, name, Mounted.settings().withPassthrough(passthrough))) {
        String got = script(s.mountpoint, size);
        if (passesThrough(s) && size > 65536) { // bigger than Dispatcher.CACHED_AT_MOST
          // the held descriptors read the lower file through the kernel: the one difference
          assertThat(got).isEqualTo(kernel
              .replace("('held after the mmap write', b'MMAP')",
                  "('held after the mmap write', b'aaaa')")
              .replace("('held2 after the write', b'WRIT')",
                  "('held2 after the write', b'aaaa')"));
          assertThat(s.fuse().stats().get("nodes retired")).isPositive();
        } else {
          assertThat(got).as("without passthrough, or a small file").isEqualTo(kernel);
        }
      }
      assertThat(Files.readString(tmp.resolve(name + "-upper/f1"))).startsWith("MMAP");
      assertThat(sums(lower)).as("the lower layer after " + name).isEqualTo(before);
    }
  }

  @Test
  void fsxWithAReaderHeldFromBeforeTheCopyUp() throws Exception {
    Path lower = lower(8192);
    Map<String, String> before = sums(lower);
    try (Mounted k = Mounted.kernel(List.of(lower), tmp.resolve("ku"), tmp.resolve("kw"),
        tmp.resolve("km"))) {
      assertThat(Mounted.run(fsx.toString(), "-N", "20000", "-S", "1", "-H", "new",
          k.mountpoint.resolve("big1").toString())).contains("all reads matched");
    }
    int seed = 2;
    for (boolean passthrough : new boolean[] {true, false}) {
      try (Mounted s = strata(lower, passthrough ? "pt" : "cached",
          Mounted.settings().withPassthrough(passthrough))) {
        String held = passesThrough(s) ? "old" : "new";
        for (String file : passthrough ? List.of("big1", "big2") : List.of("big3", "big4")) {
          assertThat(Mounted.run(fsx.toString(), "-N", "20000", "-S", String.valueOf(seed++),
              "-H", held, s.mountpoint.resolve(file).toString()))
              .as(file + " passthrough " + passthrough).contains("all reads matched");
        }
      }
    }
    assertThat(sums(lower)).isEqualTo(before);
  }
}
