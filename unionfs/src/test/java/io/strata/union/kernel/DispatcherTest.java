package io.strata.union.kernel;

import static org.assertj.core.api.Assertions.assertThat;

import io.strata.layers.fs.Posix;
import io.strata.union.view.UnionView;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import jnr.ffi.Pointer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Frames fed straight to the dispatcher, without a kernel: good ones are answered, and bad ones
 * (a length that lies, an unknown opcode, a forgotten node id, a name without its NUL, a write
 * longer than its frame) get an errno or are dropped, never kill it and change nothing.
 */
class DispatcherTest {
  @TempDir Path tmp;
  UnionView view;
  Dispatcher d;
  NodeTable nodes;
  final List<String> log = new ArrayList<>();
  final ByteBuffer in = ByteBuffer.allocateDirect(Fuse.BUFFER).order(ByteOrder.LITTLE_ENDIAN);
  final ByteBuffer out = ByteBuffer.allocateDirect(Fuse.BUFFER).order(ByteOrder.LITTLE_ENDIAN);
  final Request req = new Request(in);
  final Reply rep = new Reply(out);
  long unique = 100;

  @BeforeEach
  void setUp() throws Exception {
    Path lower = Files.createDirectories(tmp.resolve("lower"));
    Files.writeString(lower.resolve("file"), "lower data");
    Files.createDirectories(lower.resolve("dir"));
    view = UnionView.open(List.of(lower), Files.createDirectories(tmp.resolve("upper")),
        tmp.resolve("work"), UnionView.Options.defaults());
    nodes = new NodeTable(view.getattr("/").ino());
    d = new Dispatcher(view, nodes, new Dispatcher.Timeouts(1_000_000_000L, 1_000_000_000L, 0),
        false, new Dispatcher.Session() {
          @Override
          public int backingOpen(int fd) {
            return -Posix.EPERM;
          }

          @Override
          public void backingClose(int id) {}

          @Override
          public void invalidateEntry(long parent, String name) {}
        }, log::add);
  }

  @AfterEach
  void tearDown() {
    view.close();
  }

  /** A frame: header with a correct length unless {@code lie} is set, then the body. */
  private int frame(int opcode, long nodeid, byte[] body, Integer lie) {
    int len = Fuse.IN_HEADER + body.length;
    in.clear();
    in.putInt(0, lie != null ? lie : len).putInt(4, opcode).putLong(8, ++unique)
        .putLong(16, nodeid).putInt(24, 0).putInt(28, 0).putInt(32, 1).putInt(36, 0);
    in.put(Fuse.IN_HEADER, body);
    return len;
  }

  /** Serves a frame of {@code n} bytes; the reply's error (0 for none), or null for no reply. */
  private Integer serve(int n) {
    int len = d.serve(req, n, rep, Pointer.wrap(Device.RUNTIME, in),
        Pointer.wrap(Device.RUNTIME, out));
    if (len == 0) {
      return null;
    }
    assertThat(out.getInt(0)).isEqualTo(len);
    assertThat(out.getLong(8)).isEqualTo(unique);
    return -out.getInt(4);
  }

  private static byte[] z(String s) {
    byte[] b = s.getBytes(StandardCharsets.UTF_8);
    return java.util.Arrays.copyOf(b, b.length + 1);
  }

  private static byte[] cat(ByteBuffer head, byte[] tail) {
    byte[] h = new byte[head.position()];
    head.flip().get(h);
    byte[] all = java.util.Arrays.copyOf(h, h.length + tail.length);
    System.arraycopy(tail, 0, all, h.length, tail.length);
    return all;
  }

  private static ByteBuffer le(int size) {
    return ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
  }

  private long lookup(String name) {
    assertThat(serve(frame(Fuse.LOOKUP, 1, z(name), null))).isZero();
    return out.getLong(Fuse.OUT_HEADER);
  }

  private int getattr(long node) {
    return serve(frame(Fuse.GETATTR, node, new byte[16], null));
  }

  @Test
  void initLookupAndGetattrAreAnswered() {
    ByteBuffer init = le(64).putInt(7).putInt(45).putInt(131072)
        .putInt((int) (Fuse.INIT_EXT | Fuse.POSIX_ACL | Fuse.DO_READDIRPLUS)).putInt(0);
    assertThat(serve(frame(Fuse.INIT, 0, cat(init, new byte[0]), null))).isZero();
    assertThat(out.getInt(Fuse.OUT_HEADER)).isEqualTo(7);
    assertThat(out.getInt(Fuse.OUT_HEADER + 12) & Fuse.POSIX_ACL).isNotZero();
    long file = lookup("file");
    assertThat(file).isGreaterThan(1);
    assertThat(out.getLong(Fuse.OUT_HEADER + 40 + 8)).isEqualTo(10); // attr.size
    assertThat(getattr(file)).isZero();
    assertThat(serve(frame(Fuse.LOOKUP, 1, z("missing"), null))).isEqualTo(Posix.ENOENT);
  }

  @Test
  void aLengthThatLiesIsRefusedAndAShortFrameDropped() {
    int n = frame(Fuse.LOOKUP, 1, z("file"), 4096);
    assertThat(serve(n)).isEqualTo(Posix.EINVAL);
    assertThat(serve(frame(Fuse.LOOKUP, 1, z("file"), 8))).isEqualTo(Posix.EINVAL);
    assertThat(serve(12)).isNull();
    assertThat(nodes.size()).isEqualTo(1); // nothing was counted
    assertThat(lookup("file")).isGreaterThan(1); // and it goes on answering
  }

  @Test
  void anInterruptIsNotAnsweredAndItsRequestIsAnsweredNormally() {
    long file = lookup("file");
    ByteBuffer interrupt = le(8).putLong(unique + 1);
    assertThat(serve(frame(Fuse.INTERRUPT, 0, cat(interrupt, new byte[0]), null))).isNull();
    assertThat(getattr(file)).isZero(); // not EINTR: it completed
  }

  @Test
  void anUnknownOpcodeIsENOSYS() {
    assertThat(serve(frame(99, 1, new byte[8], null))).isEqualTo(Posix.ENOSYS);
    assertThat(serve(frame(50 /* SYNCFS */, 1, new byte[8], null))).isEqualTo(Posix.ENOSYS);
    assertThat(serve(frame(-7, 1, new byte[0], null))).isEqualTo(Posix.ENOSYS);
  }

  @Test
  void aForgottenNodeIsStale() {
    long file = lookup("file");
    lookup("file");
    ByteBuffer forget = le(8).putLong(2);
    assertThat(serve(frame(Fuse.FORGET, file, cat(forget, new byte[0]), null))).isNull();
    assertThat(getattr(file)).isEqualTo(Posix.ESTALE);
    assertThat(getattr(123456)).isEqualTo(Posix.ESTALE);
    ByteBuffer batch = le(8 + 16).putInt(1).putInt(0).putLong(file).putLong(1);
    assertThat(serve(frame(Fuse.BATCH_FORGET, 0, cat(batch, new byte[0]), null))).isNull();
    // a batch that claims more entries than it carries: no reply, no harm
    ByteBuffer lying = le(8).putInt(1000).putInt(0);
    assertThat(serve(frame(Fuse.BATCH_FORGET, 0, cat(lying, new byte[0]), null))).isNull();
    assertThat(lookup("file")).isNotEqualTo(file); // a new id, never a reused one
  }

  @Test
  void aNameWithoutItsNulOrWithASlashIsRefused() throws Exception {
    byte[] noNul = "file".getBytes(StandardCharsets.UTF_8);
    assertThat(serve(frame(Fuse.LOOKUP, 1, noNul, null))).isEqualTo(Posix.EINVAL);
    assertThat(serve(frame(Fuse.UNLINK, 1, noNul, null))).isEqualTo(Posix.EINVAL);
    assertThat(serve(frame(Fuse.UNLINK, 1, z("dir/../file"), null))).isEqualTo(Posix.EINVAL);
    assertThat(serve(frame(Fuse.MKDIR, 1, new byte[4], null))).isEqualTo(Posix.EINVAL);
    assertThat(serve(frame(Fuse.UNLINK, 1, z(".."), null))).isEqualTo(Posix.EINVAL);
    assertThat(view.getattr("/file").size()).isEqualTo(10);
    try (var s = Files.list(tmp.resolve("upper"))) {
      assertThat(s).isEmpty(); // nothing was changed
    }
  }

  @Test
  void aWriteLongerThanItsFrameIsRefused() throws Exception {
    long file = lookup("file");
    ByteBuffer open = le(8).putInt(2 /* O_RDWR */).putInt(0);
    assertThat(serve(frame(Fuse.OPEN, file, cat(open, new byte[0]), null))).isZero();
    long fh = out.getLong(Fuse.OUT_HEADER);
    ByteBuffer write = le(40).putLong(fh).putLong(0).putInt(1 << 20).putInt(0).putLong(0)
        .putInt(0).putInt(0);
    assertThat(serve(frame(Fuse.WRITE, file, cat(write, "abc".getBytes()), null)))
        .isEqualTo(Posix.EINVAL);
    ByteBuffer ok = le(40).putLong(fh).putLong(0).putInt(3).putInt(0).putLong(0).putInt(0)
        .putInt(0);
    assertThat(serve(frame(Fuse.WRITE, file, cat(ok, "abc".getBytes()), null))).isZero();
    assertThat(out.getInt(Fuse.OUT_HEADER)).isEqualTo(3);
    ByteBuffer release = le(24).putLong(fh);
    assertThat(serve(frame(Fuse.RELEASE, file, cat(release, new byte[0]), null))).isZero();
    assertThat(Files.readString(tmp.resolve("upper/file"))).isEqualTo("abcer data");
    assertThat(log).anyMatch(l -> l.contains("WRITE"));
  }

  @Test
  void repliesCountLookupsThatALostReplyGivesBack() {
    long file = lookup("file");
    assertThat(nodes.counts()).containsEntry(file, 1L);
    lookup("file");
    d.replyLost(); // the kernel refused that reply: it never counted the lookup
    assertThat(nodes.counts()).containsEntry(file, 1L);
  }
}
