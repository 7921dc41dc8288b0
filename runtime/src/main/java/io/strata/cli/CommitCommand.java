package io.strata.cli;

import io.strata.layers.LayerStore;
import io.strata.layers.cli.Output;
import io.strata.layers.cli.StoreOptions;
import io.strata.union.view.UpperChanges;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code strata commit}: a container's or a mount's changes as a new image. */
@Command(name = "commit", mixinStandardHelpOptions = true,
    description = {"Make a new image of a container's or a mount's changes.",
        "",
        "The new image is its image's layers plus one layer holding what was written (OCI"
            + " whiteouts for deletions, opaque directories, hard links, owners, modes, times and"
            + " xattrs kept). The same changes give the same layer (DiffID). A running container"
            + " is paused while its changes are read, as podman does."})
public final class CommitCommand implements Callable<Integer> {
  @Mixin StoreOptions store;

  @Parameters(index = "0", paramLabel = "CONTAINER|MOUNTPOINT") String target;

  @Parameters(index = "1", paramLabel = "NAME[:TAG]") String name;

  @Option(names = {"-m", "--message"}, paramLabel = "TEXT", description = "History comment.")
  String message;

  @Option(names = {"-a", "--author"}, paramLabel = "TEXT", description = "Author.")
  String author;

  @Option(names = {"-c", "--change"}, paramLabel = "INSTRUCTION",
      description = "Apply a Dockerfile instruction to the config: CMD, ENTRYPOINT, ENV,"
          + " WORKDIR, USER or LABEL (JSON array or shell form).")
  List<String> changes = new ArrayList<>();

  @Option(names = {"-q", "--quiet"}, description = "Print only the image id.")
  boolean quiet;

  @Option(names = {"-p", "--pause"}, arity = "0..1", defaultValue = "true", fallbackValue = "true",
      paramLabel = "BOOL", description = "Pause a running container while its changes are read"
          + " (default: true; --pause=false reads them while it runs).")
  boolean pause = true;

  @Override
  public Integer call() throws Exception {
    LayerStore.normalizeName(name);
    Map<String, Object> config = parseChanges(changes);
    LayerStore s = store.open();
    ChangedTree t = ChangedTree.find(s, target);
    if (t.running() && !pause && !quiet) {
      Output.note(t.description() + " is running and not paused: writes it makes meanwhile"
          + " may be partly seen");
    }
    LayerStore.CommitResult r;
    try (io.strata.runtime.container.Cgroups.Paused paused = pause ? t.pause() : () -> { };
        UpperChanges u = t.open(s)) {
      r = s.commit(t.image(), u::writeTar, name, message, author, config,
          quiet ? io.strata.layers.base.Progress.NONE
              : io.strata.layers.cli.TerminalProgress.forConsole());
    }
    if (!quiet) {
      // the same measure as `strata layers` (what the files hold), and the tar's own size
      long content = s.layer(r.diffId()).contentSize();
      Output.note("committed " + t.description() + " as " + String.join(", ", r.image().names())
          + ": layer " + r.diffId().shortHex() + " (" + Output.size(content) + " of files, a "
          + Output.size(r.tarBytes()) + " tar)");
    }
    System.out.println(r.image().id());
    return 0;
  }

  /** Turns CMD/ENTRYPOINT/ENV/WORKDIR/USER/LABEL instructions into config fields. */
  static Map<String, Object> parseChanges(List<String> instructions) {
    Map<String, Object> out = new LinkedHashMap<>();
    Map<String, String> env = new LinkedHashMap<>();
    Map<String, String> labels = new LinkedHashMap<>();
    for (String c : instructions) {
      String[] kv = c.trim().split("\\s+", 2);
      String key = kv[0].toUpperCase(java.util.Locale.ROOT);
      String arg = kv.length > 1 ? kv[1].trim() : "";
      switch (key) {
        case "CMD", "ENTRYPOINT" -> out.put(key.equals("CMD") ? "Cmd" : "Entrypoint", argv(c, arg));
        case "WORKDIR" -> out.put("WorkingDir", require(c, arg));
        case "USER" -> out.put("User", require(c, arg));
        case "ENV" -> pairs(c, arg, env);
        case "LABEL" -> pairs(c, arg, labels);
        default -> throw new IllegalArgumentException("--change '" + c + "': strata applies CMD,"
            + " ENTRYPOINT, ENV, WORKDIR, USER and LABEL");
      }
    }
    if (!env.isEmpty()) {
      List<String> e = new ArrayList<>();
      env.forEach((k, v) -> e.add(k + "=" + v));
      out.put("Env+", e);
    }
    if (!labels.isEmpty()) {
      out.put("Labels+", labels);
    }
    return out;
  }

  private static String require(String c, String arg) {
    if (arg.isEmpty()) {
      throw new IllegalArgumentException("--change '" + c + "' needs an argument");
    }
    return arg;
  }

  private static List<String> argv(String c, String arg) {
    require(c, arg);
    if (arg.startsWith("[")) {
      try {
        return Arrays.asList(io.strata.layers.base.Json.MAPPER.readValue(arg, String[].class));
      } catch (java.io.IOException e) {
        throw new IllegalArgumentException("--change '" + c + "': not a JSON array of strings");
      }
    }
    return List.of("/bin/sh", "-c", arg);
  }

  private static void pairs(String c, String arg, Map<String, String> into) {
    require(c, arg);
    if (!arg.contains("=")) {
      String[] kv = arg.split("\\s+", 2);
      into.put(kv[0], kv.length > 1 ? kv[1] : "");
      return;
    }
    for (String p : arg.split("\\s+")) {
      int eq = p.indexOf('=');
      if (eq <= 0) {
        throw new IllegalArgumentException("--change '" + c + "': expected KEY=VALUE, not '" + p + "'");
      }
      into.put(p.substring(0, eq), p.substring(eq + 1).replaceAll("^\"|\"$", ""));
    }
  }
}
