package io.strata.layers.base;

/**
 * How strata quotes input in messages (never more than a few hundred characters of it), and
 * reads the numbers people type.
 */
public final class Text {
  /** The most of one piece of input a message quotes. */
  public static final int MAX_QUOTE = 200;

  private Text() {}

  /** {@code s} itself when short, else its start and end around the count of what was left out. */
  public static String clip(String s) {
    if (s == null || s.length() <= MAX_QUOTE) {
      return s;
    }
    int keep = MAX_QUOTE / 2;
    return s.substring(0, keep) + "…[" + (s.length() - 2 * keep) + " more characters]…"
        + s.substring(s.length() - keep);
  }

  private static final java.util.regex.Pattern DECIMAL =
      java.util.regex.Pattern.compile("[0-9]{1,18}(\\.[0-9]{0,18})?|\\.[0-9]{1,18}");

  /**
   * A number as a person writes it: digits with an optional decimal point, nothing else (not
   * NaN, Infinity, 1e3 or Java's hexadecimal 0x1p-3, which Double.parseDouble all accepts).
   *
   * @param what names the option in the error, such as "--cpus" or "timeout="
   */
  public static double decimal(String s, String what) {
    if (s == null || !DECIMAL.matcher(s).matches()) {
      throw new IllegalArgumentException(what + (what.endsWith("=") ? "" : " ") + clip(s)
          + ": expected a decimal number such as 0.5 or 30");
    }
    return Double.parseDouble(s);
  }

  /**
   * {@code s} with every control character written as an escape (\n, \t, \xNN), so that
   * input quoted in a line of output stays on that line and cannot move the cursor.
   */
  public static String printable(String s) {
    if (s == null) {
      return null;
    }
    StringBuilder sb = null;
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0)) {
        if (sb == null) {
          sb = new StringBuilder(s.length() + 8).append(s, 0, i);
        }
        switch (c) {
          case '\n' -> sb.append("\\n");
          case '\t' -> sb.append("\\t");
          case '\r' -> sb.append("\\r");
          default -> sb.append(String.format("\\x%02x", (int) c));
        }
      } else if (sb != null) {
        sb.append(c);
      }
    }
    return sb == null ? s : sb.toString();
  }

  /** Bytes in binary units with one decimal, as people read sizes ("41.2 MiB"). */
  public static String size(long bytes) {
    if (bytes < 1024) {
      return bytes + " B";
    }
    String[] units = {"KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = bytes;
    int u = -1;
    while (v >= 1024 && u < units.length - 1) {
      v /= 1024;
      u++;
    }
    return String.format(java.util.Locale.ROOT, "%.1f %s", v, units[u]);
  }

  /**
   * A raw name (one char per byte, as strata keeps names) as a person reads it: decoded as
   * UTF-8 (invalid bytes shown as U+FFFD), clipped, control characters escaped.
   */
  public static String display(String raw) {
    byte[] b = new byte[raw.length()];
    for (int i = 0; i < b.length; i++) {
      b[i] = (byte) raw.charAt(i);
    }
    return printable(clip(new String(b, java.nio.charset.StandardCharsets.UTF_8)));
  }
}
