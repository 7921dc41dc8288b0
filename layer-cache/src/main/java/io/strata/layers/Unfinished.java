package io.strata.layers;

import io.strata.layers.base.Text;
import io.strata.layers.fs.Trees;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Consumer;

/**
 * The staging areas of store work under way in this process. When the process is asked to end
 * before the work does (Ctrl-C: SIGINT, SIGTERM), a shutdown hook removes each and says what
 * it held, instead of leaving it for the next command to find: nothing half-made stays. In the
 * daemon the process does not end: a command its client cancelled (Ctrl-C there) stops at its
 * next {@link io.strata.layers.base.Invocation#checkCancelled} and its staging area is removed
 * and reported the same way when the work closes.
 */
final class Unfinished implements AutoCloseable {
  private record Work(String what, Consumer<String> log) {}

  private static final Map<Path, Work> ACTIVE = new ConcurrentHashMap<>();

  static {
    Runtime.getRuntime().addShutdownHook(new Thread(Unfinished::cleanUp, "strata-unfinished"));
  }

  private final Path dir;

  private Unfinished(Path dir) {
    this.dir = dir;
  }

  /** Registers {@code dir} as the staging area of {@code what} until closed. */
  static Unfinished begin(Path dir, String what, Consumer<String> log) {
    ACTIVE.put(dir, new Work(what, log));
    return new Unfinished(dir);
  }

  @Override
  public void close() {
    Work w = ACTIVE.remove(dir);
    if (w != null && io.strata.layers.base.Invocation.isForClient()
        && io.strata.layers.base.Invocation.current().cancelled()) {
      remove(dir, w);
    }
  }

  private static void cleanUp() {
    for (Map.Entry<Path, Work> e : ACTIVE.entrySet()) {
      remove(e.getKey(), e.getValue());
    }
  }

  private static void remove(Path dir, Work w) {
    long bytes = 0;
    try {
      bytes = Trees.size(dir);
    } catch (IOException ignored) {
      // the size is only for the message
    }
    // other threads may still write into it while the process ends: try a few times
    IOException last = null;
    for (int attempt = 0; attempt < 5; attempt++) {
      try {
        Trees.deleteRecursively(dir);
        last = null;
        break;
      } catch (IOException ex) {
        last = ex;
      }
    }
    w.log().accept("interrupted: the " + Text.clip(w.what()) + " did not finish; "
        + (last == null ? "removed its staging area (" + Text.size(bytes)
            + "), nothing was stored"
            : "could not remove " + dir + " (" + last.getMessage()
                + "); the next strata command will"));
  }
}
