package io.strata.union.kernel;

import io.strata.layers.fs.Posix;
import java.io.IOException;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import jnr.ffi.Pointer;

/**
 * FUSE over io_uring (Linux 6.14+, the fuse module's {@code enable_uring} on): one queue per
 * possible CPU, as the kernel routes a request to the queue of the CPU its caller runs on.
 * Each queue is an io_uring of 128-byte SQEs on the /dev/fuse descriptor and a thread pinned
 * to that CPU; its
 * entries are buffers registered with the kernel (FUSE_IO_URING_CMD_REGISTER), into which the
 * kernel writes a request (headers apart, payload apart) and completes the entry's command.
 * The thread answers in place and hands the entry back with COMMIT_AND_FETCH, which also
 * fetches the next request: one io_uring_enter per batch of requests where /dev/fuse takes a
 * read and a write per request. Forgets, interrupts and notifications stay on /dev/fuse.
 *
 * <p>The ring, its SQEs and CQEs are shared memory read and written with plain accesses
 * between fences, as liburing does: the kernel's side orders its own.
 */
final class Ring {
  static final long OVER_IO_URING = 1L << 41; // FUSE_OVER_IO_URING, an INIT flag

  private static final int SETUP = 425; // the same number on every architecture
  private static final int ENTER = 426;
  /**
   * mmap and munmap as raw system calls: libc's mmap through jnr-ffi refused valid arguments
   * with EINVAL before reaching the kernel (seen with strace), the raw call works.
   */
  private static final boolean ARM = System.getProperty("os.arch").equals("aarch64");
  private static final int MMAP = ARM ? 222 : 9;
  private static final int MUNMAP = ARM ? 215 : 11;
  private static final int SCHED_SETAFFINITY = ARM ? 122 : 203;
  private static final int SETUP_SQE128 = 1 << 10;
  private static final int ENTER_GETEVENTS = 1;
  private static final int FEAT_SINGLE_MMAP = 1;
  private static final int OP_URING_CMD = 46;
  private static final long OFF_SQ_RING = 0;
  private static final long OFF_SQES = 0x10000000L;
  private static final int SQE = 128;
  private static final int CQE = 16;
  private static final int CMD_REGISTER = 1;
  private static final int CMD_COMMIT_AND_FETCH = 2;
  private static final int ENOTCONN = 107;
  private static final int ECANCELED = 125;
  /** struct fuse_uring_req_header: in/out header 128, op header 128, ent_in_out 32. */
  private static final int HEADERS = 288;
  private static final int OP_IN = 128;
  private static final int ENT_IN_OUT = 256;
  /** Entries a queue registers: the kernel may hand over this many requests at once. */
  static final int DEPTH = 4;

  private static final com.kenai.jffi.MemoryIO M = com.kenai.jffi.MemoryIO.getInstance();

  private Ring() {}

  /** Why this host cannot serve FUSE over io_uring, or null if it can. */
  static String unavailable() {
    String p = "/sys/module/fuse/parameters/enable_uring";
    // one open and read: Files.exists and readString were a tenth of a millisecond per mount
    byte[] b = new byte[4];
    int n;
    try (java.io.FileInputStream in = new java.io.FileInputStream(p)) {
      n = in.read(b);
    } catch (IOException e) {
      if (!new java.io.File(p).exists()) {
        return "this kernel has no FUSE over io_uring (Linux 6.14+ with CONFIG_FUSE_IO_URING)";
      }
      return "cannot read " + p + ": " + e.getMessage();
    }
    if (n < 1 || b[0] != 'Y') {
      return "the fuse module's enable_uring is off (as root: echo Y > " + p + ")";
    }
    String probe = probed;
    if (probe == null) {
      try {
        new Uring(2).close();
        probe = "";
      } catch (IOException e) {
        probe = e.getMessage(); // io_uring_disabled, a seccomp filter, no memory
      }
      probed = probe;
    }
    return probe.isEmpty() ? null : probe;
  }

  /**
   * Whether this process may make an io_uring ("" yes, else why not), found by the first
   * mount that asks: a daemon's later mounts skip the probe. Only the module parameter is
   * read each time (an administrator may turn it on or off while strata runs).
   */
  private static volatile String probed;

  /** How many queues the kernel makes: one per possible CPU (read once: it does not change). */
  static int queues() {
    int n = possible;
    if (n == 0) {
      possible = n = possibleCpus();
    }
    return n;
  }

  private static volatile int possible;

  private static int possibleCpus() {
    try {
      String s = Files.readString(Path.of("/sys/devices/system/cpu/possible")).trim();
      int max = 0;
      for (String part : s.split(",")) {
        String[] r = part.split("-");
        max = Math.max(max, Integer.parseInt(r[r.length - 1]));
      }
      return max + 1;
    } catch (IOException | RuntimeException e) {
      return Runtime.getRuntime().availableProcessors();
    }
  }

  /** One io_uring with 128-byte SQEs: setup, mapping, SQE slots, submit and wait, CQEs. */
  static final class Uring implements AutoCloseable {
    final int fd;
    private final long ring;
    private final long ringSize;
    private final long sqes;
    private final long sqesSize;
    private final long sqTail;
    private final long sqMask;
    private final long sqArray;
    private final long cqHead;
    private final long cqTail;
    private final long cqMask;
    private final long cqes;
    private int pending;

    Uring(int entries) throws IOException {
      long params = M.allocateMemory(120, true);
      try {
        M.putInt(params + 8, SETUP_SQE128);
        long fd = Device.LIBC.syscall(SETUP, entries, params, 0, 0, 0, 0);
        if (fd < 0) {
          throw new IOException("io_uring_setup: " + Posix.strerror(Device.errno()));
        }
        this.fd = (int) fd;
        int sqEntries = M.getInt(params);
        int cqEntries = M.getInt(params + 4);
        int features = M.getInt(params + 20);
        if ((features & FEAT_SINGLE_MMAP) == 0) {
          Device.LIBC.close(this.fd);
          throw new IOException("io_uring without IORING_FEAT_SINGLE_MMAP (Linux 5.4+)");
        }
        int sqArrayOff = M.getInt(params + 40 + 24);
        int cqesOff = M.getInt(params + 80 + 20);
        ringSize = Math.max(sqArrayOff + 4L * sqEntries, cqesOff + (long) CQE * cqEntries);
        ring = map(ringSize, OFF_SQ_RING);
        sqesSize = (long) SQE * sqEntries;
        try {
          sqes = map(sqesSize, OFF_SQES);
        } catch (IOException e) {
          Device.LIBC.syscall(MUNMAP, ring, ringSize, 0, 0, 0, 0);
          throw e;
        }
        sqTail = ring + M.getInt(params + 40 + 4);
        sqMask = M.getInt(ring + M.getInt(params + 40 + 8)) & 0xffffffffL;
        sqArray = ring + sqArrayOff;
        cqHead = ring + M.getInt(params + 80);
        cqTail = ring + M.getInt(params + 80 + 4);
        cqMask = M.getInt(ring + M.getInt(params + 80 + 8)) & 0xffffffffL;
        cqes = ring + cqesOff;
      } finally {
        M.freeMemory(params);
      }
    }

    private long map(long size, long offset) throws IOException {
      long a = Device.LIBC.syscall(MMAP, 0, size, 3 /* PROT_READ|PROT_WRITE */,
          0x01 | 0x8000 /* MAP_SHARED|MAP_POPULATE */, fd, offset);
      if (a == -1) {
        int e = Device.errno();
        Device.LIBC.close(fd);
        throw new IOException("mmap of an io_uring (" + size + " bytes at " + offset + "): "
            + Posix.strerror(e));
      }
      return a;
    }

    /** Queues a FUSE ring command; submitted by the next {@link #submitAndWait}. */
    void fuseCommand(int fuseFd, int op, long iovecs, long commitId, int qid, long userData) {
      int tail = M.getInt(sqTail);
      long idx = tail & sqMask;
      long sqe = sqes + idx * SQE;
      M.setMemory(sqe, SQE, (byte) 0);
      M.putByte(sqe, (byte) OP_URING_CMD);
      M.putInt(sqe + 4, fuseFd);
      M.putInt(sqe + 8, op);
      if (op == CMD_REGISTER) {
        M.putLong(sqe + 16, iovecs);
        M.putInt(sqe + 24, 2);
      }
      M.putLong(sqe + 32, userData);
      M.putLong(sqe + 48 + 8, commitId); // struct fuse_uring_cmd_req in the SQE's cmd area
      M.putShort(sqe + 48 + 16, (short) qid);
      M.putInt(sqArray + 4 * idx, (int) idx);
      VarHandle.releaseFence();
      M.putInt(sqTail, tail + 1);
      pending++;
    }

    /** Submits what is queued and waits for at least one completion; -errno on failure. */
    int submitAndWait() {
      while (true) {
        long r = Device.LIBC.syscall(ENTER, fd, pending, 1, ENTER_GETEVENTS, 0, 0);
        if (r >= 0) {
          pending -= (int) r;
          return 0;
        }
        int e = Device.errno();
        if (e != Posix.EINTR) {
          return -e;
        }
      }
    }

    /** Takes the completions there are: user data and result, in {@code out} pairs; count. */
    int reap(long[] out) {
      int head = M.getInt(cqHead);
      int tail = M.getInt(cqTail);
      VarHandle.acquireFence();
      int n = 0;
      while (head != tail && n < out.length / 2) {
        long cqe = cqes + (head & cqMask) * CQE;
        out[2 * n] = M.getLong(cqe);
        out[2 * n + 1] = M.getInt(cqe + 8);
        n++;
        head++;
      }
      VarHandle.releaseFence();
      M.putInt(cqHead, head);
      return n;
    }

    @Override
    public void close() {
      Device.LIBC.syscall(MUNMAP, sqes, sqesSize, 0, 0, 0, 0);
      Device.LIBC.syscall(MUNMAP, ring, ringSize, 0, 0, 0, 0);
      Device.LIBC.close(fd);
    }
  }

  /**
   * One queue: its io_uring, {@link #DEPTH} registered entries and the thread that serves
   * them until the kernel ends the connection.
   */
  static final class Queue {
    private final int fuseFd;
    private final int qid;
    private final Dispatcher dispatcher;
    private final java.util.function.Consumer<String> log;
    private final long[] headers = new long[DEPTH];
    private final long[] payloads = new long[DEPTH];
    private final long[] iovecs = new long[DEPTH];
    private final Reply[] replies = new Reply[DEPTH];
    private final Pointer[] outMems = new Pointer[DEPTH];
    private final long inAddr;
    private final ByteBuffer inBuf;
    private final Pointer inMem;
    private final Request req;
    private final java.util.concurrent.atomic.AtomicLong served;
    /** Made before INIT is answered: once the kernel is told yes, it waits for every queue. */
    private final Uring u;

    Queue(int fuseFd, int qid, Dispatcher dispatcher, java.util.function.Consumer<String> log,
        java.util.concurrent.atomic.AtomicLong served) throws IOException {
      this.u = new Uring(2 * DEPTH);
      this.served = served;
      this.fuseFd = fuseFd;
      this.qid = qid;
      this.dispatcher = dispatcher;
      this.log = log;
      for (int i = 0; i < DEPTH; i++) {
        headers[i] = M.allocateMemory(HEADERS, true);
        // 16 bytes before the payload take the reply's out header, so that the reply is
        // built in place and only its header is copied
        long base = M.allocateMemory(Fuse.OUT_HEADER + Fuse.BUFFER, false);
        payloads[i] = base + Fuse.OUT_HEADER;
        ByteBuffer b = M.newDirectByteBuffer(base, Fuse.OUT_HEADER + Fuse.BUFFER);
        replies[i] = new Reply(b);
        outMems[i] = Pointer.wrap(Device.RUNTIME, b);
        iovecs[i] = M.allocateMemory(32, true);
        M.putLong(iovecs[i], headers[i]);
        M.putLong(iovecs[i] + 8, HEADERS);
        M.putLong(iovecs[i] + 16, payloads[i]);
        M.putLong(iovecs[i] + 24, Fuse.BUFFER);
      }
      inAddr = M.allocateMemory(Fuse.BUFFER + Fuse.IN_HEADER + OP_IN, false);
      inBuf = M.newDirectByteBuffer(inAddr, Fuse.BUFFER + Fuse.IN_HEADER + OP_IN);
      inMem = Pointer.wrap(Device.RUNTIME, inBuf);
      req = new Request(inBuf);
    }

    /** Frees a queue that will not serve (INIT was answered without the ring). */
    void discard() {
      u.close();
      free();
    }

    private void free() {
      for (int i = 0; i < DEPTH; i++) {
        M.freeMemory(headers[i]);
        M.freeMemory(payloads[i] - Fuse.OUT_HEADER);
        M.freeMemory(iovecs[i]);
      }
      M.freeMemory(inAddr);
    }

    /**
     * Keeps the calling thread on the queue's CPU, as libfuse does: the kernel hands this
     * queue the requests of callers on that CPU, so the caller's wake-up of this thread stays
     * on one CPU. Measured on this 2-vCPU VM: a thread woken on the other, idle vCPU costs
     * tens of microseconds a request. A refusal (a cpuset without that CPU) leaves it free.
     */
    private void pin() {
      int words = qid / 64 + 1;
      long mask = M.allocateMemory(8L * words, true);
      try {
        M.putLong(mask + 8L * (qid / 64), 1L << (qid % 64));
        Device.LIBC.syscall(SCHED_SETAFFINITY, 0, 8L * words, mask, 0, 0, 0);
      } finally {
        M.freeMemory(mask);
      }
    }

    /** Registers the queue's entries and serves until the connection ends. */
    void serve() {
      pin();
      int live = 0;
      try (u) {
        boolean[] registering = new boolean[DEPTH];
        for (int i = 0; i < DEPTH; i++) {
          u.fuseCommand(fuseFd, CMD_REGISTER, iovecs[i], 0, qid, i);
          registering[i] = true;
        }
        live = DEPTH;
        long[] done = new long[2 * DEPTH];
        while (live > 0) {
          int r = u.submitAndWait();
          if (r < 0) {
            log.accept("io_uring queue " + qid + ": " + Posix.strerror(-r));
            return;
          }
          int n = u.reap(done);
          for (int k = 0; k < n; k++) {
            int e = (int) done[2 * k];
            int res = (int) done[2 * k + 1];
            if (res == 0) {
              registering[e] = false;
              long commit = answer(e);
              u.fuseCommand(fuseFd, CMD_COMMIT_AND_FETCH, 0, commit, qid, e);
            } else if (res == -ENOTCONN || res == -ECANCELED || res == -Posix.ENODEV) {
              live--; // the connection is ending
            } else if (!registering[e]) {
              // the kernel did not take the reply (its request was aborted meanwhile): the
              // entry is lost to it, so its buffers come back as a new entry
              u.fuseCommand(fuseFd, CMD_REGISTER, iovecs[e], 0, qid, e);
              registering[e] = true;
            } else {
              // the kernel refused the entry and serves /dev/fuse instead
              live--;
              log.accept("io_uring queue " + qid + " refused: " + Posix.strerror(-res)
                  + "; serving /dev/fuse");
            }
          }
        }
      } finally {
        // Buffers the kernel may still write into (the loop ended with entries it holds)
        // stay allocated: a leak of a few megabytes beats memory written after its free.
        if (live == 0) {
          free();
        }
      }
    }

    /**
     * Answers the request in entry {@code e}: its frame put back together (in header, op
     * header, payload) for the dispatcher, the reply built in the entry's payload and its
     * header copied to the entry's header area. Returns the commit id.
     */
    private long answer(int e) {
      long h = headers[e];
      long commit = M.getLong(h + ENT_IN_OUT + 8);
      int payload = M.getInt(h + ENT_IN_OUT + 16);
      int total = M.getInt(h); // fuse_in_header.len: header, op header and payload
      int opIn = total - Fuse.IN_HEADER - payload;
      if (opIn < 0 || opIn > OP_IN || payload < 0 || payload > Fuse.BUFFER) {
        opIn = -1; // answered as a bad frame below
      }
      M.copyMemory(h, inAddr, Fuse.IN_HEADER);
      int n;
      if (opIn < 0) {
        n = Fuse.IN_HEADER;
        M.putInt(inAddr, n + 1); // a header that lies: EINVAL
      } else {
        M.copyMemory(h + OP_IN, inAddr + Fuse.IN_HEADER, opIn);
        M.copyMemory(payloads[e], inAddr + Fuse.IN_HEADER + opIn, payload);
        n = total;
      }
      Reply rep = replies[e];
      int len = dispatcher.serve(req, n, rep, inMem, outMems[e]);
      long base = payloads[e] - Fuse.OUT_HEADER;
      if (len < Fuse.OUT_HEADER) {
        // nothing to answer (not a request the kernel sends here): it still needs a reply
        M.putInt(base, Fuse.OUT_HEADER);
        M.putInt(base + 4, -Posix.EIO);
        M.putLong(base + 8, commit);
        len = Fuse.OUT_HEADER;
      }
      M.copyMemory(base, h, Fuse.OUT_HEADER);
      M.putInt(h + ENT_IN_OUT + 16, len - Fuse.OUT_HEADER);
      served.incrementAndGet();
      return commit;
    }
  }
}
