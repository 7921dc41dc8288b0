package io.strata.layers.archive;

import io.strata.layers.base.Digest;
import io.strata.layers.base.Progress;
import java.io.IOException;
import java.io.InputStream;
import java.security.MessageDigest;

/** Hashes and counts every byte read through it, so one pass both extracts and verifies. */
public final class DigestingInputStream extends ChunkInputStream {
  private final InputStream in;
  private final MessageDigest sha256;
  private final Progress progress;
  private long count;
  private Digest result;

  public DigestingInputStream(InputStream in, Progress progress) {
    this(in, progress, true);
  }

  /** @param hash false to only count (the bytes were checked elsewhere, as a download's are) */
  public DigestingInputStream(InputStream in, Progress progress, boolean hash) {
    this.in = in;
    this.progress = progress;
    this.sha256 = hash ? Digest.newSha256() : null;
  }

  @Override
  public int read() throws IOException {
    int b = in.read();
    if (b >= 0) {
      if (sha256 != null) {
        sha256.update((byte) b);
      }
      advance(1);
    }
    return b;
  }

  @Override
  public int read(byte[] b, int off, int len) throws IOException {
    int n = in.read(b, off, len);
    if (n > 0) {
      if (sha256 != null) {
        sha256.update(b, off, n);
      }
      advance(n);
    }
    return n;
  }

  @Override
  public void close() throws IOException {
    in.close();
  }

  public long count() {
    return count;
  }

  /** The digest of everything read; once asked, the stream must not be read further. */
  public Digest digest() {
    if (sha256 == null) {
      throw new IllegalStateException("this stream only counts");
    }
    if (result == null) {
      result = Digest.fromBytes(sha256.digest());
    }
    return result;
  }

  private void advance(long n) {
    count += n;
    if (progress != null) {
      progress.bytesRead(n);
    }
  }
}
