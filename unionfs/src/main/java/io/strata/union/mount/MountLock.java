package io.strata.union.mount;

import io.strata.layers.fs.RawFs;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * One strata at a time mounts on a directory: an exclusive lock per mountpoint, held from
 * before the check that nothing is mounted there until the mount is gone, so two mounts
 * started at the same moment cannot both succeed (and the loser never touches the winner).
 * The kernel drops the lock when its holder dies, so a killed daemon leaves nothing to clean
 * but the lock's file.
 *
 * <p>The lock is flock(2)'s on a file named after the mountpoint, which its holder removes
 * while still holding it: podman gives every container a mountpoint of its own, and the files
 * of mounts long gone filled the lock directory (thousands after a day of benchmarks). A
 * taker that locked a file removed meanwhile (it opened it before the holder removed it) sees
 * that the name no longer leads to what it locked, and tries again with a new file.
 */
public final class MountLock implements AutoCloseable {
  private final Path file;
  private int fd;

  private MountLock(Path file, int fd) {
    this.file = file;
    this.fd = fd;
  }

  /** How long a mount waits for the lock of a mount that is ending. */
  static final long WAIT_NANOS = 2_000_000_000L;

  /** The directory of the lock files. */
  static Path directory() {
    return Background.runDir().resolve("locks");
  }

  /**
   * Takes the lock of {@code mountpoint} (a real path), or fails if another holds it for
   * longer than {@link #WAIT_NANOS}: a mount unmounted a moment ago holds it until its server
   * has seen the end (asynchronously), and podman mounts a container's root again right after
   * unmounting it (commit after run); a mount that stays is still refused.
   */
  public static MountLock acquire(Path mountpoint) throws IOException {
    Path dir = directory();
    if (!Files.isDirectory(dir)) { // createDirectories fails first when it exists: an exception
      Files.createDirectories(dir);
    }
    Path file = dir.resolve("mount-" + key(mountpoint) + ".lock");
    String raw = RawFs.raw(file);
    long deadline = System.nanoTime() + WAIT_NANOS;
    while (true) {
      int fd = RawFs.open(RawFs.AT_FDCWD, raw, RawFs.O_WRONLY | RawFs.O_CREAT | RawFs.O_NOFOLLOW,
          0600);
      boolean ours = false;
      try {
        if (RawFs.tryLock(fd)) {
          ours = isNamed(fd, raw);
          if (ours) {
            return new MountLock(file, fd);
          }
          continue; // its holder removed it after we opened it: a new file, at once
        }
      } finally {
        if (!ours) {
          RawFs.close(fd);
        }
      }
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

  /**
   * The lock's name for a mountpoint: FNV-1a's 64 bits of its bytes, so that two of a host's
   * mountpoints never share one. A SHA-256 of the path was 0.1-0.2 ms of each mount in a young
   * daemon, where the digest runs interpreted (timed by marks). A strata from before this
   * name, mounting on the same directory at the same instant as a newer one, would take another
   * lock: only while both run, as at an upgrade.
   */
  static String key(Path mountpoint) {
    long h = 0xcbf29ce484222325L;
    for (byte b : RawFs.bytes(RawFs.raw(mountpoint))) {
      h = (h ^ (b & 0xff)) * 0x100000001b3L;
    }
    String hex = Long.toHexString(h);
    return "0".repeat(16 - hex.length()) + hex;
  }

  /**
   * Removes the lock files nobody holds: those of mounts whose holder was killed (the kernel
   * dropped the lock, the file stayed) and those older strata versions left behind. Each is
   * taken first, by the same rule as {@link #acquire}, so a held lock is never touched.
   * Returns how many went.
   */
  public static int clean() throws IOException {
    Path dir = directory();
    if (!Files.isDirectory(dir)) {
      return 0;
    }
    int removed = 0;
    try (var files = Files.list(dir)) {
      for (Path file : (Iterable<Path>) files::iterator) {
        String name = file.getFileName().toString();
        if (!name.startsWith("mount-") || !name.endsWith(".lock")) {
          continue;
        }
        String raw = RawFs.raw(file);
        int fd;
        try {
          fd = RawFs.open(RawFs.AT_FDCWD, raw, RawFs.O_WRONLY | RawFs.O_NOFOLLOW, 0);
        } catch (IOException gone) {
          continue;
        }
        try {
          if (RawFs.tryLock(fd) && isNamed(fd, raw)) {
            Files.deleteIfExists(file);
            removed++;
          }
        } finally {
          RawFs.close(fd);
        }
      }
    }
    return removed;
  }

  /** Whether {@code raw} still names the file open at {@code fd} (not removed, not replaced). */
  private static boolean isNamed(int fd, String raw) throws IOException {
    RawFs.Statx locked = RawFs.lstat(fd, "");
    RawFs.Statx named = RawFs.lstat(RawFs.AT_FDCWD, raw);
    return named != null && named.ino() == locked.ino() && named.dev() == locked.dev();
  }

  /** Removes the lock's file, then lets go of the lock: a later taker makes a new one. */
  @Override
  public synchronized void close() throws IOException {
    if (fd < 0) {
      return;
    }
    try {
      Files.deleteIfExists(file);
    } finally {
      RawFs.close(fd); // the lock goes with the last descriptor of its open file
      fd = -1;
    }
  }
}
