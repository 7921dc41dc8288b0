package io.strata.union.kernel;

import io.strata.layers.fs.Posix;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import jnr.posix.CmsgHdr;
import jnr.posix.MsgHdr;
import jnr.posix.POSIX;
import jnr.posix.POSIXFactory;

/**
 * The daemon's side of strata-holder (runtime/src/main/c/strata-holder.c), the small process
 * that keeps the /dev/fuse descriptors of a stopping daemon's mounts until the next daemon
 * takes them. A mount's entry is its descriptors (the connection's first) and a record of how
 * to serve it again, which travels as a memfd (the holder keeps it second), so that its size
 * is not bound by a socket's packet; descriptors go 250 to a packet.
 */
public final class Holder {
  private static final int AF_UNIX = 1;
  private static final int SOCK_SEQPACKET = 5;
  private static final int SOCK_CLOEXEC = 02000000;
  private static final int SOL_SOCKET = 1;
  private static final int SCM_RIGHTS = 1;
  private static final int MSG_NOSIGNAL = 0x4000;
  private static final int MSG_CMSG_CLOEXEC = 0x40000000;
  private static final int MFD_CLOEXEC = 1;
  /** The most descriptors a packet carries (strata-holder.c's MAX_FDS). */
  static final int MAX_DESCRIPTORS = 250;

  /** What a holder keeps of one mount: its descriptors (the connection's first) and record. */
  public record Entry(long id, int[] descriptors, byte[] record) {}

  private Holder() {}

  /**
   * Gives {@code entries} to the holder on {@code socket}, starting {@code program} there
   * first when none answers (it waits {@code graceSeconds} for the next daemon). The
   * descriptors stay this process's as well.
   */
  public static void give(Path program, Path socket, int graceSeconds, List<Entry> entries)
      throws IOException {
    try (Link link = Link.open(program, socket, graceSeconds)) {
      for (Entry e : entries) {
        link.keep(e.id(), e.descriptors(), e.record());
      }
    }
  }

  /**
   * A running daemon's connection to its holder, which keeps the descriptors of the mounts it
   * serves as it serves them (and each one's latest record), so that they outlive the daemon's
   * crash: the holder's grace starts when this connection closes, however the daemon ended.
   * Not thread-safe: one thread sends.
   */
  public static final class Link implements AutoCloseable {
    private final int socket;

    private Link(int socket) {
      this.socket = socket;
    }

    /**
     * Connects to the holder on {@code socket}, starting {@code program} there first when
     * none answers (it waits {@code graceSeconds} for the next daemon once this one is gone).
     */
    public static Link open(Path program, Path socket, int graceSeconds) throws IOException {
      return new Link(connectOrStart(program, socket, graceSeconds));
    }

    /** Keeps a mount: its connection's descriptor first, then its other descriptors. */
    public void keep(long id, int[] descriptors, byte[] record) throws IOException {
      keep(id, descriptors, ch -> ch.write(ByteBuffer.wrap(record)));
    }

    /** As {@link #keep(long, int[], byte[])}, the record written by {@code record}. */
    public void keep(long id, int[] descriptors, RecordWriter record) throws IOException {
      int memfd = recordFile(record);
      try {
        int[] fds = new int[descriptors.length + 1];
        fds[0] = descriptors[0];
        fds[1] = memfd;
        System.arraycopy(descriptors, 1, fds, 2, descriptors.length - 1);
        for (int at = 0; at < fds.length; at += MAX_DESCRIPTORS) {
          send(socket, at == 0 ? 'K' : 'A', id, java.util.Arrays.copyOfRange(fds, at,
              Math.min(fds.length, at + MAX_DESCRIPTORS)));
        }
      } finally {
        Device.LIBC.close(memfd);
      }
    }

    /** Adds descriptors to a mount kept (they go after the others). */
    public void add(long id, int[] descriptors) throws IOException {
      for (int at = 0; at < descriptors.length; at += MAX_DESCRIPTORS) {
        send(socket, 'A', id, java.util.Arrays.copyOfRange(descriptors, at,
            Math.min(descriptors.length, at + MAX_DESCRIPTORS)));
      }
    }

    /**
     * Replaces a kept mount's record, written by {@code record}: one message, so a crash
     * leaves the old or the new.
     */
    public void record(long id, RecordWriter record) throws IOException {
      int memfd = recordFile(record);
      try {
        send(socket, 'R', id, new int[] {memfd});
      } finally {
        Device.LIBC.close(memfd);
      }
    }

    /** Lets a mount go: the holder closes its descriptors. */
    public void drop(long id) throws IOException {
      send(socket, 'D', id, new int[0]);
    }

    @Override
    public void close() {
      Device.LIBC.close(socket);
    }
  }

  /** Writes a mount's record into a new, empty file. */
  public interface RecordWriter {
    void write(java.nio.channels.FileChannel ch) throws IOException;
  }

  private static int recordFile(RecordWriter record) throws IOException {
    int memfd = Device.LIBC.memfd_create("strata-mount", MFD_CLOEXEC);
    if (memfd < 0) {
      throw new IOException("memfd_create: " + Posix.strerror(Device.errno()));
    }
    try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(
        Path.of("/proc/self/fd/" + memfd), java.nio.file.StandardOpenOption.WRITE)) {
      record.write(ch);
    } catch (IOException | RuntimeException e) {
      Device.LIBC.close(memfd);
      throw e;
    }
    return memfd;
  }

  /** A connection to the holder on {@code socket}, started from {@code program} if need be. */
  private static int connectOrStart(Path program, Path socket, int graceSeconds)
      throws IOException {
    int s = connect(socket);
    if (s >= 0) {
      return s;
    }
    start(program, socket, graceSeconds);
    long deadline = System.nanoTime() + 3_000_000_000L;
    while ((s = connect(socket)) < 0) {
      if (System.nanoTime() > deadline) {
        throw new IOException("the mount holder " + program + " did not answer on " + socket);
      }
      try {
        Thread.sleep(2);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IOException("interrupted");
      }
    }
    return s;
  }

  /**
   * What was taken from a holder: its entries, and the connection, whose closing ends the
   * holder (its socket, which pins of the held mounts depend on, goes then).
   */
  public record Taken(List<Entry> entries, int connection, Path socket)
      implements AutoCloseable {
    /**
     * Lets the holder go, and waits (up to two seconds) until it has: a connection that no one
     * took over fails (ENOTCONN) once the holder's copy is closed as well.
     */
    @Override
    public void close() {
      if (connection < 0) {
        return;
      }
      Device.LIBC.close(connection);
      long deadline = System.nanoTime() + 2_000_000_000L;
      while (Files.exists(socket) && System.nanoTime() < deadline) {
        try {
          Thread.sleep(2);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          return;
        }
      }
    }
  }

  /**
   * Takes every entry the holder on {@code socket} keeps (none when no holder answers); the
   * holder closes its copies and ends once the result is closed. The descriptors received are
   * this process's.
   */
  public static Taken take(Path socket) throws IOException {
    List<Entry> out = new ArrayList<>();
    if (!Files.exists(socket)) {
      return new Taken(out, -1, socket);
    }
    int s = connect(socket);
    if (s < 0) {
      return new Taken(out, -1, socket);
    }
    boolean done = false;
    java.util.Map<Long, List<Integer>> got = new java.util.LinkedHashMap<>();
    try {
      send(s, 'T', 0, new int[0]);
      POSIX posix = POSIXFactory.getNativePOSIX();
      while (true) {
        MsgHdr msg = posix.allocateMsgHdr();
        ByteBuffer data = ByteBuffer.allocateDirect(64).order(ByteOrder.nativeOrder());
        msg.setIov(new ByteBuffer[] {data});
        msg.allocateControl(4 * MAX_DESCRIPTORS + 16);
        int n = posix.recvmsg(s, msg, MSG_CMSG_CLOEXEC);
        if (n <= 0) {
          throw new IOException("the mount holder on " + socket + " went away");
        }
        byte type = data.get(0);
        int[] fds = received(msg);
        if (type == 'Z') {
          closeAll(fds);
          break;
        }
        List<Integer> entry = n < 9 ? null : type == 'E'
            ? got.computeIfAbsent(data.getLong(1), k -> new ArrayList<>())
            : type == 'A' ? got.get(data.getLong(1)) : null;
        if (entry == null) {
          closeAll(fds);
          continue;
        }
        for (int fd : fds) {
          entry.add(fd);
        }
      }
      for (var e : got.entrySet()) {
        int[] fds = e.getValue().stream().mapToInt(Integer::intValue).toArray();
        if (fds.length < 2) {
          closeAll(fds);
          continue;
        }
        byte[] record = null;
        try {
          record = Files.readAllBytes(Path.of("/proc/self/fd/" + fds[1]));
        } catch (IOException unreadable) {
          // left to fail below
        } finally {
          Device.LIBC.close(fds[1]);
        }
        int[] rest = new int[fds.length - 1];
        rest[0] = fds[0];
        System.arraycopy(fds, 2, rest, 1, fds.length - 2);
        if (record == null) {
          closeAll(rest);
          continue;
        }
        out.add(new Entry(e.getKey(), rest, record));
      }
      done = true;
      return new Taken(out, s, socket);
    } catch (IOException | RuntimeException e) {
      if (out.isEmpty()) { // received, none read yet
        got.values().forEach(l -> closeAll(l.stream().mapToInt(Integer::intValue).toArray()));
      }
      for (Entry taken : out) {
        closeAll(taken.descriptors());
      }
      throw e;
    } finally {
      if (!done) {
        Device.LIBC.close(s);
      }
    }
  }

  /** Closes descriptors received here and not used. */
  public static void closeAll(int[] fds) {
    for (int fd : fds) {
      Device.LIBC.close(fd);
    }
  }

  private static int[] received(MsgHdr msg) {
    List<Integer> fds = new ArrayList<>();
    for (CmsgHdr c : msg.getControls()) {
      if (c.getLevel() == SOL_SOCKET && c.getType() == SCM_RIGHTS) {
        ByteBuffer b = c.getData().order(ByteOrder.nativeOrder());
        for (int i = 0; i + 4 <= b.limit(); i += 4) {
          fds.add(b.getInt(i));
        }
      }
    }
    return fds.stream().mapToInt(Integer::intValue).toArray();
  }

  private static void send(int s, char type, long id, int[] fds) throws IOException {
    if (fds.length > MAX_DESCRIPTORS) {
      throw new IOException(fds.length + " descriptors for one mount: at most "
          + MAX_DESCRIPTORS);
    }
    POSIX posix = POSIXFactory.getNativePOSIX();
    MsgHdr msg = posix.allocateMsgHdr();
    ByteBuffer data = ByteBuffer.allocateDirect(9).order(ByteOrder.nativeOrder());
    data.put((byte) type).putLong(id).flip();
    msg.setIov(new ByteBuffer[] {data});
    if (fds.length > 0) {
      CmsgHdr c = msg.allocateControl(4 * fds.length);
      c.setLevel(SOL_SOCKET);
      c.setType(SCM_RIGHTS);
      ByteBuffer b = ByteBuffer.allocateDirect(4 * fds.length).order(ByteOrder.nativeOrder());
      for (int fd : fds) {
        b.putInt(fd);
      }
      b.flip();
      c.setData(b);
    }
    if (posix.sendmsg(s, msg, MSG_NOSIGNAL) != 9) {
      throw new IOException("sending to the mount holder: " + Posix.strerror(Device.errno()));
    }
  }

  /** A connected socket to {@code socket}, or -1 when nothing accepts there. */
  private static int connect(Path socket) throws IOException {
    byte[] path = socket.toString().getBytes(StandardCharsets.UTF_8);
    if (path.length >= 108) {
      throw new IOException("socket path too long: " + socket);
    }
    byte[] addr = new byte[2 + path.length + 1];
    addr[0] = AF_UNIX;
    System.arraycopy(path, 0, addr, 2, path.length);
    int fd = Device.LIBC.socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      throw new IOException("socket: " + Posix.strerror(Device.errno()));
    }
    if (Device.LIBC.connect(fd, addr, addr.length) < 0) {
      Device.LIBC.close(fd);
      return -1;
    }
    return fd;
  }

  private static void start(Path program, Path socket, int graceSeconds) throws IOException {
    if (!Files.isExecutable(program)) {
      throw new IOException("the mount holder " + program + " is missing; build with"
          + " `mvn -DskipTests package` (it needs cc)");
    }
    new ProcessBuilder(program.toString(), socket.toString(), Integer.toString(graceSeconds))
        .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")))
        .redirectOutput(ProcessBuilder.Redirect.DISCARD)
        .redirectError(ProcessBuilder.Redirect.DISCARD)
        .start();
  }
}
