package io.strata.cli;

import io.strata.layers.base.NotFoundException;
import io.strata.layers.cli.Output;
import io.strata.runtime.daemon.DaemonServer;
import io.strata.union.mount.FuseMount;
import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code strata stats [MOUNT]}: live figures of the daemon and the mounts it serves: requests
 * by opcode with latency percentiles, cache sizes and hit rates, open files, memory.
 */
@Command(name = "stats", mixinStandardHelpOptions = true,
    description = {"Show live figures of the daemon and its mounts.",
        "",
        "Without MOUNT: the daemon (memory, threads, commands) and a line per mount. With"
            + " MOUNT: that mount's requests by opcode with percentiles of the time strata took"
            + " to serve them (bounds of power-of-two buckets, so within a factor of two), its"
            + " caches and open files. Needs the daemon (`strata daemon`): a mount served by a"
            + " process of its own logs its counters when it ends."})
public final class StatsCommand implements Callable<Integer> {
  @Parameters(arity = "0..1", paramLabel = "MOUNT", description = "A mountpoint the daemon serves.")
  Path mount;

  @Option(names = "--format", paramLabel = "FORMAT", defaultValue = "table",
      description = "table or json (default: ${DEFAULT-VALUE}).")
  Output.Format format;

  @Override
  public Integer call() throws Exception {
    DaemonServer d = DaemonServer.running();
    if (d == null) {
      throw new NotFoundException("no strata daemon serves this user's mounts (strata stats"
          + " reads a daemon's figures; start one with `strata daemon`)");
    }
    List<FuseMount> mounts = new ArrayList<>(FuseMount.live());
    mounts.sort((a, b) -> a.mountpoint().compareTo(b.mountpoint()));
    if (mount != null) {
      Path want = real(mount);
      mounts.removeIf(m -> !m.mountpoint().equals(want));
      if (mounts.isEmpty()) {
        throw new NotFoundException("the daemon serves no mount at " + want
            + " (`strata stats` lists those it serves)");
      }
    }
    Map<String, Object> out = new LinkedHashMap<>();
    out.put("daemon", daemon(d));
    List<Map<String, Object>> reports = new ArrayList<>();
    for (FuseMount m : mounts) {
      reports.add(m.report());
    }
    out.put("mounts", reports);
    if (format == Output.Format.json) {
      Output.json(out);
      return 0;
    }
    if (mount == null) {
      printDaemon(out);
      printMounts(reports);
    } else {
      printMount(reports.get(0));
    }
    return 0;
  }

  private static Path real(Path p) {
    try {
      return p.toRealPath();
    } catch (java.io.IOException e) {
      return p.toAbsolutePath().normalize();
    }
  }

  static Map<String, Object> daemon(DaemonServer d) {
    Map<String, Object> s = new LinkedHashMap<>();
    s.put("pid", ProcessHandle.current().pid());
    s.put("uptimeSeconds", java.time.Duration.between(d.started(), java.time.Instant.now())
        .toSeconds());
    s.put("commandsServed", d.served());
    s.put("commandsRunning", d.active() - 1); // this one
    s.put("clientsRefused", d.refused());
    s.put("residentBytes", DaemonCommand.residentBytes());
    var heap = ManagementFactory.getMemoryMXBean().getHeapMemoryUsage();
    s.put("heapUsedBytes", heap.getUsed());
    s.put("heapCommittedBytes", heap.getCommitted());
    s.put("threads", ManagementFactory.getThreadMXBean().getThreadCount());
    s.put("mounts", FuseMount.live().size());
    s.put("keptLowerTrees", io.strata.union.view.UnionView.keptLowerTrees());
    return s;
  }

  @SuppressWarnings("unchecked")
  private static void printDaemon(Map<String, Object> out) {
    Map<String, Object> s = (Map<String, Object>) out.get("daemon");
    System.out.printf("daemon pid %s, up %s s: %s commands served, %s running; %s resident"
        + " (heap %s in use of %s), %s threads, %s mounts, %s lower trees kept for the next"
        + " mount%n", s.get("pid"),
        s.get("uptimeSeconds"), s.get("commandsServed"), s.get("commandsRunning"),
        Output.size((Long) s.get("residentBytes")), Output.size((Long) s.get("heapUsedBytes")),
        Output.size((Long) s.get("heapCommittedBytes")), s.get("threads"), s.get("mounts"),
        s.get("keptLowerTrees"));
  }

  @SuppressWarnings("unchecked")
  private static void printMounts(List<Map<String, Object>> reports) {
    if (reports.isEmpty()) {
      return;
    }
    List<String[]> rows = new ArrayList<>();
    rows.add(new String[] {"MOUNT", "REQUESTS", "P50", "P99", "NODES", "OPEN", "LOWER HITS",
        "WORKERS"});
    for (Map<String, Object> r : reports) {
      long n = 0;
      Map<String, Object> reqs = (Map<String, Object>) r.getOrDefault("requests", Map.of());
      double p50 = 0;
      double p99 = 0;
      for (Object o : reqs.values()) {
        Map<String, Object> q = (Map<String, Object>) o;
        long c = (Long) q.get("count");
        n += c;
        p50 = Math.max(p50, (Double) q.get("p50Micros"));
        p99 = Math.max(p99, (Double) q.get("p99Micros"));
      }
      Map<String, Object> caches = (Map<String, Object>) r.get("caches");
      Map<String, Object> lower = (Map<String, Object>) caches.get("lowerDirectories");
      rows.add(new String[] {(String) r.get("mountpoint"), String.valueOf(n),
          reqs.isEmpty() ? "-" : micros(p50), reqs.isEmpty() ? "-" : micros(p99),
          String.valueOf(r.getOrDefault("nodes", "-")), String.valueOf(caches.get("openFiles")),
          percent((Double) lower.get("hitRate")), String.valueOf(r.getOrDefault("workers", "-"))});
    }
    Output.table(rows);
    System.out.println("(P50 and P99: the slowest opcode's, of the time strata took to serve"
        + " a request; `strata stats MOUNT` lists each opcode)");
  }

  @SuppressWarnings("unchecked")
  private static void printMount(Map<String, Object> r) {
    int lowers = (Integer) r.get("lowers");
    System.out.printf("%s (%s transport, passthrough %s, %d lower%s, upper %s)%n",
        r.get("mountpoint"), r.get("transport"), (Boolean) r.get("passthrough") ? "on" : "off",
        lowers, lowers == 1 ? "" : "s", r.get("upper") == null ? "none: read-only"
            : r.get("upper"));
    Map<String, Object> reqs = (Map<String, Object>) r.getOrDefault("requests", Map.of());
    if (!reqs.isEmpty()) {
      List<String[]> rows = new ArrayList<>();
      rows.add(new String[] {"OPCODE", "COUNT", "P50", "P90", "P99", "MAX"});
      for (Map.Entry<String, Object> e : reqs.entrySet()) {
        Map<String, Object> q = (Map<String, Object>) e.getValue();
        rows.add(new String[] {e.getKey(), String.valueOf(q.get("count")),
            micros((Double) q.get("p50Micros")), micros((Double) q.get("p90Micros")),
            micros((Double) q.get("p99Micros")), micros((Double) q.get("maxMicros"))});
      }
      Output.table(rows);
    }
    Map<String, Object> caches = (Map<String, Object>) r.get("caches");
    Map<String, Object> lower = (Map<String, Object>) caches.get("lowerDirectories");
    Map<String, Object> marks = (Map<String, Object>) caches.get("upperMarkers");
    Map<String, Object> steps = (Map<String, Object>) caches.get("directorySteps");
    System.out.printf("caches: lower directories %s merged, %s hits, %s names looked up%s;"
        + " upper markers %s hits; directory steps %s cached, %s hits%n",
        lower.get("cachedDirectories"), percent((Double) lower.get("hitRate")),
        lower.getOrDefault("namesLookedUp", "-"),
        ((Integer) lower.get("sharedByMounts")) > 1
            ? " (shared by " + lower.get("sharedByMounts") + " mounts)"
            : ((Number) lower.getOrDefault("keptFromEarlierMounts", 0L)).longValue() > 0
            ? " (kept from an earlier mount)" : "",
        percent((Double) marks.get("hitRate")), steps.get("cached"),
        percent((Double) steps.get("hitRate")));
    System.out.printf("open files %s; nodes %s (%s retired); opens passed through %s, served"
        + " %s; workers %s%n", caches.get("openFiles"), r.getOrDefault("nodes", "-"),
        r.getOrDefault("nodesRetired", "-"), r.getOrDefault("opensPassedThrough", "-"),
        r.getOrDefault("opensServed", "-"), r.getOrDefault("workers", "-"));
  }

  static String micros(double us) {
    return us >= 1000 ? String.format(Locale.ROOT, "%.1f ms", us / 1000)
        : String.format(Locale.ROOT, "%.0f µs", Math.max(us, 0));
  }

  static String percent(double rate) {
    return String.format(Locale.ROOT, "%.1f%%", 100 * rate);
  }
}
