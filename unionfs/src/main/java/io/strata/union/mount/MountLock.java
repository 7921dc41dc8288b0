package io.strata.union.mount;

import io.strata.layers.base.Digest;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * One strata at a time mounts on a directory: an exclusive lock per mountpoint, held from
 * before the check that nothing is mounted there until the mount is gone, so two mounts
 * started at the same moment cannot both succeed (and the loser never touches the winner).
 * The kernel drops the lock when its holder dies, so a killed daemon leaves nothing to clean.
 */
public final class MountLock implements AutoCloseable {
  private final FileChannel channel;
  private final FileLock lock;

  private MountLock(FileChannel channel, FileLock lock) {
    this.channel = channel;
    this.lock = lock;
  }

  /** How long a mount waits for the lock of a mount that is ending. */
  static final long WAIT_NANOS = 2_000_000_000L;

  /**
   * Takes the lock of {@code mountpoint} (a real path), or fails if another holds it for
   * longer than {@link #WAIT_NANOS}: a mount unmounted a moment ago holds it until its server
   * has seen the end (asynchronously), and podman mounts a container's root again right after
   * unmounting it (commit after run); a mount that stays is still refused.
   */
  public static MountLock acquire(Path mountpoint) throws IOException {
    Path dir = Files.createDirectories(Background.runDir().resolve("locks"));
    String key = Digest.of(mountpoint.toString().getBytes(StandardCharsets.UTF_8)).shortHex();
    long deadline = System.nanoTime() + WAIT_NANOS;
    while (true) {
      FileChannel ch = FileChannel.open(dir.resolve("mount-" + key + ".lock"),
          StandardOpenOption.CREATE, StandardOpenOption.WRITE);
      FileLock l;
      try {
        l = ch.tryLock();
      } catch (OverlappingFileLockException sameJvm) {
        l = null;
      }
      if (l != null) {
        return new MountLock(ch, l);
      }
      ch.close();
      if (System.nanoTime() > deadline) {
        throw new IOException("another strata is mounting or serving " + mountpoint);
      }
      try {
        Thread.sleep(5);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IOException("interrupted while waiting for the mount lock of " + mountpoint);
      }
    }
  }

  @Override
  public void close() throws IOException {
    if (!channel.isOpen()) {
      return;
    }
    try {
      lock.release();
    } finally {
      channel.close();
    }
  }
}
