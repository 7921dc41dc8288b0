package io.strata.layers.archive;

import java.io.IOException;
import java.io.InputStream;

/**
 * An input stream defined by its chunk read alone: one-byte reads and skips (InputStream's own
 * skip reads) go through {@link #read(byte[], int, int)}, so whatever it counts, hashes or
 * records sees every byte.
 */
public abstract class ChunkInputStream extends InputStream {
  @Override
  public int read() throws IOException {
    byte[] one = new byte[1];
    int n;
    do {
      n = read(one, 0, 1);
    } while (n == 0);
    return n < 0 ? -1 : one[0] & 0xff;
  }

  /** Reads to the end (what follows an archive's end still counts). */
  public void drain() throws IOException {
    byte[] buf = new byte[65536];
    while (read(buf, 0, buf.length) >= 0) {
      // the subclass's read does the work
    }
  }
}
