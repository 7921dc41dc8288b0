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
