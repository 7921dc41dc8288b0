/*
 * fuse-echo: the floor under a FUSE request on this host. A FUSE server in C that keeps
 * nothing but a fixed tree and answers from constants, over /dev/fuse or over FUSE io_uring
 * (Linux 6.14+, the fuse module's enable_uring on), so that what a request costs it is what
 * the kernel and the scheduler cost. scripts/bench-floor.sh sets strata's figures beside it.
 *
 *   fuse-echo MOUNTPOINT dev|uring TIMEOUT     (root; serves in the foreground until unmounted)
 *   fuse-echo probe xattr|getattr DIR FILES SECONDS   (the caller: what a request costs)
 *
 * The tree: the root holds the directory "d", which holds the regular files f0 .. f999999 (100
 * bytes each, no extended attributes). TIMEOUT is the entry and attribute timeout in seconds
 * (0: every stat asks). The io_uring side follows strata's Ring.java (one queue per possible
 * CPU, each thread pinned to its CPU as libfuse does, DEPTH entries per queue).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { LOOKUP = 1, FORGET = 2, GETATTR = 3, OPEN = 14, READ = 15, STATFS = 17, RELEASE = 18,
       GETXATTR = 22, LISTXATTR = 23, FLUSH = 25, INIT = 26, OPENDIR = 27, READDIR = 28,
       RELEASEDIR = 29, ACCESS = 34, INTERRUPT = 36, DESTROY = 38, BATCH_FORGET = 42,
       READDIRPLUS = 44 };

#define BUF (1 << 20)
#define IN_HEADER 40
#define OUT_HEADER 16
#define FILES 1000000
#define FILE_BASE 1000

static uint64_t timeout;
static int fuse_fd;

static void put32(char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(char *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* struct fuse_attr (88 bytes) of node n */
static void attr(char *a, uint64_t n) {
  memset(a, 0, 88);
  int dir = n < FILE_BASE;
  put64(a, n);                      /* ino */
  put64(a + 8, dir ? 4096 : 100);   /* size */
  put64(a + 16, dir ? 8 : 1);       /* blocks */
  put32(a + 60, dir ? 040755 : 0100644); /* mode */
  put32(a + 64, dir ? 2 : 1);       /* nlink */
  put32(a + 80, 4096);              /* blksize */
}

/*
 * Answers one request (a /dev/fuse frame: in header, then its arguments) into out (out header
 * and body). Returns the reply's length, 0 for a request that gets none, -1 at DESTROY.
 */
static int answer(const char *in, int n, char *out) {
  uint32_t op = get32(in + 4);
  uint64_t node = get64(in + 16);
  const char *arg = in + IN_HEADER;
  char *body = out + OUT_HEADER;
  int len = 0, err = 0;
  switch (op) {
    case LOOKUP: {
      const char *name = arg;
      uint64_t child = 0;
      if (node == 1 && strcmp(name, "d") == 0) {
        child = 2;
      } else if (node == 2 && name[0] == 'f' && name[1] >= '0' && name[1] <= '9') {
        char *end;
        unsigned long i = strtoul(name + 1, &end, 10);
        if (*end == 0 && i < FILES) child = FILE_BASE + i;
      }
      if (!child) { err = -ENOENT; break; }
      memset(body, 0, 40);
      put64(body, child);
      put64(body + 16, timeout);
      put64(body + 24, timeout);
      attr(body + 40, child);
      len = 128;
      break;
    }
    case GETATTR:
      memset(body, 0, 16);
      put64(body, timeout);
      attr(body + 16, node);
      len = 104;
      break;
    case GETXATTR:
    case LISTXATTR:
      if (op == LISTXATTR && get32(arg) == 0) { memset(body, 0, 8); len = 8; break; }
      err = op == GETXATTR ? -ENODATA : 0;
      break;
    case OPEN:
    case OPENDIR:
      memset(body, 0, 16);
      len = 16;
      break;
    case READ: {
      uint64_t off = get64(arg + 8);
      uint32_t size = get32(arg + 16);
      uint64_t left = node >= FILE_BASE && off < 100 ? 100 - off : 0;
      len = (int) (size < left ? size : left);
      memset(body, 'x', len);
      break;
    }
    case READDIR:
    case READDIRPLUS:
    case RELEASE:
    case RELEASEDIR:
      break;
    case STATFS:
      memset(body, 0, 80);
      put32(body + 40, 4096); /* bsize */
      put32(body + 44, 255);  /* namelen */
      len = 80;
      break;
    case FLUSH:
    case ACCESS:
      err = -ENOSYS;
      break;
    case FORGET:
    case BATCH_FORGET:
    case INTERRUPT:
      return 0;
    case DESTROY:
      return -1;
    default:
      err = -ENOSYS;
  }
  (void) n;
  put32(out, OUT_HEADER + (err ? 0 : len));
  put32(out + 4, (uint32_t) err);
  put64(out + 8, get64(in + 8));
  return OUT_HEADER + (err ? 0 : len);
}

/* ------------------------------------------------------------------ FUSE over io_uring */

#define SQE 128
#define CQE 16
#define DEPTH 4
#define HEADERS 288
#define OP_IN 128
#define ENT_IN_OUT 256
#define CMD_REGISTER 1
#define CMD_COMMIT_AND_FETCH 2
#define OP_URING_CMD 46

struct ring {
  int fd;
  char *sq, *sqes;
  uint32_t *sq_tail, sq_mask, *sq_array, *cq_head, *cq_tail, cq_mask;
  char *cqes;
  unsigned pending;
};

static int ring_setup(struct ring *r, unsigned entries) {
  uint32_t p[30];
  memset(p, 0, sizeof p);
  p[2] = 1 << 10; /* IORING_SETUP_SQE128 */
  r->fd = (int) syscall(425, entries, p);
  if (r->fd < 0) return -1;
  uint32_t sq_entries = p[0], cq_entries = p[1];
  uint32_t *sq_off = p + 10, *cq_off = p + 20;
  size_t size = sq_off[6] + 4 * sq_entries;
  size_t cq_size = cq_off[5] + CQE * cq_entries;
  if (cq_size > size) size = cq_size;
  r->sq = mmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, 0);
  r->sqes = mmap(0, SQE * sq_entries, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                 0x10000000);
  if (r->sq == MAP_FAILED || r->sqes == MAP_FAILED) return -1;
  r->sq_tail = (uint32_t *) (r->sq + sq_off[1]);
  r->sq_mask = *(uint32_t *) (r->sq + sq_off[2]);
  r->sq_array = (uint32_t *) (r->sq + sq_off[6]);
  r->cq_head = (uint32_t *) (r->sq + cq_off[0]);
  r->cq_tail = (uint32_t *) (r->sq + cq_off[1]);
  r->cq_mask = *(uint32_t *) (r->sq + cq_off[2]);
  r->cqes = r->sq + cq_off[5];
  r->pending = 0;
  return 0;
}

static void ring_cmd(struct ring *r, int op, void *iov, uint64_t commit, int qid, uint64_t data) {
  uint32_t tail = *r->sq_tail;
  uint32_t idx = tail & r->sq_mask;
  char *s = r->sqes + (size_t) idx * SQE;
  memset(s, 0, SQE);
  s[0] = OP_URING_CMD;
  put32(s + 4, fuse_fd);
  put32(s + 8, op);
  if (op == CMD_REGISTER) { put64(s + 16, (uint64_t) iov); put32(s + 24, 2); }
  put64(s + 32, data);
  put64(s + 48 + 8, commit);
  uint16_t q = qid;
  memcpy(s + 48 + 16, &q, 2);
  r->sq_array[idx] = idx;
  __atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
  r->pending++;
}

struct queue {
  int qid;
  struct ring r;
  char *headers[DEPTH], *payloads[DEPTH];
  struct { void *base; size_t len; } iov[DEPTH][2];
  char in[BUF + IN_HEADER + OP_IN], out[BUF + OUT_HEADER];
};

static void *serve_queue(void *arg) {
  struct queue *q = arg;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(q->qid, &set);
  sched_setaffinity(0, sizeof set, &set);
  for (int i = 0; i < DEPTH; i++) ring_cmd(&q->r, CMD_REGISTER, q->iov[i], 0, q->qid, i);
  int live = DEPTH;
  while (live > 0) {
    int rc = (int) syscall(426, q->r.fd, q->r.pending, 1, 1 /* GETEVENTS */, 0, 0);
    if (rc < 0) { if (errno == EINTR) continue; perror("io_uring_enter"); return 0; }
    q->r.pending -= rc;
    uint32_t head = *q->r.cq_head, tail = __atomic_load_n(q->r.cq_tail, __ATOMIC_ACQUIRE);
    for (; head != tail; head++) {
      char *c = q->r.cqes + (size_t) (head & q->r.cq_mask) * CQE;
      int e = (int) get64(c);
      int res = (int) get32(c + 8);
      if (res != 0) { live--; continue; }
      char *h = q->headers[e];
      uint64_t commit = get64(h + ENT_IN_OUT + 8);
      uint32_t payload = get32(h + ENT_IN_OUT + 16);
      uint32_t total = get32(h);
      uint32_t op_in = total - IN_HEADER - payload;
      memcpy(q->in, h, IN_HEADER);
      memcpy(q->in + IN_HEADER, h + OP_IN, op_in);
      memcpy(q->in + IN_HEADER + op_in, q->payloads[e], payload);
      int len = answer(q->in, total, q->out);
      if (len <= 0) { /* nothing the ring carries goes unanswered: an error for safety */
        put32(q->out, OUT_HEADER); put32(q->out + 4, (uint32_t) -EIO);
        put64(q->out + 8, commit); len = OUT_HEADER;
      }
      memcpy(h, q->out, OUT_HEADER);
      memcpy(q->payloads[e], q->out + OUT_HEADER, len - OUT_HEADER);
      put32(h + ENT_IN_OUT + 16, len - OUT_HEADER);
      ring_cmd(&q->r, CMD_COMMIT_AND_FETCH, 0, commit, q->qid, e);
    }
    __atomic_store_n(q->r.cq_head, head, __ATOMIC_RELEASE);
  }
  return 0;
}

/* ------------------------------------------------------------------ /dev/fuse */

static void *serve_dev(void *arg) {
  (void) arg;
  char *in = malloc(BUF + 4096), *out = malloc(BUF + 4096);
  for (;;) {
    ssize_t n = read(fuse_fd, in, BUF + 4096);
    if (n < 0) {
      if (errno == EINTR || errno == ENOENT || errno == EAGAIN) continue;
      if (errno != ENODEV) perror("read /dev/fuse");
      exit(0);
    }
    int len = answer(in, (int) n, out);
    if (len < 0) exit(0);
    if (len > 0 && write(fuse_fd, out, len) < 0 && errno != ENOENT) perror("write /dev/fuse");
  }
}

/* ------------------------------------------------------------------ the caller */

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static long migrations(void) {
  FILE *f = fopen("/proc/self/sched", "r");
  char line[256];
  long n = -1;
  while (f && fgets(line, sizeof line, f)) {
    if (strncmp(line, "se.nr_migrations", 16) == 0) n = atol(strchr(line, ':') + 1);
  }
  if (f) fclose(f);
  return n;
}

/*
 * xattr: asks DIR/d/f00000 .. f<FILES-1> for the label `security.selinux` (none has one:
 * ENODATA) over and over for SECONDS, as `ls -l` asks every file: FUSE caches no extended
 * attribute, so each is a GETXATTR round trip whatever the server. getattr: fstat of an open
 * file (a GETATTR round trip each where the mount's attribute timeout is 0). Prints
 * microseconds per call and how often the scheduler moved this process to another CPU.
 */
static int probe(int xattr, const char *dir, int files, double seconds) {
  char (*paths)[4096] = malloc((size_t) files * 4096);
  char v[256];
  for (int i = 0; i < files; i++) {
    snprintf(paths[i], 4096, "%s/d/f%05d", dir, i);
    if (lgetxattr(paths[i], "security.selinux", v, sizeof v) >= 0 || errno != ENODATA) {
      fprintf(stderr, "%s: expected no label (ENODATA), got %s\n", paths[i], strerror(errno));
      return 1;
    }
  }
  int fd = open(paths[0], O_RDONLY);
  struct stat st;
  long m0 = migrations();
  long calls = 0;
  double t0 = now(), end = t0 + seconds;
  while (now() < end) {
    if (xattr) {
      for (int i = 0; i < files; i++) lgetxattr(paths[i], "security.selinux", v, sizeof v);
      calls += files;
    } else {
      for (int i = 0; i < 1000; i++) fstat(fd, &st);
      calls += 1000;
    }
  }
  printf("%.2f %ld\n", (now() - t0) / calls * 1e6, migrations() - m0);
  close(fd);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 6 && strcmp(argv[1], "probe") == 0) {
    return probe(strcmp(argv[2], "xattr") == 0, argv[3], atoi(argv[4]), atof(argv[5]));
  }
  if (argc != 4 || (strcmp(argv[2], "dev") && strcmp(argv[2], "uring"))) {
    fprintf(stderr, "usage: fuse-echo MOUNTPOINT dev|uring TIMEOUT\n"
            "       fuse-echo probe xattr|getattr DIR FILES SECONDS\n");
    return 2;
  }
  int uring = strcmp(argv[2], "uring") == 0;
  timeout = strtoull(argv[3], 0, 10);
  fuse_fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fuse_fd < 0) { perror("/dev/fuse"); return 1; }
  char opts[256];
  snprintf(opts, sizeof opts, "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other,"
           "default_permissions", fuse_fd);
  if (mount("fuse-echo", argv[1], "fuse.echo", MS_NOSUID | MS_NODEV, opts)) {
    perror("mount"); return 1;
  }
  int nq = (int) sysconf(_SC_NPROCESSORS_CONF);
  struct queue **qs = calloc(nq, sizeof *qs);
  if (uring) {
    for (int q = 0; q < nq; q++) {
      qs[q] = calloc(1, sizeof **qs);
      qs[q]->qid = q;
      if (ring_setup(&qs[q]->r, 2 * DEPTH)) { perror("io_uring_setup"); return 1; }
      for (int i = 0; i < DEPTH; i++) {
        qs[q]->headers[i] = calloc(1, HEADERS);
        qs[q]->payloads[i] = malloc(BUF);
        qs[q]->iov[i][0].base = qs[q]->headers[i];
        qs[q]->iov[i][0].len = HEADERS;
        qs[q]->iov[i][1].base = qs[q]->payloads[i];
        qs[q]->iov[i][1].len = BUF;
      }
    }
  }
  /* INIT comes through /dev/fuse */
  char *in = malloc(BUF + 4096), out[OUT_HEADER + 64];
  ssize_t n = read(fuse_fd, in, BUF + 4096);
  if (n < IN_HEADER + 16 || get32(in + 4) != INIT) { fprintf(stderr, "no INIT\n"); return 1; }
  const char *a = in + IN_HEADER;
  uint64_t flags = get32(a + 12);
  if (flags & (1u << 30)) flags |= (uint64_t) get32(a + 16) << 32; /* FUSE_INIT_EXT */
  uint64_t want = (1u << 0) | (1u << 3) | (1u << 5) | (1u << 13) | (1u << 14) | (1u << 22)
      | (1u << 30); /* ASYNC_READ, ATOMIC_O_TRUNC, BIG_WRITES, READDIRPLUS, _AUTO, MAX_PAGES, EXT */
  if (uring) want |= 1ULL << 41; /* FUSE_OVER_IO_URING */
  uint64_t got = flags & want;
  if (uring && !(got & (1ULL << 41))) { fprintf(stderr, "the kernel offers no io_uring\n"); return 1; }
  memset(out, 0, sizeof out);
  char *b = out + OUT_HEADER;
  put32(b, 7);
  put32(b + 4, get32(a + 4) < 45 ? get32(a + 4) : 45);
  put32(b + 8, get32(a + 8));
  put32(b + 12, (uint32_t) got);
  uint16_t bg = 64, cong = 48, pages = 256;
  memcpy(b + 16, &bg, 2);
  memcpy(b + 18, &cong, 2);
  put32(b + 20, 1 << 20); /* max_write */
  put32(b + 24, 1);       /* time_gran */
  memcpy(b + 28, &pages, 2);
  put32(b + 32, (uint32_t) (got >> 32));
  put32(out, sizeof out);
  put64(out + 8, get64(in + 8));
  if (write(fuse_fd, out, sizeof out) < 0) { perror("INIT reply"); return 1; }
  pthread_t t;
  if (uring) {
    for (int q = 0; q < nq; q++) pthread_create(&t, 0, serve_queue, qs[q]);
  } else {
    pthread_create(&t, 0, serve_dev, 0); /* a second reader, as a multithreaded server has */
  }
  serve_dev(0); /* forgets, interrupts and (without the ring) requests */
  return 0;
}
