package io.strata.union.view;

import io.strata.layers.fs.Posix;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import jnr.ffi.Pointer;

/**
 * The view's open files: a descriptor on each one's real file (upper, or lower while it is only
 * read), by handle. Reads and writes take no lock: they go straight between the caller's
 * buffer and the descriptor with pread/pwrite.
 *
 * <p>A file opened for reading while it was only below, and still open when it is copied up,
 * reads the upper from then on ({@link #retarget}), as a descriptor of kernel overlayfs does
 * (stacked file operations, since Linux 4.19): otherwise its reads would return the old bytes
 * and, through the kernel's page cache, show them to every later open.
 */
final class OpenFiles {
  /**
   * An open file: a descriptor on the real file and, once its name is gone, the attributes it
   * had (taken at unlink time, so opening costs no stat).
   */
  static final class OpenFile {
    /** Stays the same number for life; {@link #retarget} changes the file behind it. */
    final int fd;
    /**
     * Its name now (relative), kept through renames ({@link #renamed}, {@link #exchanged});
     * the last it had once its names are gone; "" for an O_TMPFILE file until it is linked.
     */
    volatile String path;
    final boolean writable;
    /** Whether the descriptor reaches the upper file (else a lower one, only read). */
    volatile boolean onUpper;
    /**
     * Once the name it had is gone (unlinked, or replaced by a rename; the file may have other
     * names): its attributes then, for the number the view gave it. It answers by handle.
     */
    volatile Attr unlinked;

    OpenFile(int fd, String path, boolean writable, boolean onUpper) {
      this.fd = fd;
      this.path = path;
      this.writable = writable;
      this.onUpper = onUpper;
    }
  }

  private final ConcurrentHashMap<Long, OpenFile> open = new ConcurrentHashMap<>();
  private final AtomicLong handles = new AtomicLong(1);

  /**
   * Hands out handles from {@code base} on: a server that takes over a mount from one that
   * died must not give a handle the kernel still holds from the old one (its RELEASE would
   * close the new file).
   */
  void startAt(long base) {
    handles.set(base);
  }

  /** Every open file by handle (for a hand-over to another server). */
  java.util.Map<Long, OpenFile> all() {
    return new java.util.TreeMap<>(open);
  }

  /** Takes an open file another server handed over, under the handle it had there. */
  void adopt(long fh, OpenFile f) {
    open.put(fh, f);
  }

  /** How many files are open through the view now. */
  int count() {
    return open.size();
  }

  long register(int fd, String rel, boolean writable, boolean onUpper) {
    long fh = handles.getAndIncrement();
    open.put(fh, new OpenFile(fd, rel, writable, onUpper));
    return fh;
  }

  /** The open file of a handle; EBADF when there is none. */
  OpenFile get(long fh) throws FsException {
    OpenFile f = open.get(fh);
    if (f == null) {
      throw new FsException(Posix.EBADF, "no open file " + fh);
    }
    return f;
  }

  /** The open file of a handle, or null. */
  OpenFile peek(long fh) {
    return open.get(fh);
  }

  /** The open files that have the name {@code rel} now (not those whose names are gone). */
  List<OpenFile> named(String rel) {
    List<OpenFile> out = new ArrayList<>();
    for (OpenFile f : open.values()) {
      if (f.unlinked == null && f.path.equals(rel)) {
        out.add(f);
      }
    }
    return out;
  }

  /**
   * A rename moved {@code from} to {@code to}: files open by that name or by one below it have
   * the new name. Called under the view's namespace write lock, as every open is registered
   * under its read lock: no open of the old name can slip in between.
   */
  void renamed(String from, String to) {
    for (OpenFile f : open.values()) {
      String moved = moved(f, from, to);
      if (moved != null) {
        f.path = moved;
      }
    }
  }

  /** RENAME_EXCHANGE swapped {@code a} and {@code b}, and what is below them. */
  void exchanged(String a, String b) {
    List<OpenFile> files = new ArrayList<>();
    List<String> names = new ArrayList<>();
    for (OpenFile f : open.values()) {
      String moved = moved(f, a, b);
      if (moved == null) {
        moved = moved(f, b, a);
      }
      if (moved != null) {
        files.add(f);
        names.add(moved);
      }
    }
    for (int i = 0; i < files.size(); i++) {
      files.get(i).path = names.get(i);
    }
  }

  /** The name of {@code f} after {@code from} became {@code to}, or null if it is not below. */
  private static String moved(OpenFile f, String from, String to) {
    String p = f.path;
    if (f.unlinked != null || p.isEmpty()) {
      return null;
    }
    if (p.equals(from)) {
      return to;
    }
    return p.startsWith(from) && p.charAt(from.length()) == '/'
        ? to + p.substring(from.length()) : null;
  }

  /**
   * After the data of {@code rel} was copied up to {@code upper}: every handle that reads it
   * from below reads the upper from now on. The new file is put behind the handle's own
   * descriptor number with dup3(2), atomically: a read running meanwhile reads one file or the
   * other (identical bytes at this moment), and no number is freed for another open to reuse.
   */
  void retarget(String rel, Loc upper) throws FsException {
    int fresh = -1;
    try {
      for (OpenFile f : named(rel)) {
        if (f.writable) {
          continue; // opened after the copy-up: already the upper
        }
        if (fresh < 0) {
          fresh = Io.open(upper, Io.O_RDONLY, 0);
        }
        Io.check(Io.LIBC.dup3(fresh, f.fd, Io.O_CLOEXEC), "dup3 for /" + rel);
        f.onUpper = true;
      }
    } finally {
      if (fresh >= 0) {
        Io.close(fresh);
      }
    }
  }

  int read(long fh, Pointer buf, long size, long offset) throws FsException {
    OpenFile f = get(fh);
    long total = 0;
    while (total < size) {
      long n = Io.LIBC.pread(f.fd, buf.slice(total), size - total, offset + total);
      if (n < 0) {
        throw FsException.of(Io.errno(), "read /" + f.path);
      }
      if (n == 0) {
        break;
      }
      total += n;
    }
    return (int) total;
  }

  int write(long fh, Pointer buf, long size, long offset) throws FsException {
    OpenFile f = writable(fh, "write");
    long total = 0;
    while (total < size) {
      long n = Io.LIBC.pwrite(f.fd, buf.slice(total), size - total, offset + total);
      if (n < 0) {
        throw FsException.of(Io.errno(), "write /" + f.path);
      }
      total += n;
    }
    return (int) total;
  }

  private OpenFile writable(long fh, String what) throws FsException {
    OpenFile f = get(fh);
    if (!f.writable) {
      throw FsException.of(Posix.EBADF, what + " /" + f.path);
    }
    return f;
  }

  /** fsync or fdatasync, unless the mount was asked not to (fsync=0). */
  void fsync(long fh, boolean dataOnly, boolean enabled) throws FsException {
    OpenFile f = get(fh);
    if (enabled) {
      Io.check(dataOnly ? Io.LIBC.fdatasync(f.fd) : Io.LIBC.fsync(f.fd), "fsync /" + f.path);
    }
  }

  void release(long fh) {
    OpenFile f = open.remove(fh);
    if (f != null) {
      Io.close(f.fd);
    }
  }

  void ftruncate(long fh, long size) throws FsException {
    OpenFile f = writable(fh, "truncate");
    Io.check(Io.LIBC.ftruncate(f.fd, size), "ftruncate /" + f.path);
  }

  void fallocate(long fh, int mode, long offset, long length) throws FsException {
    OpenFile f = writable(fh, "fallocate");
    Io.check(Io.LIBC.fallocate(f.fd, mode, offset, length), "fallocate /" + f.path);
  }

  long lseek(long fh, long offset, int whence) throws FsException {
    OpenFile f = get(fh);
    long r = Io.LIBC.lseek(f.fd, offset, whence);
    if (r < 0) {
      throw FsException.of(Io.errno(), "lseek /" + f.path);
    }
    return r;
  }

  long copyFileRange(long fhIn, long offIn, long fhOut, long offOut, long len)
      throws FsException {
    OpenFile in = get(fhIn);
    OpenFile out = writable(fhOut, "copy_file_range to");
    var oi = new jnr.ffi.byref.LongLongByReference(offIn);
    var oo = new jnr.ffi.byref.LongLongByReference(offOut);
    long n = Io.LIBC.copy_file_range(in.fd, oi, out.fd, oo, len, 0);
    if (n < 0) {
      throw FsException.of(Io.errno(), "copy_file_range /" + in.path);
    }
    return n;
  }

  void closeAll() {
    for (Long fh : new ArrayList<>(open.keySet())) {
      release(fh);
    }
  }
}
