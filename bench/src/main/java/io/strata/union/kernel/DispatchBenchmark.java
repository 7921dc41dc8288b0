package io.strata.union.kernel;

import io.strata.bench.Layers;
import io.strata.union.view.UnionView;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import jnr.ffi.Pointer;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * What strata's own transport adds to a FUSE round trip in Java: a frame parsed, dispatched
 * onto the view and its reply written, with no kernel (the device's read and write are not in
 * it). Lives in the transport's package to reach its package-private parts:
 * {@code java -jar bench/target/benchmarks.jar Dispatch}.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class DispatchBenchmark {
  Path root;
  UnionView view;
  Dispatcher dispatcher;
  final ByteBuffer in = ByteBuffer.allocateDirect(Fuse.BUFFER).order(ByteOrder.LITTLE_ENDIAN);
  final ByteBuffer out = ByteBuffer.allocateDirect(Fuse.BUFFER).order(ByteOrder.LITTLE_ENDIAN);
  final Request req = new Request(in);
  final Reply rep = new Reply(out);
  Pointer inMem;
  Pointer outMem;
  byte[] lookupFrame;
  byte[] getattrFrame;
  byte[] getxattrFrame;

  @Setup(Level.Trial)
  public void setUp() throws Exception {
    root = Files.createTempDirectory("strata-dispatch");
    view = UnionView.open(Layers.stack(root, 4, 8, 1000), null, null,
        UnionView.Options.defaults());
    NodeTable nodes = new NodeTable(view.getattr("/").ino());
    dispatcher = new Dispatcher(view, nodes, new Dispatcher.Timeouts(1, 1, 1), false,
        new Dispatcher.Session() {
          @Override
          public int backingOpen(int fd) {
            return -1;
          }

          @Override
          public void backingClose(int id) {}

          @Override
          public void invalidateEntry(long parent, String name) {}
        }, line -> { });
    inMem = Pointer.wrap(Device.RUNTIME, in);
    outMem = Pointer.wrap(Device.RUNTIME, out);
    // look the chain up once, as the kernel would have, to get the directory's node
    long dir = Fuse.ROOT_ID;
    for (String name : Layers.chain(8).split("/")) {
      dir = lookup(dir, name);
    }
    lookupFrame = frame(Fuse.LOOKUP, dir, z("f500"));
    long file = lookup(dir, "f500");
    getattrFrame = frame(Fuse.GETATTR, file, new byte[16]);
    byte[] name = z("security.selinux");
    ByteBuffer x = ByteBuffer.allocate(8 + name.length).order(ByteOrder.LITTLE_ENDIAN);
    x.putInt(255).putInt(0).put(name);
    getxattrFrame = frame(Fuse.GETXATTR, file, x.array());
  }

  private long lookup(long parent, String name) {
    byte[] f = frame(Fuse.LOOKUP, parent, z(name));
    serve(f);
    if (out.getInt(4) != 0) {
      throw new IllegalStateException("lookup of " + name + ": errno " + -out.getInt(4));
    }
    return out.getLong(Fuse.OUT_HEADER);
  }

  private static byte[] z(String s) {
    byte[] b = s.getBytes(StandardCharsets.UTF_8);
    return java.util.Arrays.copyOf(b, b.length + 1);
  }

  private static byte[] frame(int opcode, long nodeid, byte[] body) {
    ByteBuffer b = ByteBuffer.allocate(Fuse.IN_HEADER + body.length).order(ByteOrder.LITTLE_ENDIAN);
    b.putInt(Fuse.IN_HEADER + body.length).putInt(opcode).putLong(7).putLong(nodeid)
        .putInt(0).putInt(0).putInt(1).putInt(0).put(body);
    return b.array();
  }

  private int serve(byte[] frame) {
    in.put(0, frame);
    return dispatcher.serve(req, frame.length, rep, inMem, outMem);
  }

  @TearDown(Level.Trial)
  public void tearDown() throws Exception {
    view.close();
    Layers.delete(root);
  }

  /** LOOKUP of a file 8 levels down (its lookup count grows; nothing forgets it here). */
  @Benchmark
  public int lookup() {
    return serve(lookupFrame);
  }

  /** GETATTR of a known node: the path built from the node table, then the view's stat. */
  @Benchmark
  public int getattr() {
    return serve(getattrFrame);
  }

  /** GETXATTR of a label the file lacks, after the first: answered from the node. */
  @Benchmark
  public int getxattrNone() {
    return serve(getxattrFrame);
  }
}
