package io.strata.union.view;

import io.strata.layers.fs.Posix;
import io.strata.layers.fs.RawFs;
import io.strata.layers.archive.TarWriter;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * What an upper directory changed over its lower layers: as a list (A added, C changed, D
 * deleted, as {@code podman diff}) and as an OCI layer tar. Whiteouts of either form become
 * {@code .wh.NAME} entries, opaque directories a {@code .wh..wh..opq} entry; a metadata-only
 * copy-up is written with its data from the lower layer; hard links stay hard links; owners,
 * modes, sub-second mtimes and xattrs are kept, strata's and the overlay's private xattrs left
 * out. Entries are sorted by their bytes and carry no atime or ctime, so the same upper gives
 * the same tar, and so the same DiffID.
 *
 * <p>A directory renamed while a lower layer contributed to it (it carries a redirect, see
 * {@link Markers}) is written as the OCI layer of such a rename is: a whiteout where it was
 * (the upper has one), and at its new name the whole directory as it shows, its lower part
 * included, made opaque when the layers below have something at that name.
 *
 * <p>The lower layers are read through {@link LowerTree}, the same merge the view uses. The
 * upper may change while it is read (a container that runs on): see {@link #walk}.
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
  private static final int O_NONBLOCK = 04000;

  private final int upperFd;
  private final List<Integer> lowerFds = new ArrayList<>();
  private final LowerTree lowerTree;

  /** @param lowers the lower layers, top first */
  public UpperChanges(Path upper, List<Path> lowers) throws IOException {
    upperFd = RawFs.open(RawFs.AT_FDCWD, RawFs.raw(upper), RawFs.O_PATH | RawFs.O_DIRECTORY, 0);
    List<Loc> roots = new ArrayList<>();
    try {
      for (Path l : lowers) {
        int fd = RawFs.open(RawFs.AT_FDCWD, RawFs.raw(l), RawFs.O_PATH | RawFs.O_DIRECTORY, 0);
        lowerFds.add(fd);
        roots.add(new Loc(fd, ""));
      }
    } catch (IOException e) {
      close();
      throw e;
    }
    lowerTree = new LowerTree(roots, 100_000);
  }

  /**
   * One entry to write. {@code at} names it for its xattrs (a held directory and a name, or a
   * lower file); a regular file's data is read from {@code content} (a descriptor opened
   * without following a symlink) or from the lower file {@code dataAt}; {@code link} is a
   * symlink's target; {@code lowerLink} identifies a lower file with several names.
   */
  private record Item(String rel, Loc at, Attr a, int content, Loc dataAt, String link,
      String lowerLink) {}

  private interface Visitor {
    /** {@code rel} was removed (a whiteout that hides something below). */
    void whiteout(String rel) throws IOException;

    /** The directory {@code rel} hides what the layers below hold there. */
    void opaque(String rel) throws IOException;

    void node(Item item) throws IOException;
  }

  /** The changes, sorted by path. */
  public List<Change> list() throws IOException {
    List<Change> out = new ArrayList<>();
    walk(new Visitor() {
      @Override
      public void whiteout(String rel) {
        out.add(new Change('D', "/" + rel));
      }

      @Override
      public void opaque(String rel) {
        // the directory itself is reported; what it hides shows as its absence
      }

      @Override
      public void node(Item item) {
        out.add(new Change(inLowers(item.rel()) ? 'C' : 'A', "/" + item.rel()));
      }
    });
    return out;
  }

  /** Writes the changes as a layer tar (with the end-of-archive blocks) to {@code out}. */
  public void writeTar(OutputStream out) throws IOException {
    TarWriter tar = new TarWriter(out);
    Map<Long, String> links = new HashMap<>();
    Map<String, String> lowerLinks = new HashMap<>();
    walk(new Visitor() {
      @Override
      public void whiteout(String rel) throws IOException {
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
      public void node(Item it) throws IOException {
        String rel = it.rel();
        Attr a = it.a();
        Map<String, byte[]> xattrs = xattrs(it.at());
        int type = a.type();
        int mode = a.mode() & 07777;
        if (type == Posix.S_IFREG && a.nlink() > 1) {
          String first = it.lowerLink() != null ? lowerLinks.putIfAbsent(it.lowerLink(), rel)
              : it.content() >= 0 ? links.putIfAbsent(a.ino(), rel) : null;
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
              a.uid(), a.gid(), 0, a.mtimeNanos(), it.link(), 0, 0, xattrs), null);
          case Posix.S_IFCHR, Posix.S_IFBLK -> tar.entry(new TarWriter.Header(rel,
              type == Posix.S_IFCHR ? TarWriter.CHAR : TarWriter.BLOCKDEV, mode, a.uid(), a.gid(),
              0, a.mtimeNanos(), null, Posix.major(a.rdev()), Posix.minor(a.rdev()), xattrs), null);
          case Posix.S_IFIFO -> tar.entry(new TarWriter.Header(rel, TarWriter.FIFO, mode, a.uid(),
              a.gid(), 0, a.mtimeNanos(), null, 0, 0, xattrs), null);
          case Posix.S_IFREG -> {
            try (InputStream in = it.content() >= 0 ? stream(it.content())
                : openLower(it.dataAt())) {
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
      walk(root, "", lowerFds.isEmpty() ? null : "", false, v);
    } catch (UncheckedIOException e) {
      throw e.getCause();
    } finally {
      RawFs.close(root);
    }
  }

  /**
   * One upper directory, held open as {@code dirFd}, at {@code dir}. {@code lowerDir} is the
   * merged lower directory that shows through it (null for none): the same path, or where a
   * renamed directory came from. {@code whole}: the directory is written whole (it is, or is
   * in, a renamed directory), its lower part included and no whiteout needed.
   */
  private void walk(int dirFd, String dir, String lowerDir, boolean whole, Visitor v)
      throws IOException {
    List<RawFs.DirEntry> entries = new ArrayList<>(RawFs.list(dirFd, ""));
    entries.sort(Comparator.comparing(RawFs.DirEntry::name));
    Set<String> hidden = new HashSet<>();
    for (RawFs.DirEntry e : entries) {
      if (e.name().startsWith(Markers.WH_PREFIX) && !e.name().equals(Markers.OPAQUE_FILE)) {
        hidden.add(e.name().substring(Markers.WH_PREFIX.length()));
      }
    }
    Map<String, Boolean> seen = new LinkedHashMap<>();
    for (RawFs.DirEntry e : entries) {
      String name = e.name();
      if (name.startsWith(Markers.WH_PREFIX)) {
        continue; // handled as whiteouts and opaque markers
      }
      String rel = join(dir, name);
      Loc at = new Loc(dirFd, name);
      Attr a = Stat.lstat(at);
      if (a == null) {
        continue; // removed while we walk
      }
      if (Markers.isWhiteoutDevice(a)) {
        hidden.add(name);
        continue;
      }
      seen.put(name, true);
      LowerTree.Entry below = lowerDir == null ? null : lowerEntry(join(lowerDir, name));
      if (a.isDirectory()) {
        int child = openNoFollow(at, RawFs.O_RDONLY | RawFs.O_DIRECTORY);
        if (child < 0) {
          continue; // swapped for something else since the lstat: gone from this walk
        }
        try {
          Attr real = fstat(child);
          v.node(new Item(rel, at, real, -1, null, null, null));
          Markers.DirMarks marks = Markers.dirMarks(new Loc(child, ""));
          String childLower;
          boolean childWhole = whole;
          if (marks.redirect() != null) {
            childLower = redirected(lowerDir, marks.redirect());
            childWhole = true;
          } else {
            childLower = marks.opaque() || below == null || !below.isDir()
                ? null : join(lowerDir, name);
          }
          if ((marks.opaque() || marks.redirect() != null) && !whole && inLowers(rel)) {
            v.opaque(rel);
          }
          walk(child, rel, childLower, childWhole, v);
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
            v.node(new Item(rel, at, real, fd, null, null, null));
          }
        } finally {
          RawFs.close(fd);
        }
      } else if (a.type() == Posix.S_IFLNK) {
        String link = readlinkOrNull(at);
        if (link != null) {
          v.node(new Item(rel, at, a, -1, null, link, null));
        }
      } else if (a.type() == Posix.S_IFREG) { // metadata only: the data is below
        if (below == null || below.isDir()) {
          throw new IOException("/" + RawFs.display(rel) + " is a metadata-only copy-up but no"
              + " lower layer has its data");
        }
        v.node(new Item(rel, at, a, -1, below.path(), null, null));
      } else {
        v.node(new Item(rel, at, a, -1, null, null, null));
      }
    }
    if (whole) {
      // what shows of the lower part and is neither replaced nor hidden in the upper
      LowerTree.Dir d = lowerDir == null ? null : lowerTree.dir(lowerDir);
      if (d != null) {
        List<String> names = new ArrayList<>(d.entries().keySet());
        names.sort(Comparator.naturalOrder());
        for (String name : names) {
          if (!seen.containsKey(name) && !hidden.contains(name)) {
            lowerOnly(join(dir, name), d.entries().get(name), join(lowerDir, name), v);
          }
        }
      }
      return; // nothing below to hide
    }
    // whiteouts come after the directory's entries in sorted order of their .wh. names
    List<String> names = new ArrayList<>(hidden);
    names.sort(Comparator.naturalOrder());
    for (String n : names) {
      String rel = join(dir, n);
      if (inLowers(rel)) {
        v.whiteout(rel);
      }
    }
  }

  /** A lower entry that shows in a directory written whole, with all below it. */
  private void lowerOnly(String rel, LowerTree.Entry e, String lowerPath, Visitor v)
      throws IOException {
    Attr a = e.attr();
    switch (a.type()) {
      case Posix.S_IFDIR -> {
        v.node(new Item(rel, e.path(), a, -1, null, null, null));
        LowerTree.Dir d = lowerTree.dir(lowerPath);
        if (d != null) {
          List<String> names = new ArrayList<>(d.entries().keySet());
          names.sort(Comparator.naturalOrder());
          for (String name : names) {
            lowerOnly(join(rel, name), d.entries().get(name), join(lowerPath, name), v);
          }
        }
      }
      case Posix.S_IFLNK -> v.node(new Item(rel, e.path(), a, -1, null,
          RawFs.readlink(e.path().dirfd(), e.path().rel()), null));
      case Posix.S_IFREG -> v.node(new Item(rel, e.path(), a, -1, e.path(), null,
          e.layer() + ":" + a.ino()));
      default -> v.node(new Item(rel, e.path(), a, -1, null, null, null));
    }
  }

  private static String join(String dir, String name) {
    return dir.isEmpty() ? name : dir + "/" + name;
  }

  /** The lower directory a redirect names, or null (see {@link Lookup}'s own). */
  private String redirected(String parentLower, String redirect) {
    String target = redirect.startsWith("/") ? redirect.substring(1)
        : parentLower == null ? null : join(parentLower, redirect);
    if (target == null || target.isEmpty()) {
      return null;
    }
    LowerTree.Entry e = lowerEntry(target);
    return e != null && e.isDir() ? target : null;
  }

  /** The merged lower entry at {@code rel}, or null when no lower layer shows one there. */
  private LowerTree.Entry lowerEntry(String rel) {
    int slash = rel.lastIndexOf('/');
    LowerTree.Dir d = lowerTree.dir(slash < 0 ? "" : rel.substring(0, slash));
    return d == null ? null : d.entries().get(rel.substring(slash + 1));
  }

  /** Whether the layers below show something at {@code rel}. */
  private boolean inLowers(String rel) {
    return !lowerFds.isEmpty() && lowerEntry(rel) != null;
  }

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

  /** A lower layer's file: lower layers never change, and every parent is a real directory. */
  private static InputStream openLower(Loc at) throws IOException {
    int fd = RawFs.open(at.dirfd(), at.rel(), RawFs.O_RDONLY | RawFs.O_NOFOLLOW, 0);
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
