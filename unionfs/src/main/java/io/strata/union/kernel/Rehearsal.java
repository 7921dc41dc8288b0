package io.strata.union.kernel;

import io.strata.union.view.UnionView;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.List;
import java.util.function.Consumer;
import java.util.stream.Stream;
import jnr.ffi.Pointer;

/**
 * A mount's requests played once through a view and a dispatcher, with no kernel and no
 * mount, so that a long-lived process (the daemon) has loaded, linked and initialized what a
 * mount's first requests need before the first mount comes. A fresh daemon's first mount loaded
 * some 450 classes on its way (the view's caches, lambda forms, native bindings) and took
 * 120-150 ms against 13-20 for the next ones. The requests are those a container's start sends:
 * INIT, lookups, attributes (GETATTR, STATX), an extended attribute, a listing, reads, a create
 * with writes and attribute changes in a copied-up directory, a symlink, a rename, removals and
 * forgets.
 */
public final class Rehearsal {
  private static final int ENOSYS = 38;
  private final ByteBuffer in = ByteBuffer.allocateDirect(Fuse.BUFFER).order(ByteOrder.LITTLE_ENDIAN);
  private final ByteBuffer out = ByteBuffer.allocateDirect(Fuse.BUFFER).order(ByteOrder.LITTLE_ENDIAN);
  private final Request req = new Request(in);
  private final Reply rep = new Reply(out);
  private final Pointer inMem = Pointer.wrap(Device.RUNTIME, in);
  private final Pointer outMem = Pointer.wrap(Device.RUNTIME, out);
  private final Dispatcher dispatcher;
  /** The caller of every request: the owner of the scratch directory (this process). */
  private final int uid;
  private final int gid;
  private long unique;
  /** Requests that were answered with an error where none was expected. */
  private final List<String> unexpected = new java.util.ArrayList<>();

  private Rehearsal(Dispatcher dispatcher, int uid, int gid) {
    this.dispatcher = dispatcher;
    this.uid = uid;
    this.gid = gid;
  }

  /**
   * Plays the requests in a scratch directory made under {@code parent} and removed after.
   * Returns how many requests failed that should not have (0 when all went as on a mount);
   * what goes wrong is told to {@code log}, never thrown: a rehearsal only saves time.
   */
  public static int run(Path parent, Consumer<String> log) {
    removeLeftovers(parent, log);
    Path scratch = null;
    try {
      scratch = Files.createTempDirectory(parent, PREFIX);
      Path lower = Files.createDirectories(scratch.resolve("lower/etc"));
      Files.writeString(lower.resolve("passwd"), "root:x:0:0:root:/root:/bin/sh\n");
      Files.createSymbolicLink(scratch.resolve("lower/bin"), Path.of("usr/bin"));
      Files.createDirectories(scratch.resolve("lower/usr/bin"));
      Files.writeString(scratch.resolve("lower/usr/bin/true"), "#!/bin/sh\n");
      Path upper = Files.createDirectories(scratch.resolve("upper"));
      Path work = scratch.resolve("work");
      try (UnionView view = UnionView.open(List.of(scratch.resolve("lower")), upper, work,
          UnionView.Options.defaults())) {
        NodeTable nodes = new NodeTable(view.getattr("/").ino());
        Dispatcher d = new Dispatcher(view, nodes, new Dispatcher.Timeouts(1, 1, 1), false,
            new Dispatcher.Session() {
              @Override
              public int backingOpen(int fd) {
                return -ENOSYS;
              }

              @Override
              public void backingClose(int id) {}

              @Override
              public void invalidateEntry(long parent, String name) {}
            }, line -> { });
        io.strata.layers.fs.RawFs.Statx me = io.strata.layers.fs.RawFs.lstat(
            io.strata.layers.fs.RawFs.AT_FDCWD, io.strata.layers.fs.RawFs.raw(scratch));
        Rehearsal r = new Rehearsal(d, me.uid(), me.gid());
        r.play();
        if (!r.unexpected.isEmpty()) {
          log.accept("rehearsal of a mount's requests: failed: " + r.unexpected);
        }
        return r.unexpected.size();
      }
    } catch (IOException | io.strata.union.view.FsException | RuntimeException e) {
      log.accept("rehearsal of a mount's requests: " + e);
      return -1;
    } finally {
      if (scratch != null) {
        delete(scratch, log);
      }
    }
  }

  private void play() {
    init();
    long etc = lookup(Fuse.ROOT_ID, "etc");
    long passwd = lookup(etc, "passwd");
    expect(Fuse.GETATTR, passwd, new byte[16], true);
    expect(Fuse.STATX, passwd, body(b -> b.putInt(0).putInt(0).putLong(0).putInt(0)
        .putInt(0xfff)), true);
    expect(Fuse.GETXATTR, passwd, body(b -> b.putInt(0).putInt(0).put(z("security.capability"))),
        false);
    expect(Fuse.ACCESS, passwd, body(b -> b.putInt(4).putInt(0)), true);
    long bin = lookup(Fuse.ROOT_ID, "bin");
    expect(Fuse.READLINK, bin, new byte[0], true);
    long usr = lookup(Fuse.ROOT_ID, "usr");
    long usrBin = lookup(usr, "bin");
    lookup(usrBin, "true");
    expect(Fuse.LOOKUP, usrBin, z("missing"), true); // negative entry
    // a listing
    long dh = open(Fuse.OPENDIR, usrBin);
    expect(Fuse.READDIRPLUS, usrBin, io(dh, 0, 4096, 0), true);
    expect(Fuse.RELEASEDIR, usrBin, release(dh), true);
    // a read
    long fh = open(Fuse.OPEN, passwd);
    expect(Fuse.READ, passwd, io(fh, 0, 4096, 0), true);
    expect(Fuse.FLUSH, passwd, new byte[24], false);
    expect(Fuse.RELEASE, passwd, release(fh), true);
    // a create with writes and attribute changes, in a directory copied up for it
    serve(frame(Fuse.CREATE, etc, body(b -> b.putInt(0101 /* O_WRONLY|O_CREAT */)
        .putInt(0100644).putInt(022).putInt(0).put(z("hostname")))));
    long created = ok() ? out.getLong(Fuse.OUT_HEADER) : 0;
    long cfh = ok() ? out.getLong(Fuse.OUT_HEADER + Fuse.ENTRY_OUT) : 0;
    byte[] data = "rehearsal\n".getBytes(StandardCharsets.US_ASCII);
    expect(Fuse.WRITE, created, body(b -> b.putLong(cfh).putLong(0).putInt(data.length).putInt(0)
        .putLong(0).putInt(0).putInt(0).put(data)), true);
    expect(Fuse.SETATTR, created, setattr(1 /* FATTR_MODE */, 0100600, 0), true);
    expect(Fuse.FSYNC, created, body(b -> b.putLong(cfh).putInt(0).putInt(0)), true);
    expect(Fuse.RELEASE, created, release(cfh), true);
    // a write to a lower file: its copy-up
    long wfh = open(Fuse.OPEN, passwd, 2 /* O_RDWR */);
    expect(Fuse.WRITE, passwd, body(b -> b.putLong(wfh).putLong(0).putInt(data.length)
        .putInt(0).putLong(0).putInt(0).putInt(0).put(data)), true);
    expect(Fuse.RELEASE, passwd, release(wfh), true);
    expect(Fuse.SETATTR, passwd, setattr(8 /* FATTR_SIZE */, 0, 4), true);
    // names made, moved and removed
    serve(frame(Fuse.MKDIR, Fuse.ROOT_ID, body(b -> b.putInt(040755).putInt(022).put(z("tmp")))));
    long tmp = ok() ? out.getLong(Fuse.OUT_HEADER) : 0;
    check("MKDIR");
    serve(frame(Fuse.SYMLINK, tmp, body(b -> b.put(z("link")).put(z("/etc/passwd")))));
    check("SYMLINK");
    expect(Fuse.RENAME2, tmp, body(b -> b.putLong(tmp).putInt(0).putInt(0).put(z("link"))
        .put(z("moved"))), true);
    expect(Fuse.UNLINK, tmp, z("moved"), true);
    expect(Fuse.UNLINK, usrBin, z("true"), true); // a whiteout
    expect(Fuse.RMDIR, Fuse.ROOT_ID, z("tmp"), true);
    expect(Fuse.STATFS, Fuse.ROOT_ID, new byte[0], true);
    expect(Fuse.GETATTR, Fuse.ROOT_ID, new byte[16], true);
    serve(frame(Fuse.FORGET, passwd, body(b -> b.putLong(1))));
  }

  private void init() {
    long flags = Fuse.ASYNC_READ | Fuse.DO_READDIRPLUS | Fuse.READDIRPLUS_AUTO | Fuse.MAX_PAGES
        | Fuse.DONT_MASK | Fuse.INIT_EXT;
    expect(Fuse.INIT, 0, body(b -> b.putInt(Fuse.KERNEL_MAJOR).putInt(Fuse.KERNEL_MINOR)
        .putInt(131072).putInt((int) flags).putInt((int) (flags >>> 32)).put(new byte[44])),
        true);
  }

  private long lookup(long parent, String name) {
    serve(frame(Fuse.LOOKUP, parent, z(name)));
    if (!check("LOOKUP " + name)) {
      return 0;
    }
    return out.getLong(Fuse.OUT_HEADER);
  }

  private long open(int opcode, long node) {
    return open(opcode, node, 0);
  }

  private long open(int opcode, long node, int flags) {
    serve(frame(opcode, node, body(b -> b.putInt(flags).putInt(0))));
    if (!check(Fuse.name(opcode))) {
      return 0;
    }
    return out.getLong(Fuse.OUT_HEADER);
  }

  private static byte[] io(long fh, long offset, int size, int flags) {
    return body(b -> b.putLong(fh).putLong(offset).putInt(size).putInt(flags).putLong(0)
        .putInt(0).putInt(0));
  }

  private static byte[] release(long fh) {
    return body(b -> b.putLong(fh).putInt(0).putInt(0).putLong(0));
  }

  private static byte[] setattr(int valid, int mode, long size) {
    return body(b -> b.putInt(valid).putInt(0).putLong(0).putLong(size).putLong(0).putLong(0)
        .putLong(0).putLong(0).putInt(0).putInt(0).putInt(0).putInt(mode).putInt(0).putInt(0)
        .putInt(0).putInt(0));
  }

  private void expect(int opcode, long node, byte[] body, boolean succeeds) {
    serve(frame(opcode, node, body));
    if (succeeds) {
      check(Fuse.name(opcode));
    }
  }

  /** Whether the last reply was a success; if not, it is noted as unexpected. */
  private boolean check(String what) {
    if (!ok()) {
      unexpected.add(what + ": errno " + -out.getInt(4));
      return false;
    }
    return true;
  }

  /** Whether the last reply was a success (an answer without an error). */
  private boolean ok() {
    return out.getInt(4) == 0;
  }

  private void serve(byte[] frame) {
    in.clear();
    in.put(0, frame);
    out.putInt(4, -1);
    int n = dispatcher.serve(req, frame.length, rep, inMem, outMem);
    if (n <= 0) {
      out.putInt(4, 0); // not answered (a forget), or answered with nothing
    }
  }

  private byte[] frame(int opcode, long nodeid, byte[] body) {
    ByteBuffer b = ByteBuffer.allocate(Fuse.IN_HEADER + body.length).order(ByteOrder.LITTLE_ENDIAN);
    b.putInt(Fuse.IN_HEADER + body.length).putInt(opcode).putLong(++unique).putLong(nodeid)
        .putInt(uid).putInt(gid).putInt(1).putInt(0).put(body);
    return b.array();
  }

  private static byte[] body(Consumer<ByteBuffer> fill) {
    ByteBuffer b = ByteBuffer.allocate(4096).order(ByteOrder.LITTLE_ENDIAN);
    fill.accept(b);
    return java.util.Arrays.copyOf(b.array(), b.position());
  }

  private static byte[] z(String s) {
    byte[] b = s.getBytes(StandardCharsets.UTF_8);
    return java.util.Arrays.copyOf(b, b.length + 1);
  }

  private static final String PREFIX = "strata-rehearsal-";

  /**
   * Removes the scratch directories of rehearsals that were killed (a rehearsal takes well
   * under a second: one untouched for a minute is nobody's). Only this user's: the parent may
   * be a shared /tmp (a snapshotter's), where a directory of that name made by someone else,
   * removed by root, could lead the removal elsewhere; inside one of ours (0700) nobody else
   * can change anything.
   */
  static void removeLeftovers(Path parent, Consumer<String> log) {
    long old = System.currentTimeMillis() - 60_000;
    int me = io.strata.layers.fs.Posix.geteuid();
    java.nio.file.LinkOption nofollow = java.nio.file.LinkOption.NOFOLLOW_LINKS;
    try (Stream<Path> s = Files.list(parent)) {
      for (Path p : s.filter(p -> p.getFileName().toString().startsWith(PREFIX)).toList()) {
        if (Files.isDirectory(p, nofollow)
            && (int) Files.getAttribute(p, "unix:uid", nofollow) == me
            && Files.getLastModifiedTime(p, nofollow).toMillis() < old) {
          delete(p, log);
        }
      }
    } catch (IOException | RuntimeException e) {
      // nothing to remove, or not ours to list: the rehearsal goes on
    }
  }

  private static void delete(Path dir, Consumer<String> log) {
    try (Stream<Path> s = Files.walk(dir)) {
      for (Path p : s.sorted(Comparator.reverseOrder()).toList()) {
        Files.deleteIfExists(p);
      }
    } catch (IOException | RuntimeException e) {
      log.accept("rehearsal: could not remove " + dir + ": " + e.getMessage());
    }
  }
}
