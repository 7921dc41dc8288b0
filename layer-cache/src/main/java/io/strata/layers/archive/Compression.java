package io.strata.layers.archive;

import io.strata.layers.base.BadInputException;
import java.io.BufferedInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.util.Arrays;
import org.apache.commons.compress.compressors.gzip.GzipCompressorInputStream;
import org.apache.commons.compress.compressors.zstandard.ZstdCompressorInputStream;

/** How a layer blob is compressed, told from its first bytes and never from its name. */
public enum Compression {
  NONE,
  GZIP,
  ZSTD;

  private static final int PEEK = 512;

  /**
   * Looks at the first bytes of a stream that supports mark/reset. Anything that is neither
   * gzip, zstd nor a tar header (ustar magic, or the all-zero block of an empty archive) is
   * refused so that a corrupt or foreign file never reaches the tar reader.
   */
  public static Compression detect(BufferedInputStream in, String label) throws IOException {
    in.mark(PEEK);
    byte[] head = in.readNBytes(PEEK);
    in.reset();
    if (head.length >= 2 && (head[0] & 0xff) == 0x1f && (head[1] & 0xff) == 0x8b) {
      return GZIP;
    }
    if (head.length >= 4
        && (head[0] & 0xff) == 0x28 && (head[1] & 0xff) == 0xb5
        && (head[2] & 0xff) == 0x2f && (head[3] & 0xff) == 0xfd) {
      return ZSTD;
    }
    if (head.length == PEEK && (isUstar(head) || allZero(head))) {
      return NONE;
    }
    if (head.length == 0) {
      throw new BadInputException(label + ": empty file, not a tar, gzip or zstd stream");
    }
    throw new BadInputException(label + ": not a tar, gzip or zstd stream"
        + (head.length < PEEK ? " (only " + head.length + " bytes)" : ""));
  }

  /** Wraps the raw stream so that it yields the uncompressed tar. */
  public InputStream decompress(InputStream raw) throws IOException {
    switch (this) {
      case GZIP:
        return GzipCompressorInputStream.builder().setInputStream(raw)
            .setDecompressConcatenated(true).get();
      case ZSTD:
        return new ZstdCompressorInputStream(raw);
      default:
        return raw;
    }
  }

  static boolean isUstar(byte[] block) {
    // "ustar\0" (POSIX) or "ustar " (GNU) at offset 257.
    return block.length >= 263
        && block[257] == 'u' && block[258] == 's' && block[259] == 't'
        && block[260] == 'a' && block[261] == 'r';
  }

  private static boolean allZero(byte[] b) {
    return Arrays.mismatch(b, new byte[b.length]) < 0;
  }
}
