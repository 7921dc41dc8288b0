/*
 * strata-holder: keeps the /dev/fuse descriptors of the strata daemon's mounts from the moment
 * a daemon stops until the next one takes them, so that a daemon restart (an upgrade) does not
 * end them. The kernel keeps a FUSE connection while any process holds a descriptor of it:
 * while this one does, the mount's users wait (as on a hard NFS mount) instead of failing with
 * ENOTCONN, and the next daemon takes every descriptor back and serves on. If no daemon comes
 * within the grace period, this closes them all (the mounts then fail as they do without a
 * holder) and exits.
 *
 * Started by a daemon (io.strata.union.kernel.Holder) as `strata-holder SOCKET GRACE`: by one
 * that stops, or by a running one that keeps its mounts here as it serves them (and sends
 * their records again as they change), so that they outlive its crash too: the grace starts
 * when the last daemon's connection closes, whether it said goodbye or was killed.
 * It listens on SOCKET (a SOCK_SEQPACKET unix socket, 0600, serving its own user only: the
 * peer's credentials are checked) for messages of one packet each:
 *   'K' id(u64) + descriptors (SCM_RIGHTS, up to 250): keep them under id (replacing)
 *   'A' id(u64) + descriptors                        : more of id's, after the others
 *   'R' id(u64) + one descriptor                     : id's record (its second
 *                                                      descriptor) is this one from now on
 *   'D' id(u64)                                      : close and forget id
 *   'T'                                              : answered per entry by an 'E' id with
 *                                                      its first 250 descriptors and 'A'
 *                                                      packets with the rest, then 'Z'; once
 *                                                      that connection closes, this exits
 * The descriptors are the daemon's (the connection's, its clones, a memfd saying how to serve
 * it again); this program reads none of them. While no daemon is connected, an entry whose
 * first descriptor's connection is gone (unmounted, aborted: poll says POLLERR) is closed and
 * forgotten. It exits when it holds nothing and no daemon is connected. Linked statically,
 * like the client and the container helper.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_ENTRIES 4096
#define MAX_CONNS 8
#define MAX_FDS 250 /* a packet's; the kernel takes at most 253 (SCM_MAX_FD) */

struct entry {
  uint64_t id;
  int nfds, cap;
  int *fds;
};

static struct entry entries[MAX_ENTRIES];
static int nentries;
static int conns[MAX_CONNS];
static int taking[MAX_CONNS]; /* the connection took the entries (T) */
static int nconns;
static int handed;

static long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

static void close_all(int n, const int *fds) {
  for (int i = 0; i < n; i++) close(fds[i]);
}

static void drop_at(int i) {
  close_all(entries[i].nfds, entries[i].fds);
  free(entries[i].fds);
  entries[i] = entries[--nentries];
}

/* Adds n descriptors to entry e; false (and they are closed) when memory runs out. */
static int append(struct entry *e, const int *fds, int n) {
  if (e->nfds + n > e->cap) {
    int cap = (e->nfds + n) * 2;
    int *more = realloc(e->fds, sizeof(int) * (size_t)cap);
    if (!more) {
      close_all(n, fds);
      return 0;
    }
    e->fds = more;
    e->cap = cap;
  }
  memcpy(e->fds + e->nfds, fds, sizeof(int) * (size_t)n);
  e->nfds += n;
  return 1;
}

static int find(uint64_t id) {
  for (int i = 0; i < nentries; i++) {
    if (entries[i].id == id) return i;
  }
  return -1;
}

static void close_conn_at(int i) {
  close(conns[i]);
  conns[i] = conns[nconns - 1];
  taking[i] = taking[nconns - 1];
  nconns--;
}

/* One packet into buf, with the descriptors it carries. Returns its length, 0 at the end. */
static ssize_t receive(int s, unsigned char *buf, size_t cap, int *fds, int *nfds) {
  struct iovec iov = {buf, cap};
  union {
    char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    struct cmsghdr align;
  } u;
  struct msghdr m = {0};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = u.buf;
  m.msg_controllen = sizeof u.buf;
  *nfds = 0;
  ssize_t n = recvmsg(s, &m, MSG_CMSG_CLOEXEC);
  if (n <= 0) return n;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      for (int i = 0; i < k; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        if (*nfds < MAX_FDS) fds[(*nfds)++] = fd;
        else close(fd);
      }
    }
  }
  if (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    close_all(*nfds, fds);
    *nfds = 0;
    errno = EMSGSIZE;
    return -1;
  }
  return n;
}

static int send_packet(int s, const void *d, size_t n, const int *fds, int nfds) {
  struct iovec iov = {(void *)d, n};
  union {
    char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    struct cmsghdr align;
  } u;
  struct msghdr m = {0};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  if (nfds > 0) {
    m.msg_control = u.buf;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  return sendmsg(s, &m, MSG_NOSIGNAL) == (ssize_t)n ? 0 : -1;
}

/* Serves one packet of connection i; false when the connection is to be closed. */
static int serve(int i) {
  unsigned char p[64];
  int fds[MAX_FDS], nfds;
  ssize_t n = receive(conns[i], p, sizeof p, fds, &nfds);
  if (n <= 0) return 0;
  uint64_t id = 0;
  if (n >= 9) memcpy(&id, p + 1, 8);
  if (p[0] == 'K' && n >= 9 && nfds > 0) {
    int at = find(id);
    if (at >= 0) drop_at(at);
    if (nentries == MAX_ENTRIES) {
      close_all(nfds, fds);
      return 1;
    }
    at = nentries++;
    entries[at] = (struct entry){.id = id};
    if (!append(&entries[at], fds, nfds)) nentries--;
    return 1;
  }
  if (p[0] == 'R' && n >= 9 && nfds == 1) {
    int at = find(id);
    if (at < 0 || entries[at].nfds < 2) {
      close(fds[0]);
    } else {
      close(entries[at].fds[1]);
      entries[at].fds[1] = fds[0];
    }
    return 1;
  }
  if (p[0] == 'A' && n >= 9 && nfds > 0) {
    int at = find(id);
    if (at < 0) close_all(nfds, fds);
    else append(&entries[at], fds, nfds);
    return 1;
  }
  close_all(nfds, fds);
  if (p[0] == 'D' && n >= 9) {
    int at = find(id);
    if (at >= 0) drop_at(at);
  } else if (p[0] == 'T') {
    for (int e = 0; e < nentries; e++) {
      memcpy(p + 1, &entries[e].id, 8);
      for (int at = 0; at < entries[e].nfds; at += MAX_FDS) {
        int k = entries[e].nfds - at < MAX_FDS ? entries[e].nfds - at : MAX_FDS;
        p[0] = at == 0 ? 'E' : 'A';
        if (send_packet(conns[i], p, 9, entries[e].fds + at, k) < 0) return 0;
      }
    }
    taking[i] = 1;
    return send_packet(conns[i], "Z", 1, NULL, 0) == 0;
  }
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: strata-holder SOCKET GRACE_SECONDS (started by the strata daemon)\n");
    return 2;
  }
  const char *path = argv[1];
  long grace = atol(argv[2]) * 1000L;
  setsid(); /* not in the daemon's session: what ends the daemon's group leaves this */
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  umask(077);
  /* a few descriptors a mount (the connection, its clones, its record): a host of mounts
     needs more than the usual soft limit of 1024 */
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof a.sun_path) {
    fprintf(stderr, "strata-holder: socket path too long: %s\n", path);
    return 2;
  }
  strcpy(a.sun_path, path);
  int l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (l < 0) return 1;
  if (connect(l, (struct sockaddr *)&a, sizeof a) == 0) return 0; /* one holds already */
  close(l);
  unlink(path);
  l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 16) < 0) {
    perror("strata-holder: listen");
    return 1;
  }
  struct stat own; /* the socket's file: removed at the end only if still this one */
  if (stat(path, &own) < 0) return 1;
  uid_t me = getuid();
  /* a daemon that started this connects at once; without one for the grace, nothing to do */
  long deadline = now_ms() + (grace > 10000 ? grace : 10000);
  struct pollfd p[1 + MAX_CONNS + MAX_ENTRIES];
  for (;;) {
    if (nconns == 0) {
      if (now_ms() >= deadline) break;
    }
    int k = 0;
    p[k++] = (struct pollfd){.fd = l, .events = POLLIN};
    for (int i = 0; i < nconns; i++) p[k++] = (struct pollfd){.fd = conns[i], .events = POLLIN};
    /* the mounts' connections only while no daemon is connected: one that serves them tells
       what ends ('D'), and a poll on a served connection would wake this process at every
       request the kernel queues (poll waits on the queue's wait queue) */
    int polled = nconns == 0 ? nentries : 0;
    for (int i = 0; i < polled; i++) p[k++] = (struct pollfd){.fd = entries[i].fds[0], .events = 0};
    long wait = nconns == 0 ? deadline - now_ms() : -1;
    int r = poll(p, (nfds_t)k, nconns == 0 ? (int)(wait > 0 ? wait : 0) : -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    /* the mounts' descriptors first, from the end: drop_at moves the last entry */
    int dropped = 0;
    for (int i = polled - 1; i >= 0; i--) {
      if (p[1 + nconns + i].revents & (POLLERR | POLLHUP | POLLNVAL)) {
        drop_at(i); /* unmounted, or aborted */
        dropped = 1;
      }
    }
    int before = nconns;
    for (int i = before - 1; i >= 0; i--) {
      if (p[1 + i].revents && !serve(i)) {
        handed |= taking[i]; /* a daemon took everything and has it now */
        close_conn_at(i);
      }
    }
    if (handed) break;
    if (p[0].revents & POLLIN) {
      int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
      if (c >= 0) {
        struct ucred cred;
        socklen_t len = sizeof cred;
        if (nconns == MAX_CONNS || getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0
            || cred.uid != me) {
          close(c);
        } else {
          taking[nconns] = 0;
          conns[nconns++] = c;
        }
      }
    }
    if (nconns == 0 && (before > 0 || dropped)) {
      if (nentries == 0) break; /* no daemon, and nothing (left) to hold */
      if (before > 0) deadline = now_ms() + grace;
    }
  }
  /* handed over (the daemon has its own copies now), or no daemon came back in time: then
     the mounts fail from here, as they do without a holder */
  while (nentries > 0) drop_at(nentries - 1);
  struct stat st;
  if (stat(path, &st) == 0 && st.st_ino == own.st_ino) unlink(path);
  return 0;
}
