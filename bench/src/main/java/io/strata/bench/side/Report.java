package io.strata.bench.side;

import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.Graphics2D;
import java.awt.RenderingHints;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import javax.imageio.ImageIO;

/** Results of a side-by-side run, and the Markdown table, CSV and PNG chart made of them. */
final class Report {
  /** seconds[backend][workload] = one value per run. */
  final Map<String, Map<String, List<Double>>> seconds = new LinkedHashMap<>();
  /** roundTrip[backend] = median microseconds of an uncached stat (timeout=0). */
  final Map<String, Double> roundTrip = new LinkedHashMap<>();
  /** scaling[backend][layers] = seconds. */
  final Map<String, Map<Integer, Double>> scaling = new LinkedHashMap<>();
  final List<String> backends;
  final List<String> workloads;
  final String machine;

  Report(List<String> backends, List<String> workloads, String machine) {
    this.backends = backends;
    this.workloads = workloads;
    this.machine = machine;
  }

  void add(String backend, String workload, double s) {
    seconds.computeIfAbsent(backend, b -> new LinkedHashMap<>())
        .computeIfAbsent(workload, w -> new ArrayList<>()).add(s);
  }

  static double median(List<Double> v) {
    List<Double> s = new ArrayList<>(v);
    Collections.sort(s);
    int n = s.size();
    return n == 0 ? Double.NaN : n % 2 == 1 ? s.get(n / 2) : (s.get(n / 2 - 1) + s.get(n / 2)) / 2;
  }

  double median(String backend, String workload) {
    return median(seconds.getOrDefault(backend, Map.of()).getOrDefault(workload, List.of()));
  }

  /** backend / strata for one workload; NaN when either is missing. */
  double ratio(String backend, String workload) {
    return median(backend, workload) / median("strata", workload);
  }

  String markdown() {
    StringBuilder sb = new StringBuilder();
    sb.append("strata side-by-side benchmark — ").append(machine).append("\n\n");
    sb.append("Median seconds of each run, the spread (min–max) and the ratio to strata"
        + " (below 1: faster than strata).\n\n| workload |");
    for (String b : backends) {
      sb.append(' ').append(b).append(" |");
    }
    sb.append("\n|---|");
    backends.forEach(b -> sb.append("---|"));
    sb.append('\n');
    for (String w : workloads) {
      sb.append("| ").append(w).append(" |");
      for (String b : backends) {
        List<Double> v = seconds.getOrDefault(b, Map.of()).getOrDefault(w, List.of());
        if (v.isEmpty()) {
          sb.append(" – |");
          continue;
        }
        sb.append(String.format(Locale.ROOT, " %.3f s (%.3f–%.3f) x%.2f |", median(v),
            Collections.min(v), Collections.max(v), ratio(b, w)));
      }
      sb.append('\n');
    }
    if (!roundTrip.isEmpty()) {
      sb.append("\nThe FUSE round trip: median microseconds of an fstat of an open file with the"
          + " kernel's caches off (timeout=0), so that every one is a GETATTR the daemon"
          + " answers:\n\n|");
      roundTrip.keySet().forEach(b -> sb.append(' ').append(b).append(" |"));
      sb.append("\n|");
      roundTrip.keySet().forEach(b -> sb.append("---|"));
      sb.append("\n|");
      roundTrip.values().forEach(v -> sb.append(String.format(Locale.ROOT, " %.1f µs |", v)));
      sb.append('\n');
    }
    if (!scaling.isEmpty()) {
      sb.append("\nLookup cost against the number of lower layers (seconds to stat every"
          + " file of the bottom layer, cold mount):\n\n| layers |");
      scaling.keySet().forEach(b -> sb.append(' ').append(b).append(" |"));
      sb.append("\n|---|");
      scaling.keySet().forEach(b -> sb.append("---|"));
      sb.append('\n');
      List<Integer> counts = new ArrayList<>(scaling.values().iterator().next().keySet());
      for (int n : counts) {
        sb.append("| ").append(n).append(" |");
        for (Map<Integer, Double> m : scaling.values()) {
          Double v = m.get(n);
          sb.append(v == null ? " – |" : String.format(Locale.ROOT, " %.3f s |", v));
        }
        sb.append('\n');
      }
    }
    return sb.toString();
  }

  String csv() {
    StringBuilder sb = new StringBuilder("backend,workload,run,seconds\n");
    seconds.forEach((b, m) -> m.forEach((w, v) -> {
      for (int i = 0; i < v.size(); i++) {
        sb.append(b).append(',').append(w).append(',').append(i + 1).append(',')
            .append(String.format(Locale.ROOT, "%.6f", v.get(i))).append('\n');
      }
    }));
    roundTrip.forEach((b, us) -> sb.append(b).append(",getattr-roundtrip-us,1,")
        .append(String.format(Locale.ROOT, "%.3f", us)).append('\n'));
    scaling.forEach((b, m) -> m.forEach((n, s) -> sb.append(b).append(",lookup-").append(n)
        .append("-layers,1,").append(String.format(Locale.ROOT, "%.6f", s)).append('\n')));
    return sb.toString();
  }

  /** A bar chart of each backend's median time relative to strata, per workload (log scale). */
  BufferedImage chart() {
    int rowH = 18 * backends.size() + 14;
    int w = 1000;
    int h = 70 + rowH * workloads.size() + 30;
    BufferedImage img = new BufferedImage(w, h, BufferedImage.TYPE_INT_RGB);
    Graphics2D g = img.createGraphics();
    g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, RenderingHints.VALUE_ANTIALIAS_ON);
    g.setColor(Color.WHITE);
    g.fillRect(0, 0, w, h);
    g.setColor(Color.BLACK);
    g.setFont(new Font(Font.SANS_SERIF, Font.BOLD, 14));
    g.drawString("Time relative to strata (log scale; left of the line = faster than strata)",
        10, 20);
    g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 11));
    g.drawString(machine, 10, 38);
    Color[] colors = {new Color(0x999999), new Color(0x1f77b4), new Color(0xff7f0e),
        new Color(0x2ca02c), new Color(0xd62728)};
    int left = 170;
    int plotW = w - left - 60;
    double minLog = Math.log10(1.0 / 64);
    double maxLog = Math.log10(64);
    int x1 = left + (int) ((0 - minLog) / (maxLog - minLog) * plotW);
    int y = 55;
    for (String wl : workloads) {
      g.setColor(Color.BLACK);
      g.drawString(wl, 10, y + rowH / 2);
      for (int i = 0; i < backends.size(); i++) {
        double r = ratio(backends.get(i), wl);
        if (Double.isNaN(r) || r <= 0) {
          continue;
        }
        double lr = Math.max(minLog, Math.min(maxLog, Math.log10(r)));
        int x = left + (int) ((lr - minLog) / (maxLog - minLog) * plotW);
        g.setColor(colors[i % colors.length]);
        g.fillRect(Math.min(x, x1), y + i * 18, Math.max(2, Math.abs(x - x1)), 14);
        g.setColor(Color.DARK_GRAY);
        g.drawString(String.format(Locale.ROOT, "%s x%.2f", backends.get(i), r),
            Math.max(x, x1) + 4, y + i * 18 + 11);
      }
      y += rowH;
    }
    g.setColor(Color.BLACK);
    g.setStroke(new BasicStroke(2));
    g.drawLine(x1, 50, x1, y);
    g.dispose();
    return img;
  }

  void write(Path dir) throws IOException {
    Files.createDirectories(dir);
    Files.writeString(dir.resolve("results.md"), markdown());
    Files.writeString(dir.resolve("results.csv"), csv());
    ImageIO.write(chart(), "png", dir.resolve("results.png").toFile());
  }
}
