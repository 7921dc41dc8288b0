package io.strata.layers;

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
}
