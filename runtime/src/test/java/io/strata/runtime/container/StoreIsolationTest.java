package io.strata.runtime.container;

import static org.assertj.core.api.Assertions.assertThat;

import io.strata.layers.ImageRecord;
import io.strata.layers.LayerStore;
import io.strata.layers.fs.Posix;
import io.strata.layers.base.Progress;
import io.strata.layers.StoreLayout;
import io.strata.runtime.snapshots.SnapshotStore;
import io.strata.layers.fs.Mounts;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 16, items 1 and 2: no other local user reaches image or container content through the
 * store. The image holds a setuid-root copy of cat and a 0666 device node; a real unprivileged
 * user (made by the test) tries them by their store paths. Every refusal is paired with a
 * control that shows the same user does reach them when the directories are opened (as an
 * older strata left them), so a test user that could reach nothing at all would fail here.
 */
class StoreIsolationTest {
  @TempDir static Path shared;
  static Path base;
  static LayerStore store;
  static ImageRecord image;
  static TestUser user;
  static Path suidCat;

  @BeforeAll
  static void setUp() throws Exception {
    base = shared.resolve("base");
    Files.createDirectories(base);
    Posix.chmod(shared, 0755); // JUnit's 0700 would hide everything from the user by itself
    Posix.chmod(base, 0755);
    Path root = TestImages.busyboxRoot(shared.resolve("bb"));
    Files.copy(Path.of("/bin/cat"), root.resolve("bin/suid-cat"));
    Posix.chmod(root.resolve("bin/suid-cat"), 04755);
    Files.createDirectories(root.resolve("dev"));
    Posix.mknod(root.resolve("dev/mem-open"), Posix.S_IFCHR | 0666, 1, 1);
    store = LayerStore.open(base.resolve("store"), System.err::println);
    image = store.importImage(TestImages.tar(root, shared.resolve("bb.tar")), "bb:iso", null,
        Progress.NONE);
    suidCat = store.layerTree(image.diffIds().get(0)).resolve("bin/suid-cat");
    user = TestUser.create();
    assertThat(user.sh("ls " + base).code()).as("the user reaches the store's parent").isZero();
  }

  @AfterAll
  static void removeUser() throws Exception {
    if (user != null) {
      user.close();
    }
  }

  @AfterEach
  void nothingLeftBehind() throws Exception {
    assertThat(Mounts.table()).noneMatch(e -> e.mountpoint().startsWith(store.root()));
  }

  /** Whether the user can run {@code suid} on /etc/shadow (as root, if it is setuid root). */
  private static boolean readsShadowThrough(Path suid) throws Exception {
    TestUser.Result r = user.sh(suid + " /etc/shadow");
    return r.code() == 0 && r.output().contains("root:");
  }

  @Test
  void theStoreTableIsAppliedAndNoContentDirectoryLetsOthersIn() throws Exception {
    assertThat(Files.getAttribute(store.root(), "unix:mode")).isEqualTo(040711);
    for (var e : StoreLayout.DIRS.entrySet()) {
      Path d = store.root().resolve(e.getKey());
      assertThat((Integer) Files.getAttribute(d, "unix:mode") & 07777).as(e.getKey())
          .isEqualTo(e.getValue());
      if (e.getValue() == 0700) {
        assertThat(user.sh("ls " + d).output()).as(e.getKey()).contains("Permission denied");
      }
    }
    assertThat(user.sh("ls " + store.root()).output()).contains("Permission denied");
    assertThat(readsShadowThrough(suidCat)).isFalse();
    Path dev = suidCat.getParent().getParent().resolve("dev/mem-open");
    assertThat(user.sh("head -c1 " + dev).output()).contains("Permission denied");
  }

  @Test
  void aStoreLeftOpenByAnOlderStrataIsClosedWhenOpened() throws Exception {
    Path layerDir = suidCat.getParent().getParent().getParent();
    try {
      for (Path p : List.of(store.root(), store.root().resolve("layers"))) {
        Posix.chmod(p, 0755);
      }
      // the control: opened as before, the user runs the layer's setuid cat as root
      assertThat(readsShadowThrough(suidCat)).as("exposed store (control)").isTrue();
      assertThat(Files.getAttribute(layerDir, "unix:mode")).isEqualTo(040755);
    } finally {
      LayerStore.open(store.root(), s -> { });
    }
    assertThat(readsShadowThrough(suidCat)).isFalse();
    assertThat(Files.getAttribute(store.root().resolve("layers"), "unix:mode")).isEqualTo(040700);
  }

  /** Runs a container that makes /suid (setuid root cat) and waits until it exists. */
  private CompletableFuture<Integer> containerMakingSuid(String name,
      ContainerRunner.UserNamespace userns, Path out) throws Exception {
    Posix.chmod(out, 0777);
    ContainerRunner.Spec spec = new ContainerRunner.Spec(name, "bb:iso", List.of("/bin/sh", "-c",
        "cp /bin/suid-cat /suid && chmod 4755 /suid && touch /out/ready && sleep 60"), List.of(),
        null, null, null, "none", List.of(out + ":/out"), false, false, false, Limits.NONE,
        userns, true);
    CompletableFuture<Integer> run = CompletableFuture.supplyAsync(() -> {
      try {
        return new ContainerRunner(store, System.err::println).run(spec);
      } catch (Exception e) {
        throw new RuntimeException(e);
      }
    });
    for (int i = 0; i < 300 && !Files.exists(out.resolve("ready")); i++) {
      if (run.isDone()) {
        throw new AssertionError("the container ended early: " + run.get());
      }
      Thread.sleep(50);
    }
    assertThat(out.resolve("ready")).exists();
    return run;
  }

  private void stop(String name, CompletableFuture<Integer> run) throws Exception {
    Containers c = new Containers(store.root(), s -> { });
    Native.kill(c.read(name).helperPid(), 9);
    run.get(60, TimeUnit.SECONDS);
    c.remove(name);
  }

  @Test
  void aContainersUpperIsNotReachableWhileItRuns(@TempDir Path out) throws Exception {
    CompletableFuture<Integer> run = containerMakingSuid("iso-upper", null, out);
    try {
      Containers c = new Containers(store.root(), s -> { });
      Path suid = c.upperOf("iso-upper").resolve("suid");
      assertThat(Files.getAttribute(suid, "unix:mode")).isEqualTo(0104755);
      assertThat(readsShadowThrough(suid)).isFalse();
      assertThat(user.sh("ls " + c.dirOf("iso-upper")).output()).contains("Permission denied");
      // the control: with its directories opened, the upper's setuid file is root for anyone
      Path diff = c.dirOf("iso-upper").resolve("diff");
      Posix.chmod(c.dirOf("iso-upper"), 0755);
      Posix.chmod(diff, 0755);
      assertThat(readsShadowThrough(suid)).as("exposed upper (control)").isTrue();
      Posix.chmod(diff, 0700);
      Posix.chmod(c.dirOf("iso-upper"), 0700);
    } finally {
      stop("iso-upper", run);
    }
  }

  @Test
  void aUserNamespacedContainersRootReachesItsRootfsButNotItsUpper(@TempDir Path out)
      throws Exception {
    ContainerRunner.UserNamespace ns = ContainerRunner.UserNamespace.DEFAULT;
    CompletableFuture<Integer> run = containerMakingSuid("iso-userns", ns, out);
    try {
      Containers c = new Containers(store.root(), s -> { });
      Path dir = c.dirOf("iso-userns");
      assertThat(Files.getAttribute(dir, "unix:mode")).isEqualTo(040710);
      assertThat(Files.getAttribute(dir, "unix:gid")).isEqualTo((int) ns.hostId());
      Path suid = c.upperOf("iso-userns").resolve("suid");
      // on disk the copy is root's and setuid: nobody but root may reach it
      assertThat(Files.getAttribute(suid, "unix:uid")).isEqualTo(0);
      assertThat(readsShadowThrough(suid)).isFalse();
      assertThat(user.sh("ls " + dir).output()).contains("Permission denied");
    } finally {
      stop("iso-userns", run);
    }
  }

  @Test
  void theSnapshottersRootIsPrivate() throws Exception {
    Path root = base.resolve("snapshotter");
    new SnapshotStore(root, "fuse3.strata-overlay", s -> { });
    assertThat(Files.getAttribute(root, "unix:mode")).isEqualTo(040700);
    assertThat(Files.getAttribute(root.resolve("snapshots"), "unix:mode")).isEqualTo(040700);
    assertThat(user.sh("ls " + root).output()).contains("Permission denied");
  }
}
