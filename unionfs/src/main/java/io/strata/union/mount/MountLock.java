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

  /** Takes the lock of {@code mountpoint} (a real path), or fails at once if another holds it. */
  public static MountLock acquire(Path mountpoint) throws IOException {
    Path dir = Files.createDirectories(Background.runDir().resolve("locks"));
    String key = Digest.of(mountpoint.toString().getBytes(StandardCharsets.UTF_8)).shortHex();
    FileChannel ch = FileChannel.open(dir.resolve("mount-" + key + ".lock"),
        StandardOpenOption.CREATE, StandardOpenOption.WRITE);
    FileLock l;
    try {
      l = ch.tryLock();
    } catch (OverlappingFileLockException sameJvm) {
      l = null;
    }
    if (l == null) {
      ch.close();
      throw new IOException("another strata is mounting or serving " + mountpoint);
    }
    return new MountLock(ch, l);
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
