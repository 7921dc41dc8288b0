package io.strata.layers.cli;

import io.strata.layers.base.Progress;
import java.io.PrintStream;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Draws the progress of long store work on one line of a terminal, at most ten times a
 * second, as the phases it has: downloading (all blobs under way together), sending, and the
 * work on one layer at a time (unpacking, compressing, writing), each with its bytes, share
 * and rate; finished steps are printed above it. When stderr is not a terminal it draws
 * nothing, so scripts and logs stay quiet.
 */
public final class TerminalProgress implements Progress {
  private final PrintStream out = io.strata.layers.base.Invocation.current().err();
  private long lastDraw;
  private boolean drawn;
  /** Blobs under way from or to a registry, by label: bytes so far and total (any thread). */
  private final Map<String, long[]> downloads = new ConcurrentHashMap<>();
  private final Map<String, long[]> uploads = new ConcurrentHashMap<>();
  private volatile long downloadStart;
  private volatile long uploadStart;
  // the layer work under way (the importer's thread, or the command's)
  private String verb;
  private String layer = "";
  private long bytes;
  private long expected;
  private long workStart;

  private TerminalProgress() {}

  /** Progress for this process: drawn on a terminal, silent otherwise. */
  public static Progress forConsole() {
    return io.strata.layers.base.Invocation.current().stderrIsTerminal() ? new TerminalProgress()
        : Progress.NONE;
  }

  @Override
  public synchronized void layerStarted(int index, int count, String label, long expectedBytes) {
    startWork("unpacking", "layer " + index + "/" + count, expectedBytes);
  }

  @Override
  public synchronized void bytesRead(long n) {
    bytes += n;
    draw(false);
  }

  @Override
  public synchronized void layerDone(int index, int count, String label, boolean alreadyStored) {
    clear();
    out.println("  layer " + index + "/" + count + " " + label + (alreadyStored
        ? ": already stored" : ": unpacked and stored") + " (" + Output.size(bytes) + ")");
    verb = null;
  }

  @Override
  public synchronized void layerWork(String what, int index, int count, String label,
      long expectedBytes) {
    startWork(what, "layer " + index + "/" + count + " " + label, expectedBytes);
  }

  @Override
  public synchronized void layerWorkDone(String what, int index, int count, String label,
      long n) {
    clear();
    out.println("  layer " + index + "/" + count + " " + label + ": " + what + " done ("
        + Output.size(n) + ")");
    verb = null;
  }

  private void startWork(String what, String which, long expectedBytes) {
    verb = what;
    layer = which;
    bytes = 0;
    expected = expectedBytes;
    workStart = System.nanoTime();
    draw(true);
  }

  @Override
  public void bytesFetched(String label, long n, long total) {
    if (downloads.isEmpty()) {
      downloadStart = System.nanoTime();
    }
    long[] d = downloads.computeIfAbsent(label, k -> new long[] {0, total});
    synchronized (this) {
      d[0] += n;
      if (d[0] >= d[1]) {
        downloads.remove(label);
      }
      draw(false);
    }
  }

  @Override
  public void bytesSent(String label, long n, long total) {
    if (uploads.isEmpty()) {
      uploadStart = System.nanoTime();
    }
    long[] u = uploads.computeIfAbsent(label, k -> new long[] {0, total});
    synchronized (this) {
      u[0] += n;
      if (u[0] >= u[1]) {
        uploads.remove(label);
      }
      draw(false);
    }
  }

  @Override
  public synchronized void message(String text) {
    clear();
    out.println("  " + io.strata.layers.base.Text.printable(text));
    draw(true);
  }

  private void draw(boolean force) {
    long now = System.nanoTime();
    if (!force && now - lastDraw < 100_000_000L) {
      return;
    }
    lastDraw = now;
    StringBuilder line = new StringBuilder();
    part(line, "downloading", downloads, downloadStart, now);
    part(line, "sending", uploads, uploadStart, now);
    if (verb != null) {
      if (line.length() > 0) {
        line.append("  ·  ");
      }
      line.append(verb).append(' ').append(layer).append(' ')
          .append(amount(bytes, expected, workStart, now));
    }
    if (line.length() == 0) {
      clear();
      return;
    }
    out.print("\r  " + line + "\u001b[K");
    out.flush();
    drawn = true;
  }

  private static void part(StringBuilder line, String what, Map<String, long[]> blobs,
      long start, long now) {
    if (blobs.isEmpty()) {
      return;
    }
    long got = 0;
    long total = 0;
    for (long[] b : blobs.values()) {
      got += b[0];
      total += b[1];
    }
    if (line.length() > 0) {
      line.append("  ·  ");
    }
    line.append(what).append(blobs.size() > 1 ? " " + blobs.size() + " blobs " : " ")
        .append(amount(got, total, start, now));
  }

  /** "12.0 MiB / 40.0 MiB (30%) 4.1 MiB/s", without the parts that are not known. */
  private static String amount(long n, long total, long start, long now) {
    double secs = Math.max(1e-3, (now - start) / 1e9);
    return Output.size(n) + (total > 0 ? " / " + Output.size(total)
        + String.format(Locale.ROOT, " (%d%%)", Math.min(100, n * 100 / total)) : "")
        + " " + Output.size((long) (n / secs)) + "/s";
  }

  private void clear() {
    if (drawn) {
      out.print("\r\u001b[K");
      drawn = false;
    }
  }
}
