package io.strata.cli;

import io.strata.layers.base.Digest;
import io.strata.layers.ImageRecord;
import io.strata.layers.LayerStore;
import io.strata.layers.base.NotFoundException;
import io.strata.runtime.container.ContainerState;
import io.strata.runtime.container.Containers;
import io.strata.union.view.UpperChanges;
import io.strata.union.cli.MountRecords;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * What {@code strata diff} and {@code strata commit} work on: a container (by name) or a
 * {@code strata mount} mountpoint, as its upper directory over its image's layers.
 */
record ChangedTree(String description, ImageRecord image, Path upper, boolean running,
    String cgroup) {

  static ChangedTree find(LayerStore store, String target) throws IOException {
    Path asPath = Path.of(target);
    MountRecords.Entry m = target.contains("/") || Files.isDirectory(asPath)
        ? MountRecords.read(store.root(), asPath) : null;
    if (m == null && target.contains("/")) {
      throw new NotFoundException(target + " is not a `strata mount` mountpoint of the store "
          + store.root());
    }
    if (m != null) {
      if (m.upper() == null) {
        throw new IllegalArgumentException(target + " was mounted read-only: nothing changed");
      }
      return new ChangedTree("mount " + m.mountpoint(), image(store, m.imageId(), m.image()),
          Path.of(m.upper()), false, null);
    }
    Containers c = new Containers(store.root(), io.strata.layers.cli.Output::note);
    ContainerState s = c.read(target); // NotFound names the container and `strata ps`
    return new ChangedTree("container " + s.name(), image(store, s.imageId(), s.image()),
        c.upperOf(s.name()), ContainerState.RUNNING.equals(s.status()), s.cgroup());
  }

  private static ImageRecord image(LayerStore store, String id, String ref) {
    if (id != null && Digest.isDigest(id)) {
      try {
        return store.resolve(id);
      } catch (NotFoundException gone) {
        throw new NotFoundException("the image " + ref + " (" + id + ") is no longer in the"
            + " store");
      }
    }
    return store.resolve(ref);
  }

  /** The layer trees, top first. */
  List<Path> lowers(LayerStore store) {
    List<Path> out = new ArrayList<>();
    List<Digest> ids = image.diffIds();
    for (int i = ids.size() - 1; i >= 0; i--) {
      out.add(store.layerTree(ids.get(i)));
    }
    return out;
  }

  /**
   * Pauses a running container until the result is closed (nothing to do for a mount or a
   * stopped container): its processes cannot change the upper while it is read.
   */
  io.strata.runtime.container.Cgroups.Paused pause() throws IOException {
    if (!running || cgroup == null) {
      return () -> { };
    }
    try {
      return io.strata.runtime.container.Cgroups.pause(io.strata.runtime.container.Cgroups.detect(), cgroup,
          java.time.Duration.ofSeconds(10));
    } catch (IOException e) {
      throw new IOException("cannot pause " + description + ": " + e.getMessage()
          + "; --pause=false commits it running", e);
    }
  }

  UpperChanges open(LayerStore store) throws IOException {
    if (!Files.isDirectory(upper)) {
      throw new NotFoundException(description + ": its upper directory " + upper + " is gone");
    }
    return new UpperChanges(upper, lowers(store));
  }
}
