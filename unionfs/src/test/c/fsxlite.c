/*
 * fsxlite: a file exerciser in the manner of fsx (xfstests), written for strata's tests. It
 * runs a seeded random sequence of operations on one file and checks every byte it reads
 * against a model kept in memory: pread, pwrite, reads and writes through MAP_SHARED
 * mappings, ftruncate, fallocate (punch hole, zero range, extend), copy_file_range within the
 * file, O_DIRECT reads and writes (aligned), fsync, and closing and reopening the file (also
 * read-only). What it adds for a union filesystem: a reader opened before the first write (so
 * before the copy-up) is held for the whole run and read from time to time; -H says what it
 * must see: "new" (what the model holds, as kernel overlayfs gives), "old" (the file as it was
 * before the run, as a FUSE passthrough reader of the lower file gives), or "none".
 *
 * Usage: fsxlite [-N OPS] [-S SEED] [-H new|old|none] [-D] FILE
 *   -D: no O_DIRECT operations
 * Exit: 0 when every read matched; 1 at the first mismatch (with the last operations); 2 usage
 * or a failed system call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAXFILE (1 << 20)
#define PAGE 4096
#define LOGN 32

static const char *path;
static unsigned char *model, *original, *buf;
static long size, origsize;
static int fd = -1, held = -1, writable;
static char logbuf[LOGN][128];
static long opno;
static uint64_t rng;

static uint64_t next(void) { /* xorshift64* */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 2685821657736338717ULL;
}

static long pick(long n) { return n <= 0 ? 0 : (long)(next() % (uint64_t)n); }

static void note(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(logbuf[opno % LOGN], sizeof logbuf[0], fmt, ap);
  va_end(ap);
}

static void dump(void) {
  long from = opno >= LOGN ? opno - LOGN + 1 : 0;
  for (long i = from; i <= opno; i++) fprintf(stderr, "  op %ld: %s\n", i, logbuf[i % LOGN]);
}

static void fail(const char *what) {
  fprintf(stderr, "fsxlite: %s at op %ld: %s\n", path, opno, what);
  dump();
  exit(1);
}

static void sysfail(const char *call) {
  fprintf(stderr, "fsxlite: %s at op %ld: %s: %s\n", path, opno, call, strerror(errno));
  dump();
  exit(2);
}

static void compare(const unsigned char *got, const unsigned char *want, long off, long n,
                    const char *how) {
  for (long i = 0; i < n; i++) {
    if (got[i] != want[i]) {
      char msg[160];
      snprintf(msg, sizeof msg, "%s: BAD DATA at offset %ld: got 0x%02x, expected 0x%02x", how,
               off + i, got[i], want[i]);
      fail(msg);
    }
  }
}

static void reopen(int flags) {
  if (fd >= 0) close(fd);
  fd = open(path, flags);
  if (fd < 0) sysfail("open");
  writable = (flags & O_ACCMODE) != O_RDONLY;
}

static void ensure_writable(void) {
  if (!writable) reopen(O_RDWR);
}

static void op_read(void) {
  if (size == 0) return;
  long off = pick(size), n = 1 + pick(size - off < 65536 ? size - off : 65536);
  note("read %ld+%ld", off, n);
  ssize_t r = pread(fd, buf, (size_t)n, off);
  if (r != n) {
    if (r < 0) sysfail("pread");
    fail("short read");
  }
  compare(buf, model + off, off, n, "read");
}

static void op_write(void) {
  long off = pick(MAXFILE - 1), n = 1 + pick(65536);
  if (off + n > MAXFILE) n = MAXFILE - off;
  note("write %ld+%ld (size %ld)", off, n, size);
  ensure_writable();
  for (long i = 0; i < n; i++) buf[i] = (unsigned char)(next() >> 56);
  if (pwrite(fd, buf, (size_t)n, off) != n) sysfail("pwrite");
  if (off > size) memset(model + size, 0, (size_t)(off - size));
  memcpy(model + off, buf, (size_t)n);
  if (off + n > size) size = off + n;
}

static void op_mapread(void) {
  if (size == 0) return;
  long off = pick(size), n = 1 + pick(size - off < 65536 ? size - off : 65536);
  long start = off & ~(long)(PAGE - 1), len = off + n - start;
  note("mapread %ld+%ld", off, n);
  unsigned char *p = mmap(NULL, (size_t)len, PROT_READ, MAP_SHARED, fd, start);
  if (p == MAP_FAILED) sysfail("mmap read");
  compare(p + (off - start), model + off, off, n, "mapread");
  munmap(p, (size_t)len);
}

static void op_mapwrite(void) {
  if (size == 0) return;
  long off = pick(size), n = 1 + pick(size - off < 65536 ? size - off : 65536);
  long start = off & ~(long)(PAGE - 1), len = off + n - start;
  note("mapwrite %ld+%ld", off, n);
  ensure_writable();
  unsigned char *p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, start);
  if (p == MAP_FAILED) sysfail("mmap write");
  for (long i = 0; i < n; i++) {
    unsigned char b = (unsigned char)(next() >> 56);
    p[off - start + i] = b;
    model[off + i] = b;
  }
  if (msync(p, (size_t)len, MS_SYNC) < 0) sysfail("msync");
  munmap(p, (size_t)len);
}

static void op_truncate(void) {
  long to = pick(MAXFILE);
  note("truncate %ld -> %ld", size, to);
  ensure_writable();
  if (ftruncate(fd, to) < 0) sysfail("ftruncate");
  if (to > size) memset(model + size, 0, (size_t)(to - size));
  size = to;
}

static void op_fallocate(void) {
  int kind = (int)pick(3);
  long off = pick(MAXFILE - 1), n = 1 + pick(131072);
  if (off + n > MAXFILE) n = MAXFILE - off;
  ensure_writable();
  if (kind == 0) { /* punch a hole inside the file */
    if (size == 0) return;
    off = pick(size);
    if (off + n > size) n = size - off;
    note("punch %ld+%ld", off, n);
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, n) < 0) {
      if (errno == EOPNOTSUPP) return;
      sysfail("fallocate punch");
    }
    memset(model + off, 0, (size_t)n);
  } else if (kind == 1) { /* zero a range, keeping the size */
    if (size == 0) return;
    off = pick(size);
    if (off + n > size) n = size - off;
    note("zero %ld+%ld", off, n);
    if (fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, n) < 0) {
      if (errno == EOPNOTSUPP) return;
      sysfail("fallocate zero");
    }
    memset(model + off, 0, (size_t)n);
  } else { /* allocate, growing the file */
    note("fallocate %ld+%ld (size %ld)", off, n, size);
    if (fallocate(fd, 0, off, n) < 0) sysfail("fallocate");
    if (off + n > size) {
      memset(model + size, 0, (size_t)(off + n - size));
      size = off + n;
    }
  }
}

static void op_copy_range(void) {
  if (size < 2) return;
  long n = 1 + pick(size / 2 < 65536 ? size / 2 : 65536);
  long from = pick(size - n), to = pick(MAXFILE - n);
  if ((from <= to && to < from + n) || (to <= from && from < to + n)) return; /* no overlap */
  note("copy_file_range %ld -> %ld +%ld", from, to, n);
  ensure_writable();
  loff_t a = from, b = to;
  long done = 0;
  while (done < n) {
    ssize_t r = copy_file_range(fd, &a, fd, &b, (size_t)(n - done), 0);
    if (r < 0) {
      if (errno == EXDEV || errno == EOPNOTSUPP || errno == EINVAL) return;
      sysfail("copy_file_range");
    }
    if (r == 0) break;
    done += r;
  }
  if (to > size) memset(model + size, 0, (size_t)(to - size));
  memmove(model + to, model + from, (size_t)done);
  if (to + done > size) size = to + done;
}

static void op_direct(void) {
  int dfd = open(path, O_RDWR | O_DIRECT);
  if (dfd < 0) {
    if (errno == EINVAL) return; /* no O_DIRECT here */
    sysfail("open O_DIRECT");
  }
  static unsigned char *abuf;
  if (!abuf && posix_memalign((void **)&abuf, PAGE, 65536)) sysfail("posix_memalign");
  long blocks = size / PAGE;
  if (pick(2) == 0 && blocks > 0) {
    long off = pick(blocks) * PAGE, n = (1 + pick(blocks - off / PAGE < 16 ? blocks - off / PAGE : 16)) * PAGE;
    note("direct read %ld+%ld", off, n);
    if (pread(dfd, abuf, (size_t)n, off) != n) sysfail("pread O_DIRECT");
    compare(abuf, model + off, off, n, "direct read");
  } else {
    long off = pick(MAXFILE / PAGE - 16) * PAGE, n = (1 + pick(16)) * PAGE;
    note("direct write %ld+%ld (size %ld)", off, n, size);
    for (long i = 0; i < n; i++) abuf[i] = (unsigned char)(next() >> 56);
    if (pwrite(dfd, abuf, (size_t)n, off) != n) sysfail("pwrite O_DIRECT");
    if (off > size) memset(model + size, 0, (size_t)(off - size));
    memcpy(model + off, abuf, (size_t)n);
    if (off + n > size) size = off + n;
  }
  close(dfd);
}

static void check_size(void) {
  struct stat st;
  if (fstat(fd, &st) < 0) sysfail("fstat");
  if (st.st_size != size) {
    char msg[96];
    snprintf(msg, sizeof msg, "size %ld, expected %ld", (long)st.st_size, size);
    fail(msg);
  }
}

/* A fresh read-only open must see what was written: a stale page cache shows here. */
static void check_new_open(void) {
  int f = open(path, O_RDONLY);
  if (f < 0) sysfail("open read-only");
  long n = size < MAXFILE ? size : MAXFILE;
  note("fresh open reads %ld", n);
  if (pread(f, buf, (size_t)n, 0) != n) sysfail("pread fresh");
  compare(buf, model, 0, n, "fresh open");
  close(f);
}

static void check_held(const char *mode) {
  if (held < 0 || strcmp(mode, "none") == 0) return;
  int old = strcmp(mode, "old") == 0;
  long n = old ? origsize : size;
  if (n == 0) return;
  long off = pick(n), len = 1 + pick(n - off < 65536 ? n - off : 65536);
  note("held reader %ld+%ld (%s)", off, len, mode);
  ssize_t r = pread(held, buf, (size_t)len, off);
  if (r != len) fail("short read through the held reader");
  compare(buf, (old ? original : model) + off, off, len, "held reader");
}

int main(int argc, char **argv) {
  long ops = 10000;
  const char *heldmode = "new";
  int direct = 1, c;
  rng = 1;
  while ((c = getopt(argc, argv, "N:S:H:D")) != -1) {
    if (c == 'N') ops = atol(optarg);
    else if (c == 'S') rng = strtoull(optarg, NULL, 10) * 2654435761ULL + 1;
    else if (c == 'H') heldmode = optarg;
    else if (c == 'D') direct = 0;
    else return 2;
  }
  if (optind >= argc) {
    fprintf(stderr, "usage: fsxlite [-N OPS] [-S SEED] [-H new|old|none] [-D] FILE\n");
    return 2;
  }
  path = argv[optind];
  model = calloc(MAXFILE + 65536, 1);
  original = calloc(MAXFILE + 65536, 1);
  buf = malloc(MAXFILE + 65536);
  if (!model || !original || !buf) sysfail("malloc");
  held = open(path, O_RDONLY); /* before any write: the file is still below */
  if (held < 0) sysfail("open the held reader");
  origsize = pread(held, original, MAXFILE, 0);
  if (origsize < 0) sysfail("read the original");
  memcpy(model, original, (size_t)origsize);
  size = origsize;
  reopen(O_RDONLY);
  for (opno = 0; opno < ops; opno++) {
    switch (pick(16)) {
      case 0: case 1: case 2: op_read(); break;
      case 3: case 4: case 5: op_write(); break;
      case 6: op_mapread(); break;
      case 7: op_mapwrite(); break;
      case 8: op_truncate(); break;
      case 9: op_fallocate(); break;
      case 10: op_copy_range(); break;
      case 11: if (direct) op_direct(); break;
      case 12: note("fsync"); if (writable && fsync(fd) < 0) sysfail("fsync"); break;
      case 13: note("reopen"); reopen(pick(2) ? O_RDWR : O_RDONLY); break;
      case 14: check_held(heldmode); break;
      case 15: check_new_open(); break;
    }
    if (opno % 64 == 0) check_size();
  }
  check_new_open();
  check_held(heldmode);
  printf("fsxlite: %ld operations, all reads matched\n", ops);
  return 0;
}
