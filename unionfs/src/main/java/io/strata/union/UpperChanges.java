package io.strata.union;

import io.strata.layers.Posix;
import io.strata.layers.RawFs;
import io.strata.layers.TarWriter;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What an upper directory changed over its lower layers: as a list (A added, C changed, D
 * deleted, as {@code podman diff}) and as an OCI layer tar. Whiteouts of either form become
 * {@code .wh.NAME} entries, opaque directories a {@code .wh..wh..opq} entry; a metadata-only
 * copy-up is written with its data from the lower layer; hard links stay hard links; owners,
 * modes, sub-second mtimes and xattrs are kept, strata's and the overlay's private xattrs left
 * out. Entries are sorted by their bytes and carry no atime or ctime, so the same upper gives
 * the same tar, and so the same DiffID.
 *
 * <p>The upper is read as it is: for a consistent layer, nothing should write to the mount
 * while this runs (stop the container first).
 */
public final class UpperChanges implements AutoCloseable {
  /** One change; {@code path} is raw and absolute ("/etc/passwd"). */
  public record Change(char kind, String path) {
    @Override
    public String toString() {
      return kind + " " + RawFs.display(path);
    }
  }

  private static final String[] METACOPY = {"trusted.overlay.metacopy", "user.overlay.metacopy"};

  private final int upperFd;
  private final List<Integer> lowerFds = new ArrayList<>();

  /** @param lowers the lower layers, top first */
  public UpperChanges(Path upper, List<Path> lowers) throws IOException {
    upperFd = RawFs.open(RawFs.AT_FDCWD, RawFs.raw(upper), RawFs.O_PATH | RawFs.O_DIRECTORY, 0);
    try {
      for (Path l : lowers) {
        lowerFds.add(RawFs.open(RawFs.AT_FDCWD, RawFs.raw(l), RawFs.O_PATH | RawFs.O_DIRECTORY, 0));
      }
    } catch (IOException e) {
      close();
      throw e;
    }
  }

  /** The changes, sorted by path. */
  public List<Change> list() throws IOException {
    List<Change> out = new ArrayList<>();
    walk("", false, new Visitor() {
      @Override
      public void whiteout(String rel) throws IOException {
        if (inLowers(rel)) {
          out.add(new Change('D', "/" + rel));
        }
      }

      @Override
      public void opaque(String rel) {
        // the directory itself is reported; what it hides shows as its absence
      }

      @Override
      public void node(String rel, Attr a, boolean dataFromLower) throws IOException {
        out.add(new Change(inLowers(rel) ? 'C' : 'A', "/" + rel));
      }
    });
    return out;
  }

  /** Writes the changes as a layer tar (with the end-of-archive blocks) to {@code out}. */
  public void writeTar(OutputStream out) throws IOException {
    TarWriter tar = new TarWriter(out);
    Map<Long, String> links = new HashMap<>();
    walk("", false, new Visitor() {
      @Override
      public void whiteout(String rel) throws IOException {
        if (!inLowers(rel)) {
          return; // hides nothing
        }
        int slash = rel.lastIndexOf('/');
        String name = slash < 0 ? ".wh." + rel
            : rel.substring(0, slash + 1) + ".wh." + rel.substring(slash + 1);
        tar.entry(new TarWriter.Header(name, TarWriter.FILE, 0, 0, 0, 0, 0, null, 0, 0, null),
            null);
      }

      @Override
      public void opaque(String rel) throws IOException {
        tar.entry(new TarWriter.Header(rel + "/.wh..wh..opq", TarWriter.FILE, 0, 0, 0, 0, 0, null,
            0, 0, null), null);
      }

      @Override
      public void node(String rel, Attr a, boolean dataFromLower) throws IOException {
        Map<String, byte[]> xattrs = xattrs(rel);
        int type = a.type();
        int mode = a.mode() & 07777;
        if (type == Posix.S_IFREG && a.nlink() > 1 && !dataFromLower) {
          String first = links.putIfAbsent(a.ino(), rel);
          if (first != null) {
            tar.entry(new TarWriter.Header(rel, TarWriter.HARDLINK, mode, a.uid(), a.gid(), 0,
                a.mtimeNanos(), first, 0, 0, xattrs), null);
            return;
          }
        }
        switch (type) {
          case Posix.S_IFDIR -> tar.entry(new TarWriter.Header(rel, TarWriter.DIR, mode, a.uid(),
              a.gid(), 0, a.mtimeNanos(), null, 0, 0, xattrs), null);
          case Posix.S_IFLNK -> tar.entry(new TarWriter.Header(rel, TarWriter.SYMLINK, mode,
              a.uid(), a.gid(), 0, a.mtimeNanos(), RawFs.readlink(upperFd, rel), 0, 0, xattrs),
              null);
          case Posix.S_IFCHR, Posix.S_IFBLK -> tar.entry(new TarWriter.Header(rel,
              type == Posix.S_IFCHR ? TarWriter.CHAR : TarWriter.BLOCKDEV, mode, a.uid(), a.gid(),
              0, a.mtimeNanos(), null, Posix.major(a.rdev()), Posix.minor(a.rdev()), xattrs), null);
          case Posix.S_IFIFO -> tar.entry(new TarWriter.Header(rel, TarWriter.FIFO, mode, a.uid(),
              a.gid(), 0, a.mtimeNanos(), null, 0, 0, xattrs), null);
          case Posix.S_IFREG -> {
            int dir = dataFromLower ? lowerHolding(rel) : upperFd;
            try (InputStream in = open(dir, rel)) {
              tar.entry(new TarWriter.Header(rel, TarWriter.FILE, mode, a.uid(), a.gid(), a.size(),
                  a.mtimeNanos(), null, 0, 0, xattrs), in);
            }
          }
          default -> {
            // sockets are not kept in layers, as in docker and podman
          }
        }
      }
    });
    tar.finish();
  }

  private interface Visitor {
    void whiteout(String rel) throws IOException;

    void opaque(String rel) throws IOException;

    void node(String rel, Attr a, boolean dataFromLower) throws IOException;
  }

  /** Visits the upper below {@code dir} in byte order of names, parents before children. */
  private void walk(String dir, boolean parentOpaque, Visitor v) throws IOException {
    List<RawFs.DirEntry> entries = new ArrayList<>(RawFs.list(upperFd, dir));
    entries.sort(Comparator.comparing(RawFs.DirEntry::name));
    Map<String, Boolean> whiteouts = new LinkedHashMap<>();
    for (RawFs.DirEntry e : entries) {
      if (e.name().startsWith(Markers.WH_PREFIX)) {
        if (!e.name().equals(Markers.OPAQUE_FILE)) {
          whiteouts.put(e.name().substring(Markers.WH_PREFIX.length()), true);
        }
      }
    }
    for (RawFs.DirEntry e : entries) {
      String name = e.name();
      if (name.startsWith(Markers.WH_PREFIX)) {
        continue; // handled as whiteouts and opaque markers
      }
      String rel = dir.isEmpty() ? name : dir + "/" + name;
      Attr a = Stat.lstat(new Loc(upperFd, rel));
      if (a == null) {
        continue; // removed while we walk
      }
      if (Markers.isWhiteoutDevice(a)) {
        whiteouts.put(name, true);
        continue;
      }
      boolean fromLower = a.type() == Posix.S_IFREG && isMetacopy(rel);
      v.node(rel, a, fromLower);
      if (a.isDirectory()) {
        boolean opaque = Markers.isOpaque(new Loc(upperFd, rel));
        if (opaque && inLowers(rel)) {
          v.opaque(rel);
        }
        walk(rel, parentOpaque || opaque, v);
      }
    }
    // whiteouts come after the directory's entries in sorted order of their .wh. names
    List<String> names = new ArrayList<>(whiteouts.keySet());
    names.sort(Comparator.naturalOrder());
    for (String n : names) {
      v.whiteout(dir.isEmpty() ? n : dir + "/" + n);
    }
  }

  private boolean isMetacopy(String rel) throws IOException {
    for (String x : METACOPY) {
      if (RawFs.lgetxattr(upperFd, rel, x) != null) {
        return true;
      }
    }
    return false;
  }

  /** Whether some lower layer shows {@code rel} (no whiteout or opaque directory above it). */
  private boolean inLowers(String rel) throws IOException {
    return lowerHoldingOrNeg(rel) >= 0;
  }

  private int lowerHolding(String rel) throws IOException {
    int fd = lowerHoldingOrNeg(rel);
    if (fd < 0) {
      throw new IOException("/" + RawFs.display(rel) + " is a metadata-only copy-up but no lower"
          + " layer has its data");
    }
    return fd;
  }

  /**
   * The descriptor of the topmost lower layer that shows {@code rel}, or -1: a whiteout, a
   * non-directory parent or an opaque parent in a higher layer hides what lies beneath.
   */
  private int lowerHoldingOrNeg(String rel) throws IOException {
    String[] parts = rel.split("/");
    layers:
    for (int fd : lowerFds) {
      Loc here = new Loc(fd, "");
      boolean opaqueAbove = false;
      for (int i = 0; i < parts.length; i++) {
        Loc next = here.child(parts[i]);
        Attr a = Stat.lstat(next);
        if (Markers.isWhiteoutDevice(a) || Markers.hasWhiteoutFile(here, parts[i])) {
          return -1;
        }
        if (a == null) {
          if (opaqueAbove) {
            return -1;
          }
          continue layers;
        }
        if (i == parts.length - 1) {
          return fd;
        }
        if (!a.isDirectory()) {
          return -1;
        }
        opaqueAbove |= Markers.isOpaque(next);
        here = next;
      }
    }
    return -1;
  }

  private static InputStream open(int dirfd, String rel) throws IOException {
    int fd = RawFs.open(dirfd, rel, RawFs.O_RDONLY, 0);
    try {
      return new java.io.BufferedInputStream(Files.newInputStream(Path.of("/proc/self/fd/" + fd)),
          1 << 16);
    } finally {
      RawFs.close(fd);
    }
  }

  private Map<String, byte[]> xattrs(String rel) throws IOException {
    Map<String, byte[]> out = new LinkedHashMap<>();
    for (String x : RawFs.llistxattr(upperFd, rel)) {
      if (!Markers.isPrivateXattr(x)) {
        byte[] v = RawFs.lgetxattr(upperFd, rel, x);
        if (v != null) {
          out.put(x, v);
        }
      }
    }
    return out;
  }

  @Override
  public void close() {
    RawFs.close(upperFd);
    lowerFds.forEach(RawFs::close);
  }
}
