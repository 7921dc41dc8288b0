package io.strata.runtime.container;

import static org.assertj.core.api.Assertions.assertThat;

import io.strata.layers.base.Digest;
import io.strata.layers.LayerStore;
import io.strata.layers.fs.Posix;
import io.strata.layers.base.Progress;
import io.strata.layers.fs.Mounts;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveInputStream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 16, item 3: a container swaps a directory of its root with a symlink to a host
 * directory, in a loop (renameat2 RENAME_EXCHANGE, src/test/c/swapper.c), while it is
 * committed and diffed. No commit may hold what the symlink points to on the host, paused (the
 * default) or not; a paused commit sees one consistent state of the two names.
 */
class CommitRaceTest {
  @TempDir static Path dir;
  static LayerStore store;
  static Path secretDir;
  static String secret;

  @BeforeAll
  static void build() throws Exception {
    Posix.chmod(dir, 0755);
    Path root = TestImages.busyboxRoot(dir.resolve("bb"));
    TestImages.compileStatic(Path.of("src/test/c/swapper.c"), root.resolve("bin/swapper"));
    store = LayerStore.open(dir.resolve("store"), System.err::println);
    store.importImage(TestImages.tar(root, dir.resolve("bb.tar")), "swap:test", null,
        Progress.NONE);
    secretDir = Files.createDirectories(dir.resolve("host-secret"));
    secret = "HOST-SECRET-" + UUID.randomUUID();
    Files.writeString(secretDir.resolve("f"), secret + "\n");
    Files.writeString(secretDir.resolve("shadow-"), secret + "\n");
    Files.writeString(secretDir.resolve("host-only"), secret + "\n");
  }

  @AfterEach
  void nothingLeftBehind() throws Exception {
    assertThat(Mounts.table()).noneMatch(e -> e.mountpoint().startsWith(store.root()));
  }

  private String cli(int expect, String... args) {
    List<String> all = new ArrayList<>(List.of("--root", store.root().toString()));
    all.addAll(List.of(args));
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    PrintStream old = System.out;
    int code;
    try {
      System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
      code = io.strata.cli.Main.run(all.toArray(String[]::new));
    } finally {
      System.setOut(old);
    }
    String text = out.toString(StandardCharsets.UTF_8);
    assertThat(code).as(String.join(" ", args) + "\n" + text).isEqualTo(expect);
    return text;
  }

  /** The committed layer's entries: name to content (files), "->target" (symlinks), "dir". */
  private static Map<String, String> entries(Digest diffId) throws Exception {
    Map<String, String> out = new TreeMap<>();
    try (InputStream raw = store.openLayerTar(diffId);
        TarArchiveInputStream tar = new TarArchiveInputStream(raw)) {
      TarArchiveEntry e;
      while ((e = tar.getNextEntry()) != null) {
        String v = e.isDirectory() ? "dir" : e.isSymbolicLink() ? "->" + e.getLinkName()
            : new String(tar.readAllBytes(), StandardCharsets.UTF_8);
        out.put(e.getName().replaceAll("/$", ""), v);
      }
    }
    return out;
  }

  @Test
  void aContainerSwappingASymlinkInCannotPutHostFilesIntoItsCommits(@TempDir Path out)
      throws Exception {
    Posix.chmod(out, 0777);
    // many entries in /d: the longer a walk spends in it, the likelier a swap lands meanwhile
    String script = "mkdir /d && echo mine > /d/f && echo mine > /d/shadow- && for i in $(seq 300);"
        + " do echo $i > /d/n$i; done && ln -s " + secretDir
        + " /l && exec /bin/swapper /d /l /out/ready";
    ContainerRunner.Spec spec = new ContainerRunner.Spec("swapper", "swap:test",
        List.of("/bin/sh", "-c", script), List.of(), null, null, null, "none",
        List.of(out + ":/out"), false, false, false, Limits.NONE, null, true);
    CompletableFuture<Integer> run = CompletableFuture.supplyAsync(() -> {
      try {
        return new ContainerRunner(store, System.err::println).run(spec);
      } catch (Exception e) {
        throw new RuntimeException(e);
      }
    });
    Containers c = new Containers(store.root(), s -> { });
    try {
      for (int i = 0; i < 400 && !Files.exists(out.resolve("ready")); i++) {
        assertThat(run).as("the container ended early").isNotDone();
        Thread.sleep(25);
      }
      assertThat(out.resolve("ready")).exists();
      int consistent = 0;
      for (int i = 0; i < 32; i++) {
        boolean paused = i < 12;
        String tag = "swap:c" + i;
        cli(0, "commit", "-q", paused ? "--pause" : "--pause=false", "swapper", tag);
        List<Digest> ids = store.resolve(tag).diffIds();
        Map<String, String> layer = entries(ids.get(ids.size() - 1));
        assertThat(layer.values()).as("commit " + i + ": " + layer)
            .noneMatch(v -> v.contains(secret));
        assertThat(layer.keySet()).as("commit " + i).noneMatch(k -> k.contains("host-only"));
        if (paused) {
          // one state or the other: d the directory and l the symlink, or swapped
          assertThat(layer).as("paused commit " + i).satisfiesAnyOf(
              m -> assertThat(m).containsEntry("d", "dir").containsEntry("d/f", "mine\n")
                  .containsEntry("l", "->" + secretDir),
              m -> assertThat(m).containsEntry("l", "dir").containsEntry("l/f", "mine\n")
                  .containsEntry("d", "->" + secretDir));
          consistent++;
        }
        assertThat(cli(0, "diff", "swapper")).doesNotContain("host-only");
      }
      assertThat(consistent).isEqualTo(12);
      assertThat(run).as("the container still runs: every pause was undone").isNotDone();
      Path v1 = Path.of("/sys/fs/cgroup/freezer/strata/ctr-swapper/freezer.state");
      if (Files.exists(v1)) {
        assertThat(Files.readString(v1).trim()).isEqualTo("THAWED");
      }
    } finally {
      Native.kill(c.read("swapper").helperPid(), 9);
      run.get(60, TimeUnit.SECONDS);
      c.remove("swapper");
    }
  }
}
