package io.strata.union.view;

import io.strata.layers.fs.RawFs;
import java.io.IOException;

/** utimensat(2) with UTIME_NOW and UTIME_OMIT, on the path itself. */
public final class Times {
  /** Passed for a time that should not change. */
  public static final long OMIT = -1;
  /** Passed for a time that should become the current time. */
  public static final long NOW = -2;

  private Times() {}

  static void set(Loc p, long atimeNanos, long mtimeNanos) throws IOException {
    long now = System.currentTimeMillis() * 1_000_000L;
    Attr cur = null;
    if (atimeNanos == OMIT || mtimeNanos == OMIT) {
      cur = Stat.lstat(p);
    }
    long a = atimeNanos == NOW ? now : atimeNanos == OMIT ? cur.atimeNanos() : atimeNanos;
    long m = mtimeNanos == NOW ? now : mtimeNanos == OMIT ? cur.mtimeNanos() : mtimeNanos;
    RawFs.lutimes(p.dirfd(), p.rel(), a, m);
  }
}
