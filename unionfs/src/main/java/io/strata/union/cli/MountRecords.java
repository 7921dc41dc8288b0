package io.strata.union.cli;

import io.strata.layers.base.Json;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * What {@code strata mount} records of each mount in {@code STORE/mount-records/PIN.json}: the
 * mountpoint, the image (by id) and the upper directory, so that {@code strata diff} and
 * {@code strata commit} can take a mountpoint. The record stays after umount (the upper does
 * too) and is replaced by the next mount on the same mountpoint.
 */
public final class MountRecords {
  /** One mount; {@code upper} is null for a read-only mount. */
  public record Entry(String mountpoint, String image, String imageId, String upper) {}

  private MountRecords() {}

  static Path fileOf(Path storeRoot, Path mountpoint) {
    return storeRoot.resolve("mount-records").resolve(MountCommand.pinOf(mountpoint) + ".json");
  }

  static void write(Path storeRoot, Entry e) throws IOException {
    Path f = fileOf(storeRoot, Path.of(e.mountpoint()));
    Files.createDirectories(f.getParent());
    Path tmp = f.resolveSibling("." + f.getFileName() + ".tmp-" + ProcessHandle.current().pid());
    Files.write(tmp, Json.MAPPER.writeValueAsBytes(e));
    Files.move(tmp, f, java.nio.file.StandardCopyOption.ATOMIC_MOVE,
        java.nio.file.StandardCopyOption.REPLACE_EXISTING);
  }

  /** The record of the mount at {@code mountpoint}, or null. */
  public static Entry read(Path storeRoot, Path mountpoint) throws IOException {
    Path f = fileOf(storeRoot, mountpoint.toAbsolutePath().normalize());
    return Files.isRegularFile(f) ? Json.MAPPER.readValue(f.toFile(), Entry.class) : null;
  }
}
