package io.strata.runtime.container;

import java.lang.reflect.Method;
import java.lang.reflect.Proxy;
import java.util.ArrayList;
import java.util.List;
import java.util.function.IntConsumer;

/**
 * Takes SIGINT, SIGTERM and SIGHUP from the JVM's default (run the shutdown hooks and exit)
 * while a container runs, so that strata can pass them on and end as the container ends, as
 * `docker run` does. It uses sun.misc.Signal (module jdk.unsupported, there to stay for this),
 * through reflection so that the build stays free of warnings about it.
 */
final class Signals {
  private static final String[] NAMES = {null, "HUP", "INT", null, null, null, null, null, null,
      null, null, null, null, null, null, "TERM"};

  private Signals() {}

  /**
   * Installs {@code handler} for each signal; returns what {@link #restore} puts back. For a
   * command the daemon runs, the client's signals come as messages (the daemon's own are not
   * the container's): the handler is registered with the command's invocation instead.
   */
  static List<Object> forward(List<Integer> signals, IntConsumer handler) {
    if (io.strata.layers.base.Invocation.isForClient()) {
      AutoCloseable reg = io.strata.layers.base.Invocation.current().onSignal(n -> {
        if (signals.contains(n)) {
          handler.accept(n);
        }
      });
      List<Object> saved = new ArrayList<>();
      saved.add(reg);
      return saved;
    }
    try {
      Class<?> signal = Class.forName("sun.misc.Signal");
      Class<?> handlerType = Class.forName("sun.misc.SignalHandler");
      Method number = signal.getMethod("getNumber");
      Object proxy = Proxy.newProxyInstance(Signals.class.getClassLoader(),
          new Class<?>[] {handlerType}, (self, m, args) -> {
            if (m.getName().equals("handle")) {
              handler.accept((Integer) number.invoke(args[0]));
              return null;
            }
            return switch (m.getName()) {
              case "hashCode" -> System.identityHashCode(self);
              case "equals" -> self == args[0];
              default -> "strata signal forwarder";
            };
          });
      List<Object> saved = new ArrayList<>();
      for (int n : signals) {
        Object sig = signal.getConstructor(String.class).newInstance(NAMES[n]);
        try {
          saved.add(new Object[] {sig, handle(sig, proxy)});
        } catch (java.lang.reflect.InvocationTargetException inUse) {
          // the VM keeps this one (-Xrs and the like): its default, the shutdown hook, stays
        }
      }
      return saved;
    } catch (ReflectiveOperationException e) {
      throw new IllegalStateException("cannot take signals over: " + e, e);
    }
  }

  static void restore(List<Object> saved) {
    for (Object o : saved) {
      if (o instanceof AutoCloseable reg) {
        try {
          reg.close();
        } catch (Exception e) {
          throw new IllegalStateException(e);
        }
        continue;
      }
      Object[] pair = (Object[]) o;
      try {
        handle(pair[0], pair[1]);
      } catch (ReflectiveOperationException e) {
        throw new IllegalStateException("cannot give signals back: " + e, e);
      }
    }
  }

  private static Object handle(Object signal, Object handler) throws ReflectiveOperationException {
    Class<?> handlerType = Class.forName("sun.misc.SignalHandler");
    return signal.getClass().getMethod("handle", signal.getClass(), handlerType)
        .invoke(null, signal, handler);
  }
}
