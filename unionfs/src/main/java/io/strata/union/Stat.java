package io.strata.union;

import io.strata.layers.Posix;
import java.io.IOException;
import java.nio.file.Path;
import jnr.posix.FileStat;
import jnr.posix.NanosecondFileStat;
import jnr.posix.POSIX;
import jnr.posix.POSIXFactory;

/** lstat(2) of a real file, with st_blocks and nanosecond times, which java.nio lacks. */
final class Stat {
  private static final POSIX POSIX = POSIXFactory.getNativePOSIX();

  private Stat() {}

  /** The attributes of the path itself, or null when it does not exist. */
  static Attr lstat(Path p) throws IOException {
    FileStat st = POSIX.allocateStat();
    if (POSIX.lstat(p.toString(), st) < 0) {
      int errno = POSIX.errno();
      if (errno == Posix.ENOENT || errno == Posix.ENOTDIR) {
        return null;
      }
      throw new Posix.PosixException("lstat", p, errno);
    }
    long a = st.atime() * 1_000_000_000L;
    long m = st.mtime() * 1_000_000_000L;
    long c = st.ctime() * 1_000_000_000L;
    if (st instanceof NanosecondFileStat) {
      NanosecondFileStat n = (NanosecondFileStat) st;
      a += n.aTimeNanoSecs();
      m += n.mTimeNanoSecs();
      c += n.cTimeNanoSecs();
    }
    return new Attr(st.ino(), st.mode(), st.nlink(), st.uid(), st.gid(), st.rdev(), st.st_size(),
        st.blocks(), a, m, c);
  }
}
