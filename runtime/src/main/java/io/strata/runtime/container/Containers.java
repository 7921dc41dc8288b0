package io.strata.runtime.container;

import io.strata.layers.base.Json;
import io.strata.layers.base.NotFoundException;
import io.strata.layers.StoreLayout;
import io.strata.layers.fs.Trees;
import io.strata.layers.fs.Mounts;
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
  private static final java.nio.file.attribute.FileAttribute<?> PRIVATE =
      java.nio.file.attribute.PosixFilePermissions.asFileAttribute(
          java.nio.file.attribute.PosixFilePermissions.fromString("rwx------"));
  private static final java.nio.file.attribute.FileAttribute<?> PRIVATE_FILE =
      java.nio.file.attribute.PosixFilePermissions.asFileAttribute(
          java.nio.file.attribute.PosixFilePermissions.fromString("rw-------"));
  private final Path dir;
  private final Consumer<String> log;

  public Containers(Path storeRoot, Consumer<String> log) {
    this.dir = storeRoot.resolve("containers");
    this.log = log;
  }

  public Path dirOf(String name) {
    return dir.resolve(name);
  }

  /**
   * The container's upper layer: in {@code NAME/diff/}, a directory only root may enter, since
   * the upper holds what the container's root made (setuid files, device nodes) with container
   * ids on disk, and under {@code --userns} the container's root group may pass through
   * {@code NAME/} to its rootfs. A container made by a strata older than that has it in
   * {@code NAME/upper}.
   */
  public Path upperOf(String name) throws IOException {
    Path old = dirOf(name).resolve("upper");
    if (Files.isDirectory(old, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
      return old;
    }
    return StoreLayout.privateDir(dirOf(name).resolve("diff")).resolve("upper");
  }

  /** The work directory beside {@link #upperOf the upper}. */
  public Path workOf(String name) throws IOException {
    Path old = dirOf(name).resolve("work");
    if (Files.isDirectory(old, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
      return old;
    }
    return StoreLayout.privateDir(dirOf(name).resolve("diff")).resolve("work");
  }

  /** Where the container's root is mounted while it runs. */
  public Path rootfsOf(String name) {
    return dirOf(name).resolve("rootfs");
  }

  public ContainerState read(String name) throws IOException {
    Path f = dirOf(name).resolve("state.json");
    if (!Files.exists(f)) {
      throw new NotFoundException("no container " + name + " (see `strata ps`)");
    }
    return Json.MAPPER.readValue(f.toFile(), ContainerState.class);
  }

  public void write(ContainerState s) throws IOException {
    Path f = dirOf(s.name()).resolve("state.json");
    Path tmp = f.resolveSibling("state.json.tmp");
    Files.deleteIfExists(tmp);
    Files.createFile(tmp, PRIVATE_FILE); // the command line may hold a secret
    Json.MAPPER.writeValue(tmp.toFile(), s);
    Files.move(tmp, f, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
  }

  /**
   * Takes a name: the container's directory appears with its state in it, by one rename, so
   * that no directory of a container is ever without its state.
   */
  public void create(ContainerState s) throws IOException {
    StoreLayout.ensure(dir, StoreLayout.DIRS.get("containers"));
    Path target = dirOf(s.name());
    if (Files.exists(target)) {
      throw new IllegalArgumentException("container name " + s.name() + " is in use (`strata rm "
          + s.name() + "` removes a stopped one)");
    }
    Path tmp = dir.resolve(".new-" + s.name() + "-" + ProcessHandle.current().pid());
    Trees.deleteRecursively(tmp);
    Files.createDirectory(tmp, PRIVATE); // its upper will hold what the container's root made
    Files.createFile(tmp.resolve("state.json"), PRIVATE_FILE);
    Json.MAPPER.writeValue(tmp.resolve("state.json").toFile(), s);
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
          closeToOthers(p);
          out.add(reap(read(p.getFileName().toString())));
        }
      }
    }
    out.sort((a, b) -> b.created().compareTo(a.created()));
    return out;
  }

  /**
   * Lets the root of a user-namespaced container (host ids {@code hostGid}..) reach its rootfs
   * mountpoint: its directory becomes 0710 with that group, so that it and no other user may
   * pass through (not list); upper and work stay behind {@code diff/} (0700), and the state
   * file is 0600.
   */
  public void shareWithContainerRoot(String name, int hostGid) throws IOException {
    Path d = dirOf(name);
    if (!Files.isDirectory(d.resolve("diff"))) {
      throw new IOException(d + " keeps its upper outside diff/: it cannot be shared");
    }
    io.strata.layers.fs.Posix.lchown(d, 0, hostGid);
    io.strata.layers.fs.Posix.chmod(d, 0710);
  }

  /**
   * A container directory made by a strata older than {@link StoreLayout}'s table (0755) is
   * made private; one shared with a user-namespaced container's root group (0710) stays so.
   */
  private static void closeToOthers(Path d) throws IOException {
    int mode = (Integer) Files.getAttribute(d, "unix:mode") & 07777;
    if ((mode & 07) != 0 || ((mode & 070) != 0 && (Integer) Files.getAttribute(d, "unix:gid") == 0)) {
      io.strata.layers.fs.Posix.chmod(d, 0700);
    }
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
    Path rootfs = rootfsOf(name);
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
