package io.strata.layers.cli;

import io.strata.layers.Progress;
import java.io.PrintStream;
import java.util.Locale;

/**
 * Draws import progress (layer n of m, bytes read, rate) on one line of a terminal, at most ten
 * times a second. When stdout is not a terminal it draws nothing, so scripts and logs stay quiet.
 */
public final class TerminalProgress implements Progress {
  private final PrintStream out = System.err;
  private final long started = System.nanoTime();
  private long lastDraw;
  private long bytes;
  private long expected;
  private String layer = "";
  private boolean drawn;

  private TerminalProgress() {}

  /** Progress for this process: drawn on a terminal, silent otherwise. */
  public static Progress forConsole() {
    return System.console() != null ? new TerminalProgress() : Progress.NONE;
  }

  @Override
  public void layerStarted(int index, int count, String label, long expectedBytes) {
    layer = "layer " + index + "/" + count;
    bytes = 0;
    expected = expectedBytes;
    draw(true);
  }

  @Override
  public void bytesRead(long n) {
    bytes += n;
    draw(false);
  }

  @Override
  public void layerDone(int index, int count, String label, boolean alreadyStored) {
    clear();
    out.println("  " + layer + " " + label + (alreadyStored ? ": already stored" : ": stored")
        + " (" + Output.size(bytes) + ")");
  }

  @Override
  public void message(String text) {
    clear();
    out.println("  " + text);
  }

  private void draw(boolean force) {
    long now = System.nanoTime();
    if (!force && now - lastDraw < 100_000_000L) {
      return;
    }
    lastDraw = now;
    double secs = Math.max(1e-3, (now - started) / 1e9);
    String pct = expected > 0 ? String.format(Locale.ROOT, " %3d%%", Math.min(100, bytes * 100 / expected)) : "";
    out.print("\r  " + layer + pct + "  " + Output.size(bytes)
        + (expected > 0 ? " / " + Output.size(expected) : "") + "  "
        + Output.size((long) (bytes / secs)) + "/s\u001b[K");
    out.flush();
    drawn = true;
  }

  private void clear() {
    if (drawn) {
      out.print("\r\u001b[K");
      drawn = false;
    }
  }
}
