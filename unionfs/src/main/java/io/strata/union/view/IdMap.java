package io.strata.union.view;

import java.util.ArrayList;
import java.util.List;

/**
 * fuse-overlayfs's uidmapping/gidmapping: ranges CONTAINER:HOST:SIZE[:CONTAINER:HOST:SIZE…].
 * Files on disk carry host ids; the view shows container ids. An id outside every range shows
 * as the overflow id 65534, as the kernel does for unmapped ids.
 */
public final class IdMap {
  public static final IdMap IDENTITY = new IdMap(List.of());
  public static final int OVERFLOW = 65534;

  private record Range(long container, long host, long size) {}

  private final List<Range> ranges;

  private IdMap(List<Range> ranges) {
    this.ranges = ranges;
  }

  /** Parses "C:H:S[:C:H:S…]"; throws IllegalArgumentException naming the problem. */
  public static IdMap parse(String spec, String option) {
    String[] parts = spec.split(":");
    if (spec.isBlank() || parts.length % 3 != 0) {
      throw new IllegalArgumentException(option + "=" + spec
          + ": expected CONTAINER:HOST:SIZE triples separated by ':'");
    }
    List<Range> out = new ArrayList<>();
    for (int i = 0; i < parts.length; i += 3) {
      try {
        long c = Long.parseLong(parts[i]);
        long h = Long.parseLong(parts[i + 1]);
        long s = Long.parseLong(parts[i + 2]);
        if (c < 0 || h < 0 || s <= 0 || c + s > 1L << 32 || h + s > 1L << 32) {
          throw new NumberFormatException();
        }
        out.add(new Range(c, h, s));
      } catch (NumberFormatException e) {
        throw new IllegalArgumentException(option + "=" + spec + ": bad range '" + parts[i] + ":"
            + parts[i + 1] + ":" + parts[i + 2] + "'");
      }
    }
    return new IdMap(List.copyOf(out));
  }

  /**
   * This process's own user namespace as a mapping of fuse-overlayfs's form ({@code "uid"} or
   * {@code "gid"}): the ids of the namespace's parent are shown, the namespace's own are on
   * disk. For a daemon in a user namespace that serves a mount made in the host's (a user's
   * mount through fusermount3), where the kernel speaks the host's ids. Null in the host's own
   * namespace (every id maps to itself).
   */
  public static String ofOwnNamespace(String kind) throws java.io.IOException {
    StringBuilder spec = new StringBuilder();
    for (String line : java.nio.file.Files.readAllLines(
        java.nio.file.Path.of("/proc/self/" + kind + "_map"))) {
      String[] f = line.trim().split("\\s+");
      if (f.length != 3) {
        continue;
      }
      if (f[0].equals("0") && f[1].equals("0") && f[2].equals("4294967295")) {
        return null;
      }
      spec.append(spec.length() == 0 ? "" : ":").append(f[1]).append(':').append(f[0])
          .append(':').append(f[2]);
    }
    return spec.length() == 0 ? null : spec.toString();
  }

  boolean isIdentity() {
    return ranges.isEmpty();
  }

  /** The id the view shows for a host id. */
  public int toContainer(int host) {
    if (ranges.isEmpty()) {
      return host;
    }
    long h = host & 0xffffffffL;
    for (Range r : ranges) {
      if (h >= r.host() && h < r.host() + r.size()) {
        return (int) (r.container() + h - r.host());
      }
    }
    return OVERFLOW;
  }

  /** The host id to write for a container id; unmapped ids are refused with EINVAL. */
  public int toHost(int container) throws FsException {
    if (ranges.isEmpty()) {
      return container;
    }
    long c = container & 0xffffffffL;
    for (Range r : ranges) {
      if (c >= r.container() && c < r.container() + r.size()) {
        return (int) (r.host() + c - r.container());
      }
    }
    throw new FsException(io.strata.layers.fs.Posix.EINVAL, "id " + container + " is not mapped");
  }
}
