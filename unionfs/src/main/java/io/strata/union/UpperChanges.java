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
    walk(new Visitor() {
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
      public void node(String rel, Loc at, Attr a, boolean dataFromLower, int content,
          String link) throws IOException {
        out.add(new Change(inLowers(rel) ? 'C' : 'A', "/" + rel));
      }
    });
    return out;
  }

  /** Writes the changes as a layer tar (with the end-of-archive blocks) to {@code out}. */
  public void writeTar(OutputStream out) throws IOException {
    TarWriter tar = new TarWriter(out);
    Map<Long, String> links = new HashMap<>();
    walk(new Visitor() {
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
      public void node(String rel, Loc at, Attr a, boolean dataFromLower, int content,
          String link) throws IOException {
        Map<String, byte[]> xattrs = xattrs(at);
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
              a.uid(), a.gid(), 0, a.mtimeNanos(), link, 0, 0, xattrs),
              null);
          case Posix.S_IFCHR, Posix.S_IFBLK -> tar.entry(new TarWriter.Header(rel,
              type == Posix.S_IFCHR ? TarWriter.CHAR : TarWriter.BLOCKDEV, mode, a.uid(), a.gid(),
              0, a.mtimeNanos(), null, Posix.major(a.rdev()), Posix.minor(a.rdev()), xattrs), null);
          case Posix.S_IFIFO -> tar.entry(new TarWriter.Header(rel, TarWriter.FIFO, mode, a.uid(),
              a.gid(), 0, a.mtimeNanos(), null, 0, 0, xattrs), null);
          case Posix.S_IFREG -> {
            try (InputStream in = dataFromLower ? open(lowerHolding(rel), rel)
                : stream(content)) {
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

    /**
     * One node of the upper: {@code at} is its directory (held open) and name, {@code a} its
     * attributes, {@code content} for a regular file whose data is in the upper: a descriptor
     * opened without following a symlink and checked to be the file {@code a} describes;
     * {@code link} a symlink's target.
     */
    void node(String rel, Loc at, Attr a, boolean dataFromLower, int content, String link)
        throws IOException;
  }

  /**
   * Visits the upper in byte order of names, parents before children. The upper may be
   * changing under a running container, which may swap any directory for a symlink at any
   * moment (renameat2 RENAME_EXCHANGE): so the walk holds each directory open and reaches
   * every entry by one name relative to it, opens nothing that follows a symlink, and reads
   * attributes from the descriptor it then reads from. What a swap can do is make an entry
   * vanish or appear as the symlink it became; it can never lead the walk out of the upper.
   */
  private void walk(Visitor v) throws IOException {
    int root = RawFs.open(upperFd, "", RawFs.O_RDONLY | RawFs.O_DIRECTORY, 0);
    try {
      walk(root, "", v);
    } finally {
      RawFs.close(root);
    }
  }

  private void walk(int dirFd, String dir, Visitor v) throws IOException {
    List<RawFs.DirEntry> entries = new ArrayList<>(RawFs.list(dirFd, ""));
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
      Loc at = new Loc(dirFd, name);
      Attr a = Stat.lstat(at);
      if (a == null) {
        continue; // removed while we walk
      }
      if (Markers.isWhiteoutDevice(a)) {
        whiteouts.put(name, true);
        continue;
      }
      if (a.isDirectory()) {
        int child = openNoFollow(at, RawFs.O_RDONLY | RawFs.O_DIRECTORY);
        if (child < 0) {
          continue; // swapped for something else since the lstat: gone from this walk
        }
        try {
          Attr real = fstat(child);
          v.node(rel, at, real, false, -1, null);
          Loc self = new Loc(child, "");
          if (Markers.isOpaque(self) && inLowers(rel)) {
            v.opaque(rel);
          }
          walk(child, rel, v);
        } finally {
          RawFs.close(child);
        }
      } else if (a.type() == Posix.S_IFREG && !isMetacopy(at)) {
        int fd = openNoFollow(at, RawFs.O_RDONLY | O_NONBLOCK);
        if (fd < 0) {
          continue;
        }
        try {
          Attr real = fstat(fd);
          if (real.type() == Posix.S_IFREG) {
            v.node(rel, at, real, false, fd, null);
          }
        } finally {
          RawFs.close(fd);
        }
      } else if (a.type() == Posix.S_IFLNK) {
        String link = readlinkOrNull(at);
        if (link != null) {
          v.node(rel, at, a, false, -1, link);
        }
      } else {
        v.node(rel, at, a, a.type() == Posix.S_IFREG, -1, null);
      }
    }
    // whiteouts come after the directory's entries in sorted order of their .wh. names
    List<String> names = new ArrayList<>(whiteouts.keySet());
    names.sort(Comparator.naturalOrder());
    for (String n : names) {
      v.whiteout(dir.isEmpty() ? n : dir + "/" + n);
    }
  }

  private static final int O_NONBLOCK = 04000;
  private static final int ELOOP = 40;

  /**
   * Opens one name in a held directory without following a symlink; -1 when it is gone or has
   * become a symlink or (for O_DIRECTORY) a non-directory since it was looked at.
   */
  private static int openNoFollow(Loc at, int flags) throws IOException {
    try {
      return RawFs.open(at.dirfd(), at.rel(), flags | RawFs.O_NOFOLLOW, 0);
    } catch (Posix.PosixException e) {
      if (e.errno() == ELOOP || e.errno() == Posix.ENOENT || e.errno() == Posix.ENOTDIR) {
        return -1;
      }
      throw e;
    }
  }

  /** A symlink's target; null when it is gone or no longer a symlink. */
  private static String readlinkOrNull(Loc at) throws IOException {
    try {
      return RawFs.readlink(at.dirfd(), at.rel());
    } catch (Posix.PosixException e) {
      if (e.errno() == Posix.EINVAL || e.errno() == Posix.ENOENT) {
        return null;
      }
      throw e;
    }
  }

  private static Attr fstat(int fd) throws IOException {
    Attr a = Stat.lstat(new Loc(fd, ""));
    if (a == null) {
      throw new IOException("fstat of an open descriptor failed");
    }
    return a;
  }

  private static boolean isMetacopy(Loc at) throws IOException {
    for (String x : METACOPY) {
      if (RawFs.lgetxattr(at.dirfd(), at.rel(), x) != null) {
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

  /** A lower layer's file (lower layers never change; every parent was seen to be a directory). */
  private static InputStream open(int dirfd, String rel) throws IOException {
    int fd = RawFs.open(dirfd, rel, RawFs.O_RDONLY | RawFs.O_NOFOLLOW, 0);
    try {
      return stream(fd);
    } finally {
      RawFs.close(fd);
    }
  }

  /** A stream of its own on the file behind {@code fd} (reopened through /proc, read-only). */
  private static InputStream stream(int fd) throws IOException {
    return new java.io.BufferedInputStream(Files.newInputStream(Path.of("/proc/self/fd/" + fd)),
        1 << 16);
  }

  /** The xattrs of the name {@code at} itself (never of what a symlink there points to). */
  private static Map<String, byte[]> xattrs(Loc at) throws IOException {
    Map<String, byte[]> out = new LinkedHashMap<>();
    List<String> names;
    try {
      names = RawFs.llistxattr(at.dirfd(), at.rel());
    } catch (Posix.PosixException e) {
      if (e.errno() == Posix.ENOENT) {
        return out; // renamed away while we walk (a container that runs on)
      }
      throw e;
    }
    for (String x : names) {
      if (!Markers.isPrivateXattr(x)) {
        byte[] v = RawFs.lgetxattr(at.dirfd(), at.rel(), x);
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
