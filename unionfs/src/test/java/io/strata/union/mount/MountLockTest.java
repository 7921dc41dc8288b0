package io.strata.union.mount;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The lock of a mountpoint: one holder at a time, its file gone with it (podman gives every
 * container a mountpoint of its own: the files of mounts long gone piled up, 20,000 on the
 * machine this was written on), and a taker that locked a file its holder removed meanwhile
 * does not count as holding the lock.
 */
class MountLockTest {
  @TempDir Path tmp;

  private static Path fileOf(Path mountpoint) {
    return MountLock.directory().resolve("mount-" + MountLock.key(mountpoint) + ".lock");
  }

  @Test
  void theLocksFileGoesWithTheLock() throws Exception {
    Path mp = tmp.resolve("mp");
    try (MountLock l = MountLock.acquire(mp)) {
      assertThat(fileOf(mp)).exists();
    }
    assertThat(fileOf(mp)).doesNotExist();
  }

  @Test
  void aSecondTakerWaitsForTheFirstAndHoldsALockOfItsOwn() throws Exception {
    Path mp = tmp.resolve("mp");
    MountLock first = MountLock.acquire(mp);
    CompletableFuture<MountLock> second = CompletableFuture.supplyAsync(() -> {
      try {
        return MountLock.acquire(mp);
      } catch (IOException e) {
        throw new RuntimeException(e);
      }
    });
    Thread.sleep(100);
    assertThat(second).as("waits while the first holds it").isNotDone();
    first.close(); // removes the file the second may have opened already
    try (MountLock l = second.get(5, TimeUnit.SECONDS)) {
      assertThat(fileOf(mp)).as("the second's own file").exists();
      // a third taker must not get it now: the second holds the file the name leads to
      assertThatThrownBy(() -> MountLock.acquire(mp)).hasMessageContaining("another strata");
    }
    assertThat(fileOf(mp)).doesNotExist();
  }

  @Test
  void cleaningRemovesTheFilesOfLocksNobodyHolds() throws Exception {
    Path held = tmp.resolve("held");
    Path stale = fileOf(tmp.resolve("stale"));
    Files.createDirectories(stale.getParent());
    Files.writeString(stale, ""); // what a killed holder or an older strata left
    try (MountLock l = MountLock.acquire(held)) {
      assertThat(MountLock.clean()).isPositive();
      assertThat(stale).doesNotExist();
      assertThat(fileOf(held)).as("a held lock is left alone").exists();
      assertThatThrownBy(() -> MountLock.acquire(held)).hasMessageContaining("another strata");
    }
  }
}
