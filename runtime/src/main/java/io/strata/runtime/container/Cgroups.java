package io.strata.runtime.container;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Finds where the memory, cpu and pids controllers live, from the mount table: a cgroup v1
 * hierarchy per controller, or the cgroup2 hierarchy when it lists the controller. A hybrid
 * machine (v1 controllers beside a cgroup2 mount that holds none, as here) uses v1; a pure v2
 * machine uses v2. The root is injectable so the v2 code can be tested on a fake tree.
 */
public final class Cgroups {
  static final List<String> CONTROLLERS = List.of("memory", "cpu", "pids");
  /** Not needed to run, but used where present: it enforces {@link DevicePolicy}. */
  static final String DEVICES = "devices";
  /** Not needed to run, but used where present: commit pauses a container through it. */
  static final String FREEZER = "freezer";
  static final String PARENT = "strata";

  private Cgroups() {}

  /** Which version serves each controller, and where its hierarchy is mounted. */
  public record Layout(Map<String, Path> v1, Path v2) {}

  public static Layout detect() throws IOException {
    Map<String, Path> v1 = new HashMap<>();
    Path v2 = null;
    for (String line : Files.readAllLines(Path.of("/proc/self/mountinfo"), StandardCharsets.UTF_8)) {
      int dash = line.indexOf(" - ");
      if (dash < 0) {
        continue;
      }
      String[] head = line.substring(0, dash).split(" ");
      String[] tail = line.substring(dash + 3).split(" ");
      Path mp = Path.of(head[4]);
      if (tail[0].equals("cgroup2")) {
        v2 = mp;
      } else if (tail[0].equals("cgroup") && tail.length > 2) {
        for (String opt : tail[2].split(",")) {
          if (CONTROLLERS.contains(opt) || opt.equals(DEVICES) || opt.equals(FREEZER)) {
            v1.put(opt, mp);
          }
        }
      }
    }
    List<String> missing = new ArrayList<>();
    for (String c : CONTROLLERS) {
      if (!v1.containsKey(c) && (v2 == null || !v2Controllers(v2).contains(c))) {
        missing.add(c);
      }
    }
    if (!missing.isEmpty()) {
      throw new IOException("no cgroup controller for " + missing
          + " (mount cgroup2 with them enabled, or the v1 hierarchies)");
    }
    // Controllers that v1 holds are not available in v2, whatever cgroup2 lists.
    return new Layout(v1, v1.keySet().containsAll(CONTROLLERS) ? null : v2);
  }

  static List<String> v2Controllers(Path root) throws IOException {
    try {
      return List.of(Files.readString(root.resolve("cgroup.controllers")).trim().split("\\s+"));
    } catch (NoSuchFileException e) {
      return List.of();
    }
  }

  /** The controller that enforces each kind of limit a container may be given. */
  static List<String> controllersFor(Limits l) {
    List<String> c = new ArrayList<>();
    if (l.memory() != -1 || l.memorySwap() != -1) {
      c.add("memory");
    }
    if (l.cpuQuotaMicros() != -1) {
      c.add("cpu");
    }
    if (l.pids() != -1) {
      c.add("pids");
    }
    return c;
  }

  /** Where the cgroup2 hierarchy is mounted (the last such mount), or null. */
  private static Path cgroup2Mount() throws IOException {
    Path v2 = null;
    for (String line : Files.readAllLines(Path.of("/proc/self/mountinfo"), StandardCharsets.UTF_8)) {
      int dash = line.indexOf(" - ");
      if (dash > 0 && line.substring(dash + 3).startsWith("cgroup2 ")) {
        v2 = Path.of(line.substring(0, dash).split(" ")[4]);
      }
    }
    return v2;
  }

  /**
   * The cgroup v2 subtree delegated to this process's user, where a user's containers get
   * their limits: the process's own cgroup when it may make cgroups in it and move processes
   * into them (systemd's user manager delegates one to a unit with {@code Delegate=yes},
   * chowned to the user; in the user's namespace its files are root's). Null otherwise, with
   * the reason appended to {@code why}.
   */
  static Path delegated(StringBuilder why) throws IOException {
    Path v2 = cgroup2Mount();
    if (v2 == null) {
      why.append("no cgroup2 hierarchy is mounted");
      return null;
    }
    String own = null;
    for (String line : Files.readAllLines(Path.of("/proc/self/cgroup"), StandardCharsets.UTF_8)) {
      if (line.startsWith("0::/")) {
        own = line.substring(3);
      }
    }
    if (own == null) {
      why.append("this process is in no cgroup v2 cgroup");
      return null;
    }
    Path c = own.equals("/") ? v2 : v2.resolve(own.substring(1));
    if (c.getFileName() != null && c.getFileName().toString().equals(PARENT + "-self")) {
      c = c.getParent(); // moved there by an earlier container's limits (CgroupV2#createDelegated)
    }
    if (!own.equals("/") && Files.isWritable(c) && Files.isWritable(c.resolve("cgroup.procs"))
        && Files.isWritable(c.resolve("cgroup.subtree_control"))) {
      return c;
    }
    why.append("its cgroup v2 cgroup ").append(own).append(" is not delegated to the user"
        + " (systemd's user manager delegates one to a service with Delegate=yes)");
    return null;
  }

  /**
   * A container cgroup given by its path (a user's, below the subtree delegated to them),
   * rather than by a name in the host's hierarchies; null for a name.
   */
  static Path delegatedPath(String cgroup) throws IOException {
    if (!cgroup.startsWith("/")) {
      return null;
    }
    Path p = Path.of(cgroup).normalize();
    Path v2 = cgroup2Mount();
    if (v2 == null || !p.startsWith(v2) || p.getParent() == null
        || !p.getParent().getFileName().toString().equals(PARENT)
        || !p.getFileName().toString().startsWith("ctr-")) {
      throw new IOException("not a container's cgroup: " + cgroup);
    }
    return p;
  }

  /** Creates the cgroup {@code strata/NAME} in every hierarchy the layout uses. */
  public static Cgroup create(Layout layout, String name) throws IOException {
    if (!name.matches("[A-Za-z0-9_.-]{1,128}")) {
      throw new IllegalArgumentException("bad cgroup name " + name);
    }
    if (layout.v1().keySet().containsAll(CONTROLLERS)) {
      return CgroupV1.create(layout.v1(), name);
    }
    return CgroupV2.create(layout.v2(), name);
  }

  /**
   * Removes the cgroup {@code strata/NAME} wherever it exists, killing what is left in it,
   * without creating anything (for the clean-up after a strata that was killed).
   */
  public static void remove(Layout layout, String name) throws IOException {
    Path own = delegatedPath(name);
    if (own != null) {
      killAndRemove(own);
      return;
    }
    for (Path root : layout.v1().values()) {
      killAndRemove(root.resolve(PARENT).resolve(name));
    }
    if (layout.v2() != null) {
      killAndRemove(layout.v2().resolve(PARENT).resolve(name));
    }
  }

  /** A paused cgroup; closing it lets its processes run again. */
  public interface Paused extends AutoCloseable {
    @Override
    void close() throws IOException;
  }

  /**
   * Pauses every process of the cgroup {@code strata/NAME} (the v1 freezer, or cgroup.freeze
   * on v2), as podman pauses a container it commits, and waits until all are stopped. Fails,
   * thawing what it froze, when the cgroup cannot be frozen within {@code limit}.
   */
  public static Paused pause(Layout layout, String name, java.time.Duration limit)
      throws IOException {
    Path v1 = layout.v1().get(FREEZER);
    Path own = delegatedPath(name);
    Path dir;
    String file;
    String frozen;
    String thawed;
    if (own != null && Files.exists(own.resolve("cgroup.freeze"))) {
      dir = own;
      file = "cgroup.freeze";
      frozen = "1";
      thawed = "0";
    } else if (v1 != null && Files.isDirectory(v1.resolve(PARENT).resolve(name))) {
      dir = v1.resolve(PARENT).resolve(name);
      file = "freezer.state";
      frozen = "FROZEN";
      thawed = "THAWED";
    } else if (layout.v2() != null && Files.exists(layout.v2().resolve(PARENT).resolve(name)
        .resolve("cgroup.freeze"))) {
      dir = layout.v2().resolve(PARENT).resolve(name);
      file = "cgroup.freeze";
      frozen = "1";
      thawed = "0";
    } else {
      throw new IOException("its cgroup strata/" + name + " has no freezer (a container started"
          + " by an older strata, or no freezer controller mounted)");
    }
    Path control = dir.resolve(file);
    Paused undo = () -> write(control, thawed);
    write(control, frozen);
    long deadline = System.nanoTime() + limit.toNanos();
    while (!isFrozen(dir, file.equals("cgroup.freeze"))) {
      if (System.nanoTime() > deadline) {
        undo.close();
        throw new IOException("its processes did not stop within " + limit.toSeconds() + " s");
      }
      try {
        Thread.sleep(5);
      } catch (InterruptedException e) {
        undo.close();
        Thread.currentThread().interrupt();
        throw new IOException("interrupted while pausing");
      }
    }
    return undo;
  }

  private static boolean isFrozen(Path dir, boolean v2) throws IOException {
    if (v2) {
      return keyed(dir.resolve("cgroup.events"), "frozen") == 1;
    }
    return read(dir.resolve("freezer.state")).equals("FROZEN");
  }

  static String read(Path p) throws IOException {
    return Files.readString(p, StandardCharsets.UTF_8).trim();
  }

  static void write(Path p, String value) throws IOException {
    Files.writeString(p, value, StandardCharsets.UTF_8);
  }

  /** A "key value" line of a flat-keyed cgroup file such as memory.events; 0 when absent. */
  static long keyed(Path file, String key) throws IOException {
    if (!Files.exists(file)) {
      return 0;
    }
    for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
      String[] kv = line.trim().split("\\s+");
      if (kv.length == 2 && kv[0].equals(key)) {
        return Long.parseLong(kv[1]);
      }
    }
    return 0;
  }

  /** Kills whatever is left in a cgroup directory, then removes it, retrying briefly. */
  static void killAndRemove(Path dir) throws IOException {
    if (!Files.isDirectory(dir)) {
      return;
    }
    // A frozen process cannot die: thaw what a commit killed while pausing may have left frozen.
    for (String[] f : new String[][] {{"freezer.state", "THAWED"}, {"cgroup.freeze", "0"}}) {
      if (Files.exists(dir.resolve(f[0]))) {
        write(dir.resolve(f[0]), f[1]);
      }
    }
    for (int attempt = 0; attempt < 100; attempt++) {
      List<String> pids;
      try {
        pids = Files.readAllLines(dir.resolve("cgroup.procs"));
      } catch (NoSuchFileException gone) {
        return;
      }
      for (String pid : pids) {
        if (!pid.isBlank()) {
          ProcessHandle.of(Long.parseLong(pid.trim())).ifPresent(ProcessHandle::destroyForcibly);
        }
      }
      try {
        Files.delete(dir);
        return;
      } catch (NoSuchFileException gone) {
        return;
      } catch (IOException busy) {
        try {
          Thread.sleep(20);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new IOException("interrupted while removing " + dir);
        }
      }
    }
    throw new IOException("cannot remove cgroup " + dir + ": processes remain");
  }
}
