package io.strata.union.view;

import io.strata.layers.fs.Posix;
import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;
import java.nio.file.NotLinkException;
import java.util.HashMap;
import java.util.Map;

/**
 * A failed view operation and the errno that the FUSE adapter returns for it. This is the one
 * place where Java exceptions become errnos.
 */
public final class FsException extends Exception {
  private static final Map<String, Integer> BY_STRERROR = new HashMap<>();
  private static final String[] STRERROR = new String[134];

  static {
    // The JDK reports most errnos as FileSystemException with strerror(errno) as the reason.
    for (int e = 1; e < STRERROR.length; e++) {
      STRERROR[e] = Posix.strerror(e);
      BY_STRERROR.putIfAbsent(STRERROR[e], e);
    }
  }

  private final int errno;

  public FsException(int errno, String message) {
    super(message, null, false, false); // errnos are control flow here: no stack trace
    this.errno = errno;
  }

  public int errno() {
    return errno;
  }

  static FsException of(int errno, String path) {
    // A miss is a hot path (every ENOENT lookup): no native strerror call per exception.
    String why = errno > 0 && errno < STRERROR.length ? STRERROR[errno] : Posix.strerror(errno);
    return new FsException(errno, path + ": " + why);
  }

  /** Maps an I/O failure of the underlying filesystem onto the errno it came from. */
  public static FsException from(IOException e) {
    return new FsException(errnoOf(e), e.getMessage());
  }

  public static int errnoOf(IOException e) {
    if (e instanceof Posix.PosixException) {
      return ((Posix.PosixException) e).errno();
    }
    if (e instanceof NoSuchFileException) {
      return Posix.ENOENT;
    }
    if (e instanceof FileAlreadyExistsException) {
      return Posix.EEXIST;
    }
    if (e instanceof DirectoryNotEmptyException) {
      return Posix.ENOTEMPTY;
    }
    if (e instanceof AccessDeniedException) {
      return Posix.EACCES;
    }
    if (e instanceof NotDirectoryException) {
      return Posix.ENOTDIR;
    }
    if (e instanceof NotLinkException) {
      return Posix.EINVAL;
    }
    if (e instanceof FileSystemException) {
      String reason = ((FileSystemException) e).getReason();
      Integer errno = reason == null ? null : BY_STRERROR.get(reason);
      if (errno != null) {
        return errno;
      }
    }
    String m = e.getMessage();
    if (m != null && m.contains("No space left on device")) {
      return Posix.ENOSPC;
    }
    return Posix.EIO;
  }
}
