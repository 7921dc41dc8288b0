package io.strata.layers.base;

import java.util.concurrent.ExecutorService;
import java.util.concurrent.SynchronousQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;

/**
 * Threads kept 30 s once idle, for work that starts often and runs long (a mount's FUSE
 * workers, the threads that make mounts): starting a thread waits until it runs, a quarter to
 * half a millisecond of a daemon's mount. A task gets an idle thread, or a new one; it runs
 * under the name it is given, the thread waits under the pool's. Threads are made under the
 * process's invocation, so that an idle one holds no command's: a task that runs as a command
 * says so itself ({@link Invocation#run}).
 */
public final class KeptThreads {
  private final ExecutorService pool;
  private final String idleName;

  /**
   * @param stackSize the threads' stack in bytes (0: the JVM's default)
   * @param daemon whether they are daemon threads
   */
  public KeptThreads(String idleName, long stackSize, boolean daemon) {
    this.idleName = idleName;
    this.pool = new ThreadPoolExecutor(0, Integer.MAX_VALUE, 30, TimeUnit.SECONDS,
        new SynchronousQueue<>(), r -> {
          try {
            return Invocation.run(Invocation.process(), () -> {
              Thread t = new Thread(null, r, idleName, stackSize);
              t.setDaemon(daemon);
              return t;
            });
          } catch (Exception e) {
            throw new IllegalStateException(e); // a thread's constructor throws none
          }
        });
  }

  /** Runs {@code task} on a kept thread named {@code name} while it runs. */
  public void execute(String name, Runnable task) {
    pool.execute(() -> {
      Thread self = Thread.currentThread();
      self.setName(name);
      try {
        task.run();
      } finally {
        self.setName(idleName);
      }
    });
  }
}
