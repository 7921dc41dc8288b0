package io.strata.runtime;

import java.util.ArrayList;
import java.util.List;
import java.util.function.IntConsumer;
import sun.misc.Signal;
import sun.misc.SignalHandler;

/**
 * Takes SIGINT, SIGTERM and SIGHUP from the JVM's default (run the shutdown hooks and exit)
 * while a container runs, so that strata can pass them on and end as the container ends, as
 * `docker run` does. sun.misc.Signal is the JDK's supported way to do this (jdk.unsupported).
 */
final class Signals {
  private static final String[] NAMES = {null, "HUP", "INT", null, null, null, null, null, null,
      null, null, null, null, null, null, "TERM"};

  private Signals() {}

  /** Installs {@code handler} for each signal; returns what {@link #restore} puts back. */
  static List<Object> forward(List<Integer> signals, IntConsumer handler) {
    List<Object> saved = new ArrayList<>();
    for (int n : signals) {
      Signal sig = new Signal(NAMES[n]);
      saved.add(new Object[] {sig, Signal.handle(sig, s -> handler.accept(s.getNumber()))});
    }
    return saved;
  }

  static void restore(List<Object> saved) {
    for (Object o : saved) {
      Object[] pair = (Object[]) o;
      Signal.handle((Signal) pair[0], (SignalHandler) pair[1]);
    }
  }
}
