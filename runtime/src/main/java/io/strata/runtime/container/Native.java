package io.strata.runtime.container;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import jnr.ffi.LibraryLoader;
import jnr.ffi.Runtime;
import jnr.ffi.annotations.SaveError;

/** The few libc calls the runtime needs that Java lacks: signals, and a FIFO opened without blocking. */
final class Native {
  /** The libc calls bound here. */
  public interface C {
    @SaveError int kill(int pid, int sig);

    @SaveError int open(String path, int flags, int mode);

    @SaveError long write(int fd, byte[] buf, long count);

    @SaveError int close(int fd);
  }

  private static final C LIBC = LibraryLoader.create(C.class).load("c");
  private static final Runtime RUNTIME = Runtime.getRuntime(LIBC);
  private static final int O_WRONLY = 1;
  private static final int O_NONBLOCK = 04000;
  private static final int O_CLOEXEC = 02000000;
  private static final int ENXIO = 6;

  private Native() {}

  static void kill(long pid, int signal) {
    LIBC.kill((int) pid, signal);
  }

  /**
   * Writes one byte into a FIFO once {@code reader} has opened it, without ever blocking on a
   * reader that died first (a blocking open would wait for it forever): fails when the reader
   * is gone or the time is up.
   */
  static void release(Path fifo, Process reader, Duration timeout) throws IOException {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (true) {
      int fd = LIBC.open(fifo.toString(), O_WRONLY | O_NONBLOCK | O_CLOEXEC, 0);
      if (fd >= 0) {
        try {
          if (LIBC.write(fd, new byte[] {'g'}, 1) != 1) {
            throw new IOException("cannot release the container helper through " + fifo
                + ": errno " + jnr.ffi.LastError.getLastError(RUNTIME));
          }
          return;
        } finally {
          LIBC.close(fd);
        }
      }
      int err = jnr.ffi.LastError.getLastError(RUNTIME);
      if (err != ENXIO) { // ENXIO: no reader yet
        throw new IOException("cannot open " + fifo + ": errno " + err);
      }
      if (!reader.isAlive()) {
        throw new IOException("the container helper died before it started (status "
            + reader.exitValue() + "; a --memory limit too small to start it?)");
      }
      if (System.nanoTime() > deadline) {
        throw new IOException("the container helper did not start within " + timeout);
      }
      try {
        Thread.sleep(2);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IOException("interrupted while starting the container");
      }
    }
  }
}
