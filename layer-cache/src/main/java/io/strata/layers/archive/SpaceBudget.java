package io.strata.layers.archive;

import io.strata.layers.base.DiskFullException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * What one import may still write to the store's filesystem: the space that was free when it
 * began, less a margin left for everything else on that filesystem. Every byte an import
 * writes (layer content, a decompressed archive member) is charged first, so a bomb of zeros
 * stops before the disk fills, with a message that says so.
 */
public final class SpaceBudget {
  /** Left free for the rest of the system: 64 MiB or 1% of the filesystem, whichever is more. */
  static long margin(long total) {
    return Math.max(64L << 20, total / 100);
  }

  private final Path where;
  private final long capacity;
  private final long start;
  private long left;

  SpaceBudget(Path where, long capacity, long bytes) {
    this.where = where;
    this.capacity = capacity;
    this.start = Math.max(0, bytes);
    this.left = this.start;
  }

  /** The size of the whole filesystem: one entry larger than this is absurd, not just too big. */
  long capacity() {
    return capacity;
  }

  /** The budget of an import into the store whose filesystem holds {@code dir}. */
  public static SpaceBudget of(Path dir) throws IOException {
    var fs = Files.getFileStore(dir);
    return new SpaceBudget(dir, fs.getTotalSpace(),
        fs.getUsableSpace() - margin(fs.getTotalSpace()));
  }

  public static SpaceBudget unlimited() {
    return new SpaceBudget(Path.of("/"), Long.MAX_VALUE, Long.MAX_VALUE);
  }

  /** Takes {@code bytes} from the budget for {@code what}, or fails before they are written. */
  synchronized void charge(long bytes, String what) {
    if (bytes > left) {
      throw new DiskFullException("not enough space for the import in " + where + ": " + what
          + " needs " + bytes + " bytes, and only " + left + " of the " + start
          + " bytes free when it began are left (a margin is kept free); nothing was stored");
    }
    left -= bytes;
  }
}
