package io.strata.layers;

import io.strata.layers.base.StoreException;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.function.Consumer;

/**
 * A reader-writer lock shared by threads and processes, backed by one lock file.
 *
 * <p>Within a JVM a {@link ReentrantReadWriteLock} orders threads; across processes an
 * {@code fcntl} lock on the file does. The JVM holds at most one file lock per file (the OS
 * would merge two of them anyway): the first reader takes a shared file lock and the last one
 * releases it; a writer takes an exclusive file lock while it holds the in-JVM write lock.
 * Locks are released by the kernel when a process dies, so a killed strata never wedges the
 * store.
 */
final class FileMutex {
  private static final ConcurrentHashMap<Path, FileMutex> BY_PATH = new ConcurrentHashMap<>();

  private final Path file;
  private final ReentrantReadWriteLock threads = new ReentrantReadWriteLock();
  private final Object fileGuard = new Object(); // guards readers, channel and fileLock
  private int readers;
  private FileChannel channel;
  private FileLock fileLock;

  private FileMutex(Path file) {
    this.file = file;
  }

  /** A held lock; closing it releases it. */
  interface Held extends AutoCloseable {
    @Override
    void close();
  }

  static FileMutex at(Path file) {
    return BY_PATH.computeIfAbsent(file.toAbsolutePath().normalize(), FileMutex::new);
  }

  /** Held by work that must not overlap a writer, such as an import against a gc. */
  Held shared() {
    threads.readLock().lock();
    try {
      synchronized (fileGuard) {
        if (readers++ == 0) {
          acquire(true);
        }
      }
    } catch (RuntimeException e) {
      synchronized (fileGuard) {
        readers--;
      }
      threads.readLock().unlock();
      throw e;
    }
    return () -> {
      synchronized (fileGuard) {
        if (--readers == 0) {
          release();
        }
      }
      threads.readLock().unlock();
    };
  }

  /**
   * Waits for every other holder to leave, telling {@code waiting} once if that takes more than
   * a moment, so a person knows why a command pauses.
   */
  Held exclusive(Consumer<String> waiting) {
    try {
      if (!threads.writeLock().tryLock(200, TimeUnit.MILLISECONDS)) {
        waiting.accept("waiting for another strata command in this process to finish");
        threads.writeLock().lock();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new StoreException("interrupted while waiting for the store lock " + file);
    }
    try {
      synchronized (fileGuard) {
        acquireExclusive(waiting);
      }
    } catch (RuntimeException e) {
      threads.writeLock().unlock();
      throw e;
    }
    return () -> {
      synchronized (fileGuard) {
        release();
      }
      threads.writeLock().unlock();
    };
  }

  /** Takes the exclusive lock only if nobody holds the file, else returns null at once. */
  Held tryExclusive() {
    if (!threads.writeLock().tryLock()) {
      return null;
    }
    synchronized (fileGuard) {
      try {
        open();
        fileLock = channel.tryLock(0, Long.MAX_VALUE, false);
      } catch (IOException e) {
        closeChannel();
        threads.writeLock().unlock();
        throw cannotLock(e);
      }
      if (fileLock == null) {
        closeChannel();
        threads.writeLock().unlock();
        return null;
      }
    }
    return () -> {
      synchronized (fileGuard) {
        release();
      }
      threads.writeLock().unlock();
    };
  }

  private void acquire(boolean shared) {
    try {
      open();
      fileLock = channel.lock(0, Long.MAX_VALUE, shared);
    } catch (IOException e) {
      closeChannel();
      throw cannotLock(e);
    }
  }

  private void acquireExclusive(Consumer<String> waiting) {
    try {
      open();
      FileLock got = channel.tryLock(0, Long.MAX_VALUE, false);
      if (got == null) {
        waiting.accept("waiting for other strata commands to finish (lock " + file + ")");
        long start = System.nanoTime();
        got = channel.lock(0, Long.MAX_VALUE, false);
        if (System.nanoTime() - start > Duration.ofSeconds(1).toNanos()) {
          waiting.accept("got the lock");
        }
      }
      fileLock = got;
    } catch (IOException e) {
      closeChannel();
      throw cannotLock(e);
    }
  }

  /** Why the lock cannot be had, in words a person can act on. */
  private StoreException cannotLock(IOException e) {
    if (e instanceof java.nio.file.AccessDeniedException) {
      return new StoreException("cannot lock " + file + ": permission denied (the store is"
          + " another user's; use one of your own with --root or STRATA_ROOT)", e);
    }
    return new StoreException("cannot lock " + file + ": " + e.getMessage(), e);
  }

  private void open() throws IOException {
    channel = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.READ,
        StandardOpenOption.WRITE);
  }

  private void release() {
    try {
      if (fileLock != null) {
        fileLock.release();
      }
    } catch (IOException ignored) {
      // closing the channel below releases it anyway
    } finally {
      fileLock = null;
      closeChannel();
    }
  }

  private void closeChannel() {
    try {
      if (channel != null) {
        channel.close();
      }
    } catch (IOException ignored) {
      // nothing useful to do: the lock dies with the descriptor
    } finally {
      channel = null;
    }
  }
}
