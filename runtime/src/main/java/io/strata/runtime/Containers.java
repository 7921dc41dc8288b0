package io.strata.runtime;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.strata.layers.Json;
import io.strata.layers.NotFoundException;
import io.strata.layers.Trees;
import io.strata.union.Mounts;
import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * The containers of one store: their state files, upper layers and rootfs mountpoints, and
 * the clean-up after a strata process that was killed while its container ran.
 */
public final class Containers {
  private static final ObjectMapper JSON = Json.MAPPER;
  private final Path dir;
  private final Consumer<String> log;

  public Containers(Path storeRoot, Consumer<String> log) {
    this.dir = storeRoot.resolve("containers");
    this.log = log;
  }

  public Path dirOf(String name) {
    return dir.resolve(name);
  }

  public ContainerState read(String name) throws IOException {
    Path f = dirOf(name).resolve("state.json");
    if (!Files.exists(f)) {
      throw new NotFoundException("no container " + name + " (see `strata ps`)");
    }
    return JSON.readValue(f.toFile(), ContainerState.class);
  }

  public void write(ContainerState s) throws IOException {
    Path f = dirOf(s.name()).resolve("state.json");
    Path tmp = f.resolveSibling("state.json.tmp");
    JSON.writeValue(tmp.toFile(), s);
    Files.move(tmp, f, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
  }

  /**
   * Takes a name: the container's directory appears with its state in it, by one rename, so
   * that no directory of a container is ever without its state.
   */
  public void create(ContainerState s) throws IOException {
    Files.createDirectories(dir);
    Path target = dirOf(s.name());
    if (Files.exists(target)) {
      throw new IllegalArgumentException("container name " + s.name() + " is in use (`strata rm "
          + s.name() + "` removes a stopped one)");
    }
    Path tmp = dir.resolve(".new-" + s.name() + "-" + ProcessHandle.current().pid());
    Trees.deleteRecursively(tmp);
    Files.createDirectory(tmp);
    JSON.writeValue(tmp.resolve("state.json").toFile(), s);
    try {
      Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
    } catch (IOException lost) { // another start took the name in the meantime
      Trees.deleteRecursively(tmp);
      throw new IllegalArgumentException("container name " + s.name() + " is in use");
    }
  }

  /** Every container, after cleaning up those whose strata died while they ran. */
  public List<ContainerState> list() throws IOException {
    List<ContainerState> out = new ArrayList<>();
    if (!Files.isDirectory(dir)) {
      return out;
    }
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir)) {
      for (Path p : ds) {
        String f = p.getFileName().toString();
        if (f.startsWith(".new-")) { // a start that was killed before it took its name
          long pid = Long.parseLong(f.substring(f.lastIndexOf('-') + 1));
          if (!ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)) {
            Trees.deleteRecursively(p);
          }
          continue;
        }
        if (Files.exists(p.resolve("state.json"))) {
          out.add(reap(read(p.getFileName().toString())));
        }
      }
    }
    out.sort((a, b) -> b.created().compareTo(a.created()));
    return out;
  }

  /**
   * A container marked running whose strata process is gone was orphaned by a kill: its
   * helper, cgroup and mount are removed and it is marked exited.
   */
  public ContainerState reap(ContainerState s) throws IOException {
    if (!ContainerState.RUNNING.equals(s.status()) && !ContainerState.CREATED.equals(s.status())) {
      return s;
    }
    if (ProcessHandle.of(s.strataPid()).map(ProcessHandle::isAlive).orElse(false)) {
      return s;
    }
    log.accept("cleaning up container " + s.name() + ", whose strata process died");
    ProcessHandle.of(s.helperPid()).ifPresent(ProcessHandle::destroyForcibly);
    cleanupResources(s.name(), s.cgroup());
    ContainerState done = s.withExit(137, "strata died while the container ran",
        Instant.now().toString());
    write(done);
    return done;
  }

  /** Removes the cgroup and unmounts the rootfs of a container; safe to call twice. */
  public void cleanupResources(String name, String cgroupName) throws IOException {
    Path rootfs = dirOf(name).resolve("rootfs");
    if (Mounts.isMountpoint(rootfs)) {
      Mounts.unmount(rootfs, true);
    }
    if (cgroupName != null) {
      Cgroups.remove(Cgroups.detect(), cgroupName);
    }
  }

  /** Removes a stopped container: its state and its upper layer. */
  public void remove(String name) throws IOException {
    if (Files.isDirectory(dirOf(name)) && !Files.exists(dirOf(name).resolve("state.json"))) {
      log.accept("removing " + dirOf(name) + ", which has no state (left by an older strata)");
      cleanupResources(name, "ctr-" + name);
      Trees.deleteRecursively(dirOf(name));
      return;
    }
    ContainerState s = reap(read(name));
    if (ContainerState.RUNNING.equals(s.status())) {
      throw new IllegalStateException("container " + name + " is running; `strata kill "
          + name + "` first");
    }
    Trees.deleteRecursively(dirOf(name));
  }
}
