package io.strata.union.mount;

import io.strata.union.kernel.Holder;
import io.strata.union.kernel.KernelSession;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.function.Consumer;

/**
 * Mounts that outlive a restart of the daemon serving them. A stopping daemon hands each mount
 * of strata's own transport (over /dev/fuse) to strata-holder: its descriptors and a record
 * of how to serve it again (the command line that made it, and its session's state: the
 * nodes, open files and directories the kernel holds). The next daemon takes them back, runs
 * each command line again as a takeover of that connection, and serves on, with the node ids
 * and handles the kernel knows. Meanwhile the mount's users wait, as on a hard NFS mount; if
 * no daemon comes within the holder's grace, the mounts fail as after a crash (a killed
 * daemon hands nothing over: its mounts fail at once, as before).
 */
public final class Handover {
  private static final int MAGIC = 0x53545248; // "STRH"
  private static final int VERSION = 4;

  private Handover() {}

  /**
   * How a mount is made again by the next daemon: the command line that made it (its last
   * argument the mountpoint), and, when this is that next daemon, what it takes over;
   * {@code onHeld} (or null) is told the holder's socket once the mount is handed over (what
   * this process held for the mount, a pin on its layers, is then to hold while that does).
   */
  public record Plan(List<String> recipe, Takeover from,
      java.util.function.Consumer<Path> onHeld) {}

  /**
   * A mount the daemon before handed over: its descriptors are the connection's, then {@code
   * clones} clones of it, then the files its view had open (claimed: they have an owner). From
   * a {@code checkpoint} (the daemon before died; see {@link Keeper}) every descriptor after
   * the first is a clone, and the state may be behind what that daemon did last.
   */
  public record Takeover(long id, List<String> recipe, boolean elsewhere,
      KernelSession.Resumed resumed, byte[] state, int[] descriptors, int clones,
      boolean checkpoint, java.util.concurrent.atomic.AtomicBoolean claimed) {
    int descriptor() {
      return descriptors[0];
    }

    int[] clonesOf() {
      return Arrays.copyOfRange(descriptors, 1, 1 + clones);
    }

    /** The view's open files, or null from a checkpoint (opened again by name). */
    int[] files() {
      return checkpoint ? null : Arrays.copyOfRange(descriptors, 1 + clones, descriptors.length);
    }

    /** The mountpoint, as the daemon before served it. */
    public String mountpoint() {
      return recipe.get(recipe.size() - 1);
    }

    /**
     * Takes the descriptors for serving; false when they were taken or abandoned already.
     * Whoever claims them closes them if the mount does not come up.
     */
    boolean claim() {
      return claimed.compareAndSet(false, true);
    }

    /** Closes what was received, unless a mount has claimed it. */
    public void abandon() {
      if (claim()) {
        Holder.closeAll(descriptors);
      }
    }
  }

  private static final ThreadLocal<Takeover> TAKING = new ThreadLocal<>();

  /** The mount this thread's command takes over, or null when it makes a new one. */
  public static Takeover taking() {
    return TAKING.get();
  }

  /** Runs {@code command} (the recipe's command line) as the takeover of {@code t}. */
  public static <T> T takingOver(Takeover t, Callable<T> command) throws Exception {
    TAKING.set(t);
    try {
      return command.call();
    } finally {
      TAKING.remove();
    }
  }

  /**
   * Hands every mount of this process that can be to the holder on {@code socket} (started
   * from {@code program} when none answers, waiting {@code graceSeconds} for the next daemon);
   * how many were. The others end with this process, as before.
   */
  public static int giveAll(Path program, Path socket, int graceSeconds, Consumer<String> log) {
    List<FuseMount> handed = new ArrayList<>();
    List<Holder.Entry> entries = new ArrayList<>();
    for (FuseMount m : FuseMount.live()) {
      KernelSession.Handed h;
      try {
        h = m.handOver(5_000);
      } catch (IOException e) {
        log.accept("cannot hand " + m.mountpoint() + " over: " + e.getMessage());
        continue;
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        break;
      }
      if (h == null) {
        continue;
      }
      long id = m.handoverId != 0 ? m.handoverId
          : java.util.concurrent.ThreadLocalRandom.current().nextLong(1, Long.MAX_VALUE);
      List<String> recipe = recipeOf(m);
      try {
        int[] all = Arrays.copyOf(h.descriptors(), h.descriptors().length + h.files().length);
        System.arraycopy(h.files(), 0, all, h.descriptors().length, h.files().length);
        entries.add(new Holder.Entry(id, all, encode(recipe, m.elsewhere(), h.resumed(),
            h.descriptors().length - 1, h.state())));
        handed.add(m);
      } catch (IOException e) {
        m.notHandedOver();
        log.accept("cannot hand " + m.mountpoint() + " over: " + e.getMessage());
      }
    }
    if (entries.isEmpty()) {
      return 0;
    }
    try {
      Holder.give(program, socket, graceSeconds, entries);
    } catch (IOException e) {
      log.accept("cannot hand the mounts over: " + e.getMessage());
      handed.forEach(FuseMount::notHandedOver);
      return 0;
    }
    for (FuseMount m : handed) {
      m.handedOver();
      if (m.plan().onHeld() != null) {
        try {
          m.plan().onHeld().accept(socket);
        } catch (RuntimeException e) {
          log.accept(m.mountpoint() + ": " + e.getMessage());
        }
      }
    }
    return handed.size();
  }

  /** The command line that makes {@code m} again: its plan's, on the mountpoint it has. */
  static List<String> recipeOf(FuseMount m) {
    List<String> recipe = new ArrayList<>(m.plan().recipe());
    recipe.set(recipe.size() - 1, m.mountpoint().toString());
    return recipe;
  }

  /**
   * Takes over what the holder on {@code socket} keeps from the daemon before (nothing when
   * none runs): each mount's descriptors are this process's from here, and {@code takeOver}
   * is to serve it or {@link Takeover#abandon} it. The holder ends after the last, so that
   * what depends on it (the pins of held mounts) lasts until the mounts are served again.
   */
  public static void takeAll(Path socket, Consumer<String> log, Consumer<Takeover> takeOver)
      throws IOException {
    try (Holder.Taken taken = Holder.take(socket)) {
      for (Holder.Entry e : taken.entries()) {
        Takeover t;
        try {
          t = decode(e);
        } catch (IOException | RuntimeException bad) {
          log.accept("a mount handed over cannot be read (" + bad.getMessage()
              + "): left to fail");
          Holder.closeAll(e.descriptors());
          continue;
        }
        takeOver.accept(t);
      }
    }
  }

  /**
   * A mount's record: how the next daemon serves it again. {@code clones} is how many of its
   * descriptors after the first are clones of it (the rest are its view's open files), or -1
   * for a {@code checkpoint}, whose descriptors after the first are all clones.
   */
  static byte[] encode(List<String> recipe, boolean elsewhere, KernelSession.Resumed r,
      int clones, byte[] state) throws IOException {
    ByteArrayOutputStream b = new ByteArrayOutputStream(state.length + 256);
    DataOutputStream out = new DataOutputStream(b);
    header(out, recipe, elsewhere, r, clones);
    out.writeInt(state.length);
    out.write(state);
    out.flush();
    return b.toByteArray();
  }

  /**
   * Writes a checkpoint's record ({@link #encode} with clones -1) into {@code ch}, an empty
   * file: the state streamed by {@code state} (no copy of it in memory: a big mount's is
   * megabytes), its length written in after.
   */
  static void writeCheckpoint(java.nio.channels.FileChannel ch, List<String> recipe,
      boolean elsewhere, KernelSession.Resumed r, StateWriter state) throws IOException {
    DataOutputStream out = new DataOutputStream(new java.io.BufferedOutputStream(
        java.nio.channels.Channels.newOutputStream(ch), 1 << 16));
    header(out, recipe, elsewhere, r, -1);
    out.flush();
    long at = ch.position();
    out.writeInt(0); // the length, below
    state.write(out);
    out.flush();
    long length = ch.position() - at - 4;
    if (length > Integer.MAX_VALUE) {
      throw new IOException("a checkpoint of " + length + " bytes");
    }
    ch.write(java.nio.ByteBuffer.allocate(4).putInt(0, (int) length), at);
  }

  /** Writes a session's state (see KernelSession#writeState). */
  interface StateWriter {
    void write(DataOutputStream out) throws IOException;
  }

  private static void header(DataOutputStream out, List<String> recipe, boolean elsewhere,
      KernelSession.Resumed r, int clones) throws IOException {
    out.writeInt(MAGIC);
    out.writeInt(VERSION);
    out.writeLong(r.generation());
    out.writeLong(r.agreed());
    out.writeInt(r.minor());
    out.writeBoolean(elsewhere);
    out.writeInt(clones);
    out.writeInt(recipe.size());
    for (String a : recipe) {
      byte[] s = a.getBytes(StandardCharsets.UTF_8);
      out.writeInt(s.length);
      out.write(s);
    }
  }

  static Takeover decode(Holder.Entry e) throws IOException {
    DataInputStream in = new DataInputStream(new ByteArrayInputStream(e.record()));
    int version = in.readInt() == MAGIC ? in.readInt() : -1;
    if (version != VERSION && version != 2) {
      throw new IOException("not a record of this strata version");
    }
    // version 2 (builds before the agreed INIT flags were kept) said only whether passthrough
    // was agreed: a daemon upgraded across that change still takes its mounts over
    KernelSession.Resumed r = version == 2
        ? KernelSession.Resumed.withoutFlags(in.readLong(), in.readBoolean(), in.readInt())
        : new KernelSession.Resumed(in.readLong(), in.readLong(), in.readInt());
    boolean elsewhere = in.readBoolean();
    int clones = in.readInt();
    // a checkpoint (version 4) was written with the clones sent by then; more may have gone
    // to the holder after it
    boolean checkpoint = version >= 4 && clones == -1;
    if (checkpoint) {
      clones = e.descriptors().length - 1;
    }
    if (clones < 0 || clones >= e.descriptors().length) {
      throw new IOException(clones + " clones among " + e.descriptors().length + " descriptors");
    }
    int n = in.readInt();
    if (n < 1 || n > 100_000) {
      throw new IOException("a command line of " + n + " words");
    }
    List<String> recipe = new ArrayList<>(n);
    for (int i = 0; i < n; i++) {
      byte[] s = new byte[in.readInt()];
      in.readFully(s);
      recipe.add(new String(s, StandardCharsets.UTF_8));
    }
    byte[] state = new byte[in.readInt()];
    in.readFully(state);
    return new Takeover(e.id(), List.copyOf(recipe), elsewhere, r, state, e.descriptors(),
        clones, checkpoint, new java.util.concurrent.atomic.AtomicBoolean());
  }
}
