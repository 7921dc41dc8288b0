package io.strata.layers.base;

/**
 * strata's diagnostic lines on stderr, by level, as podman's --log-level: what a person must
 * know (warn, the default: shown) apart from what explains a run (info, debug: shown when
 * asked for with --log-level or $STRATA_LOG_LEVEL). Every line is made printable first: input
 * quoted in a message (a snapshot key, a file name) cannot forge or break lines.
 */
public final class Log {
  /** The levels, most important first. */
  public enum Level { ERROR, WARN, INFO, DEBUG }

  private static volatile Level level = fromEnv();

  private Log() {}

  private static Level fromEnv() {
    String v = Invocation.current().getenv("STRATA_LOG_LEVEL");
    try {
      return v == null || v.isBlank() ? Level.WARN : parse(v);
    } catch (IllegalArgumentException e) {
      return Level.WARN;
    }
  }

  /** A level by its name (error, warn, info, debug; any case). */
  public static Level parse(String name) {
    try {
      return Level.valueOf(name.trim().toUpperCase(java.util.Locale.ROOT));
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException("log level '" + Text.clip(name)
          + "': expected error, warn, info or debug");
    }
  }

  /** Sets the level of the current command (a daemon's client's), or of this process. */
  public static void setLevel(Level l) {
    if (Invocation.isForClient()) {
      Invocation.current().level(l);
    } else {
      level = l;
    }
  }

  public static Level level() {
    Level own = Invocation.current().level();
    return own != null ? own : level;
  }

  /** Whether lines of {@code l} are shown. */
  public static boolean enabled(Level l) {
    return l.compareTo(level()) <= 0;
  }

  public static void warn(String line) {
    write(Level.WARN, line);
  }

  public static void info(String line) {
    write(Level.INFO, line);
  }

  public static void debug(String line) {
    write(Level.DEBUG, line);
  }

  private static void write(Level l, String line) {
    if (enabled(l)) {
      System.err.println("strata: " + Text.printable(line));
    }
  }
}
