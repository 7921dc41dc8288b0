package io.strata.union.kernel;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import jnr.posix.CmsgHdr;
import jnr.posix.MsgHdr;
import jnr.posix.POSIX;
import jnr.posix.POSIXFactory;
import jnr.posix.SpawnFileAction;

/**
 * Mounting without root: fusermount3 (setuid) opens /dev/fuse, mounts it and passes the
 * descriptor back over a unix socket named by {@code _FUSE_COMMFD} (SCM_RIGHTS), libfuse's
 * protocol. The child gets the socket as descriptor 3 through posix_spawn's file actions,
 * which ProcessBuilder cannot do.
 */
final class Fusermount {
  private static final int AF_UNIX = 1;
  private static final int SOCK_STREAM = 1;
  private static final int SOL_SOCKET = 1;
  private static final int SCM_RIGHTS = 1;

  private Fusermount() {}

  /** The fusermount program: fusermount3, else fusermount, from PATH's usual places. */
  static String program() {
    for (String p : List.of("/usr/bin/fusermount3", "/bin/fusermount3", "/usr/local/bin/fusermount3",
        "/usr/bin/fusermount", "/bin/fusermount")) {
      if (Files.isExecutable(Path.of(p))) {
        return p;
      }
    }
    return null;
  }

  /** Whether /etc/fuse.conf lets users mount with allow_other. */
  static boolean userAllowOther() {
    try {
      return Files.readAllLines(Path.of("/etc/fuse.conf")).stream()
          .anyMatch(l -> l.trim().equals("user_allow_other"));
    } catch (IOException e) {
      return false;
    }
  }

  /** Mounts {@code mountpoint} with {@code options}; the FUSE device descriptor. */
  static int mount(Path mountpoint, String options) throws IOException {
    String prog = program();
    if (prog == null) {
      throw new IOException("mounting as a user needs fusermount3 (Debian package fuse3)");
    }
    POSIX posix = POSIXFactory.getNativePOSIX();
    int[] sv = new int[2];
    if (posix.socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
      throw new IOException("socketpair: " + posix.strerror(posix.errno()));
    }
    try {
      List<String> env = new ArrayList<>();
      for (Map.Entry<String, String> e : System.getenv().entrySet()) {
        if (!e.getKey().equals("_FUSE_COMMFD")) {
          env.add(e.getKey() + "=" + e.getValue());
        }
      }
      env.add("_FUSE_COMMFD=3");
      long pid = posix.posix_spawnp(prog,
          List.of(SpawnFileAction.dup(sv[1], 3), SpawnFileAction.close(sv[0])),
          List.of(prog, "-o", options, "--", mountpoint.toString()), env);
      if (pid <= 0) {
        throw new IOException("cannot start " + prog + ": " + posix.strerror(posix.errno()));
      }
      posix.close(sv[1]);
      sv[1] = -1;
      MsgHdr msg = posix.allocateMsgHdr();
      msg.setIov(new ByteBuffer[] {ByteBuffer.allocateDirect(1)});
      CmsgHdr control = msg.allocateControl(4);
      int n = posix.recvmsg(sv[0], msg, 0);
      int[] status = new int[1];
      posix.waitpid(pid, status, 0);
      int exit = (status[0] >> 8) & 0xff;
      CmsgHdr[] got = msg.getControls();
      if (n <= 0 || got.length == 0 || got[0].getLevel() != SOL_SOCKET
          || got[0].getType() != SCM_RIGHTS) {
        throw new IOException(prog + " did not mount " + mountpoint + " (exit " + exit
            + "; is the mountpoint yours, and user_allow_other in /etc/fuse.conf if"
            + " allow_other is asked?)");
      }
      return got[0].getData().order(ByteOrder.nativeOrder()).getInt(0);
    } finally {
      posix.close(sv[0]);
      if (sv[1] >= 0) {
        posix.close(sv[1]);
      }
    }
  }
}
