package io.strata.layers;

/** How strata quotes input in messages: never more than a few hundred characters of it. */
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
}
