package io.strata.layers.fs;

import java.io.IOException;
import java.nio.file.Path;

/**
 * Recursive removal that never follows a link, copes with read-only directories, and reaches
 * every name whatever its bytes or depth (through {@link RawFs}, relative to each directory).
 */
public final class Trees {
  private static final int DT_DIR = 4;

  private Trees() {}

  /** Removes a tree if it exists; directories are made writable first so root-less runs work. */
  public static void deleteRecursively(Path root) throws IOException {
    Path parent = root.toAbsolutePath().getParent();
    if (parent == null) {
      throw new IOException("refusing to delete " + root);
    }
    int dir;
    try {
      dir = RawFs.open(RawFs.AT_FDCWD, RawFs.raw(parent), RawFs.O_PATH | RawFs.O_DIRECTORY, 0);
    } catch (Posix.PosixException e) {
      if (e.errno() == Posix.ENOENT) {
        return;
      }
      throw e;
    }
    try {
      delete(dir, RawFs.raw(root.getFileName()));
    } finally {
      RawFs.close(dir);
    }
  }

  /** The bytes of the regular files below {@code root} (0 when it does not exist). */
  public static long size(Path root) throws IOException {
    if (!java.nio.file.Files.exists(root, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
      return 0;
    }
    long[] total = {0};
    java.nio.file.Files.walkFileTree(root, new java.nio.file.SimpleFileVisitor<Path>() {
      @Override
      public java.nio.file.FileVisitResult visitFile(Path f,
          java.nio.file.attribute.BasicFileAttributes a) {
        if (a.isRegularFile()) {
          total[0] += a.size();
        }
        return java.nio.file.FileVisitResult.CONTINUE;
      }

      @Override
      public java.nio.file.FileVisitResult visitFileFailed(Path f, IOException e) {
        return java.nio.file.FileVisitResult.CONTINUE;
      }
    });
    return total[0];
  }

  /** Deletes {@code name} in the directory {@code dirfd}, and all below it. */
  private static void delete(int dirfd, String name) throws IOException {
    RawFs.Statx st = RawFs.lstat(dirfd, name);
    if (st == null) {
      return; // already gone: another cleaner got there first
    }
    if ((st.mode() & Posix.S_IFMT) != Posix.S_IFDIR) {
      unlink(dirfd, name, false);
      return;
    }
    try {
      RawFs.chmod(dirfd, name, 0700);
    } catch (IOException ignored) {
      // root needs no write bit; a user who cannot chmod cannot delete either, as reported below
    }
    int fd = RawFs.open(dirfd, name, RawFs.O_PATH | RawFs.O_DIRECTORY | RawFs.O_NOFOLLOW, 0);
    try {
      for (RawFs.DirEntry e : RawFs.list(fd, "")) {
        if (e.type() == DT_DIR) {
          delete(fd, e.name());
        } else {
          unlink(fd, e.name(), false);
        }
      }
    } finally {
      RawFs.close(fd);
    }
    unlink(dirfd, name, true);
  }

  private static void unlink(int dirfd, String name, boolean dir) throws IOException {
    try {
      if (dir) {
        RawFs.rmdir(dirfd, name);
      } else {
        RawFs.unlink(dirfd, name);
      }
    } catch (Posix.PosixException e) {
      if (e.errno() == Posix.EISDIR) {
        delete(dirfd, name); // d_type said otherwise; it is a directory now
      } else if (e.errno() != Posix.ENOENT) {
        throw e;
      }
    }
  }
}
