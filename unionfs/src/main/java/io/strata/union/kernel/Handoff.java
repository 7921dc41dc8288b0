package io.strata.union.kernel;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import jnr.posix.CmsgHdr;
import jnr.posix.MsgHdr;
import jnr.posix.POSIX;
import jnr.posix.POSIXFactory;

/**
 * A /dev/fuse descriptor that another process mounted in namespaces of its own (the client in
 * rootless podman's user namespace, where the daemon is not), received over the unix socket it
 * listens on (SCM_RIGHTS, as fusermount3 passes one). pidfd_getfd cannot take it: the kernel
 * allows that only where ptrace would be, and a sibling user namespace is not.
 */
final class Handoff {
  private static final int AF_UNIX = 1;
  private static final int SOCK_STREAM = 1;
  private static final int SOCK_CLOEXEC = 02000000;
  private static final int SOL_SOCKET = 1;
  private static final int SCM_RIGHTS = 1;

  private Handoff() {}

  /** Connects to {@code socket} and receives one descriptor; it must be /dev/fuse. */
  static int receive(Path socket) throws IOException {
    byte[] path = socket.toString().getBytes(StandardCharsets.UTF_8);
    if (path.length >= 108) {
      throw new IOException("socket path too long: " + socket);
    }
    byte[] addr = new byte[2 + path.length + 1];
    addr[0] = AF_UNIX; // sa_family, little-endian u16
    System.arraycopy(path, 0, addr, 2, path.length);
    int fd = Device.LIBC.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      throw new IOException("socket: " + io.strata.layers.fs.Posix.strerror(Device.errno()));
    }
    POSIX posix = POSIXFactory.getNativePOSIX();
    try {
      if (Device.LIBC.connect(fd, addr, addr.length) < 0) {
        throw new IOException("connect to " + socket + ": "
            + io.strata.layers.fs.Posix.strerror(Device.errno()));
      }
      MsgHdr msg = posix.allocateMsgHdr();
      msg.setIov(new ByteBuffer[] {ByteBuffer.allocateDirect(1)});
      msg.allocateControl(4);
      int n = posix.recvmsg(fd, msg, 0x40000000); // MSG_CMSG_CLOEXEC: no child inherits it
      CmsgHdr[] got = msg.getControls();
      if (n <= 0 || got.length == 0 || got[0].getLevel() != SOL_SOCKET
          || got[0].getType() != SCM_RIGHTS) {
        throw new IOException("no descriptor came over " + socket);
      }
      int fuse = got[0].getData().order(ByteOrder.nativeOrder()).getInt(0);
      byte[] target = new byte[64];
      long len = Device.LIBC.readlink("/proc/self/fd/" + fuse, target, target.length);
      if (len < 0 || !new String(target, 0, (int) len, StandardCharsets.US_ASCII)
          .equals("/dev/fuse")) {
        Device.LIBC.close(fuse);
        throw new IOException("the descriptor sent over " + socket + " is not /dev/fuse");
      }
      return fuse;
    } finally {
      Device.LIBC.close(fd);
    }
  }
}
