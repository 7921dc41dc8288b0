package io.strata.layers.fs;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** Reads the mount table and unmounts, also mounts whose daemon died. */
public final class Mounts {
  /**
   * One line of /proc/self/mountinfo: where, what type, from what source, and the device of
   * its filesystem ("major:minor"; for FUSE one per connection, so it tells one FUSE mount at a
   * path from another made there later).
   */
  public record Entry(Path mountpoint, String fsType, String source, String device) {}

  private Mounts() {}

  public static List<Entry> table() throws IOException {
    List<Entry> out = new ArrayList<>();
    for (String line : Files.readAllLines(Path.of("/proc/self/mountinfo"), StandardCharsets.ISO_8859_1)) {
      String[] f = line.split(" ");
      int dash = line.indexOf(" - ");
      if (f.length < 5 || dash < 0) {
        continue;
      }
      String[] tail = line.substring(dash + 3).split(" ");
      out.add(new Entry(Path.of(unescape(f[4])), tail[0], tail.length > 1 ? unescape(tail[1]) : "",
          f[2]));
    }
    return out;
  }

  /** The mount on top at {@code p} (the last made there), or null when none is. */
  public static Entry top(Path p) throws IOException {
    Path abs = p.toAbsolutePath().normalize();
    Entry top = null;
    for (Entry e : table()) {
      if (e.mountpoint().equals(abs)) {
        top = e;
      }
    }
    return top;
  }

  /**
   * Whether something is mounted at {@code p}: one statx where the kernel says (a mount's
   * start asks; reading the table cost a parse of every mount of the host, hundreds on a busy
   * podman node), else the mount table.
   */
  public static boolean isMountpoint(Path p) throws IOException {
    Path abs = p.toAbsolutePath().normalize();
    Boolean root = RawFs.isMountRoot(abs);
    if (root != null) {
      return root;
    }
    return table().stream().anyMatch(e -> e.mountpoint().equals(abs));
  }

  public static boolean isFuseMountpoint(Path p) throws IOException {
    Path abs = p.toAbsolutePath().normalize();
    return table().stream().anyMatch(e -> e.mountpoint().equals(abs) && e.fsType().startsWith("fuse"));
  }

  /**
   * Unmounts a FUSE mount, also one whose daemon died ("Transport endpoint is not connected").
   * As root umount(8) does it; otherwise fusermount3 -u. {@code lazy} detaches a busy mount.
   */
  public static void unmount(Path mountpoint, boolean lazy) throws IOException {
    List<String> cmd = new ArrayList<>();
    boolean root = io.strata.layers.fs.Posix.isRoot();
    if (root) {
      // umount2 itself, as umount(8) calls it for a FUSE mount (it has no helper for one):
      // starting umount(8) from a JVM took ~5 ms of every unmount (a daemon-side close, a
      // snapshot's removal), the system call well under one
      int e = Posix.umount2(RawFs.raw(mountpoint.toAbsolutePath()), lazy ? Posix.MNT_DETACH : 0);
      if (e == 0) {
        return;
      }
      if (e != Posix.EPERM) {
        throw new IOException("cannot unmount " + mountpoint + ": " + switch (e) {
          case Posix.EINVAL -> "not mounted";
          case Posix.EBUSY -> "target is busy";
          default -> Posix.strerror(e);
        });
      }
      // refused here (a namespace without the right): umount(8) says why in its words
      cmd.add("umount");
      if (lazy) {
        cmd.add("-l");
      }
    } else {
      cmd.add(Files.exists(Path.of("/usr/bin/fusermount3")) ? "fusermount3" : "fusermount");
      cmd.add(lazy ? "-uz" : "-u");
    }
    cmd.add(mountpoint.toString());
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String out;
    try {
      out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
      if (!p.waitFor(30, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        throw new IOException(String.join(" ", cmd) + " did not finish");
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted while unmounting " + mountpoint);
    }
    if (p.exitValue() != 0) {
      throw new IOException("cannot unmount " + mountpoint + ": " + out);
    }
  }

  private static String unescape(String s) {
    if (s.indexOf('\\') < 0) {
      return s;
    }
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c == '\\' && i + 3 < s.length() + 1 && i + 3 <= s.length() - 1) {
        sb.append((char) Integer.parseInt(s.substring(i + 1, i + 4), 8));
        i += 3;
      } else {
        sb.append(c);
      }
    }
    return new String(sb.toString().getBytes(StandardCharsets.ISO_8859_1), StandardCharsets.UTF_8);
  }
}
