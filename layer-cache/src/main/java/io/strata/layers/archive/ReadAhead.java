package io.strata.layers.archive;

import java.io.IOException;
import java.io.InputStream;
import java.io.InterruptedIOException;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * Reads a stream in a thread of its own, a few chunks ahead of its reader: a layer's
 * decompression runs beside its extraction (hashing, tar parsing, writing files) instead of
 * before each of its reads. The reader sees the same bytes and the same failure, thrown from
 * the read that reaches it (and every read after). Once it has read the end, or closed this
 * stream, the source is no longer touched by the other thread, so the reader may go on with
 * what lies under it; closing this stream leaves the source open, for its owner to close.
 */
public final class ReadAhead extends ChunkInputStream {
  /** A chunk as read; {@code n < 0}: the end; {@code failure}: what the source threw. */
  private record Chunk(byte[] buf, int n, Throwable failure) {}

  /** The most asked of the source in one read. */
  private static final int READ = 16 << 10;
  private final InputStream source;
  private final BlockingQueue<Chunk> full;
  /** Buffers given back by the reader, for the reading thread to fill again. */
  private final BlockingQueue<byte[]> free;
  private final Thread reader;
  private volatile boolean closed;
  private Chunk current;
  private int pos;
  private boolean ended;
  private Throwable failure;

  private ReadAhead(InputStream source, String name, int chunk, int depth) {
    this.source = source;
    this.full = new ArrayBlockingQueue<>(depth + 1);
    this.free = new ArrayBlockingQueue<>(depth);
    for (int i = 0; i < depth; i++) {
      free.add(new byte[chunk]);
    }
    this.reader = new Thread(this::fill, name);
    reader.setDaemon(true);
    reader.start();
  }

  /** Reads {@code source} ahead in a thread named {@code name}, four chunks of 256 KiB. */
  public static ReadAhead of(InputStream source, String name) {
    return new ReadAhead(source, name, 256 << 10, 4);
  }

  private void fill() {
    try {
      while (!closed) {
        byte[] buf = free.take();
        int n = 0;
        Throwable failed = null;
        try {
          while (n < buf.length) {
            // small reads: a decompressor that meets a corrupt or truncated spot throws away
            // what it inflated in the same read, and the reader should get as far as before
            int r = source.read(buf, n, Math.min(READ, buf.length - n));
            if (r < 0) {
              break;
            }
            n += r;
          }
        } catch (IOException | RuntimeException | Error e) {
          failed = e; // after the bytes read before it
        }
        if (n > 0) {
          full.put(new Chunk(buf, n, null));
        }
        if (failed != null || n < buf.length) {
          full.put(new Chunk(null, -1, failed));
          return;
        }
      }
    } catch (InterruptedException e) {
      // closed
    }
  }

  @Override
  public int read(byte[] b, int off, int len) throws IOException {
    if (closed) {
      throw new IOException("read ahead stream closed");
    }
    if (len == 0) {
      return 0;
    }
    if (ended) {
      return rethrow();
    }
    if (current == null) {
      try {
        current = full.take();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new InterruptedIOException("interrupted while reading ahead");
      }
      pos = 0;
      if (current.n() < 0) {
        failure = current.failure();
        ended = true;
        current = null;
        awaitReader();
        return rethrow();
      }
    }
    int n = Math.min(len, current.n() - pos);
    System.arraycopy(current.buf(), pos, b, off, n);
    pos += n;
    if (pos == current.n()) {
      free.add(current.buf());
      current = null;
    }
    return n;
  }

  /** -1 at the end, else what the source threw. */
  private int rethrow() throws IOException {
    if (failure instanceof IOException io) {
      throw io;
    } else if (failure instanceof RuntimeException re) {
      throw re;
    } else if (failure instanceof Error er) {
      throw er;
    }
    return -1;
  }

  /** Waits until the reading thread has stopped: the source is the caller's again. */
  private void awaitReader() throws InterruptedIOException {
    try {
      reader.join(TimeUnit.SECONDS.toMillis(30));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new InterruptedIOException("interrupted while reading ahead");
    }
  }

  /** Stops the reading thread and waits for it; the source stays open. */
  @Override
  public void close() throws IOException {
    if (closed) {
      return;
    }
    closed = true;
    reader.interrupt();
    awaitReader();
  }
}
