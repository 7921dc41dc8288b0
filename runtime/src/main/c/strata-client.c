/*
 * strata-client: the thin `strata` people type (and `strata-overlay`, which podman runs as its
 * mount_program). It hands the whole command to the strata daemon of this user when one
 * answers: arguments, environment, working directory, which standard streams are terminals,
 * its own pid (the daemon opens the client's descriptors through /proc for a container it
 * starts), then relays the daemon's output, the client's input when the command asks for it,
 * the signals the client gets (Ctrl-C), and exits with the command's status. With no daemon it
 * runs the command in a JVM of its own, as strata always could (exec, so signals and status
 * are the JVM's).
 *
 * The socket: $STRATA_SOCKET (none: never a daemon), else /run/strata/strata.sock for the
 * host's root, else $XDG_RUNTIME_DIR/strata/strata.sock, else /tmp/strata-UID/strata.sock. The
 * wire is runtime/src/main/java/io/strata/runtime/daemon/Wire.java's. Linked statically, as the
 * container helper is: it starts in a millisecond and depends on nothing.
 *
 * For a user (README, Rootless) it also makes the user namespace that the store's commands,
 * containers and the user's daemon run in, and, as strata-overlay in rootless podman's
 * namespace, mounts /dev/fuse there and hands the descriptor to the daemon.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define VERSION 1
#define MAX_FRAME (1 << 20)

static int sigpipe_w = -1;

static void on_signal(int sig) {
  unsigned char s = (unsigned char)sig;
  int saved = errno;
  if (write(sigpipe_w, &s, 1) < 0) { /* nothing to do in a handler */ }
  errno = saved;
}

/* A growable buffer for the hello. */
struct buf {
  unsigned char *p;
  size_t n, cap;
};

static void put(struct buf *b, const void *d, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 256;
    b->p = realloc(b->p, b->cap);
    if (!b->p) { perror("strata: realloc"); exit(1); }
  }
  memcpy(b->p + b->n, d, n);
  b->n += n;
}

static void put32(struct buf *b, uint32_t v) {
  unsigned char x[4] = {v >> 24, v >> 16, v >> 8, v};
  put(b, x, 4);
}

static void putstr(struct buf *b, const char *s) {
  size_t n = strlen(s);
  put32(b, (uint32_t)n);
  put(b, s, n);
}

static int write_all(int fd, const void *d, size_t n) {
  const char *p = d;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int read_all(int fd, void *d, size_t n) {
  char *p = d;
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static int send_frame(int fd, char type, const void *d, uint32_t n) {
  unsigned char h[5] = {(unsigned char)type, n >> 24, n >> 16, n >> 8, n};
  if (write_all(fd, h, 5) < 0) return -1;
  return n ? write_all(fd, d, n) : 0;
}

/*
 * Whether this process runs in the host's user namespace, whose map is "0 0 4294967295". A
 * daemon mounts in its own namespaces, so a command from another (root inside rootless
 * podman's namespace, where podman runs its mount program) runs in its own process.
 */
static int in_initial_user_namespace(void) {
  FILE *f = fopen("/proc/self/uid_map", "re");
  unsigned long a, b, n;
  int initial = 1;
  if (!f) return 1;
  if (fscanf(f, "%lu %lu %lu", &a, &b, &n) == 3)
    initial = a == 0 && b == 0 && n == 4294967295UL;
  fclose(f);
  return initial;
}

/* The socket of this user's daemon, or NULL when commands must not use one. */
static const char *socket_path(char *out, size_t cap) {
  const char *s = getenv("STRATA_SOCKET");
  if (getenv("STRATA_NO_DAEMON")) return NULL;
  if (s && *s) return strcmp(s, "none") == 0 ? NULL : s;
  /* the system's socket is the host's root's; root of a user namespace is a user */
  if (geteuid() == 0 && in_initial_user_namespace()) return "/run/strata/strata.sock";
  const char *xdg = getenv("XDG_RUNTIME_DIR");
  if (xdg && *xdg) {
    snprintf(out, cap, "%s/strata/strata.sock", xdg);
    return out;
  }
  snprintf(out, cap, "/tmp/strata-%u/strata.sock", (unsigned)geteuid());
  return out;
}

/*
 * Whether the arguments start a daemon, which must not hand itself to one: `daemon` without
 * its subcommand `status` (the value of --socket is not a subcommand).
 */
static int starts_daemon(int argc, char **argv) {
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "daemon") == 0) {
      for (int j = i + 1; j < argc; j++) {
        if (strcmp(argv[j], "--socket") == 0) j++;
        else if (strcmp(argv[j], "status") == 0) return 0;
      }
      return 1;
    }
  }
  return 0;
}

/*
 * The subcommand: the first word that is neither an option nor the value of one of strata's
 * global options that take one (--root DIR, --log-level LEVEL).
 */
static const char *subcommand(int argc, char **argv) {
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--root") == 0 || strcmp(argv[i], "--log-level") == 0) {
      i++;
    } else if (argv[i][0] != '-') {
      return argv[i];
    }
  }
  return "";
}

/*
 * Whether the command serves for long in the JVM it runs in when no daemon takes it: the
 * containerd snapshotter, and a mount kept in the foreground (-f, --foreground; overlay's -d
 * as fuse-overlayfs's). It gets the daemon's JVM (both compilers, a heap that gives back,
 * jnr's generated bindings), not a short command's (C1 only, jnr bound by reflection).
 */
static int serves_long(int argc, char **argv) {
  const char *sub = subcommand(argc, argv);
  if (strcmp(sub, "snapshotter") == 0) return 1;
  if (strcmp(sub, "mount") != 0 && strcmp(sub, "overlay") != 0) return 0;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "--foreground") == 0 ||
        (strcmp(sub, "overlay") == 0 && strcmp(argv[i], "-d") == 0))
      return 1;
  }
  return 0;
}

/*
 * Commands that write the store or run containers. For a user they run as root of a user
 * namespace of the user's subordinate ids, as podman's do, so that a layer's files keep their
 * owners and a container's root owns its files; the rest (mount, umount and overlay among
 * them: their mounts must be the host's) run as the user.
 */
static int needs_user_namespace(const char *cmd) {
  static const char *const cmds[] = {"run", "pull", "import", "commit", "diff", "rm", "rmi",
                                     "gc", "save", "push", "ps", "kill", NULL};
  for (int i = 0; cmds[i]; i++)
    if (strcmp(cmd, cmds[i]) == 0) return 1;
  return 0;
}

static void die(const char *what) {
  fprintf(stderr, "strata: cannot make a user namespace: %s: %s\n", what, strerror(errno));
  exit(125);
}

/* This user's name, from /etc/passwd (a static binary has no NSS); NULL when not there. */
static const char *user_name(uid_t uid, char *out, size_t cap) {
  FILE *f = fopen("/etc/passwd", "re");
  char line[1024];
  const char *found = NULL;
  if (!f) return NULL;
  while (!found && fgets(line, sizeof line, f)) {
    char *rest = line, *name = strsep(&rest, ":"), *pw = strsep(&rest, ":"),
         *id = strsep(&rest, ":");
    if (name && pw && id && strtoul(id, NULL, 10) == uid) {
      snprintf(out, cap, "%s", name);
      found = out;
    }
  }
  fclose(f);
  return found;
}

#define MAX_RANGES 16

/*
 * The user's ranges in /etc/subuid or /etc/subgid (by name or id), in the file's order, as
 * newuidmap's arguments after "0 ID 1": container ids 1.. run through them one after another,
 * as podman maps its namespace (the daemon serves podman's mounts, so the maps must agree).
 * Returns how many words it wrote (3 a range), 0 when there is none.
 */
static int subordinate(const char *file, const char *name, unsigned long id,
                       char words[][24], int cap) {
  FILE *f = fopen(file, "re");
  char line[512];
  int k = 0;
  unsigned long inside = 1;
  if (!f) return 0;
  while (k + 3 <= cap && fgets(line, sizeof line, f)) {
    char *rest = line, *who = strsep(&rest, ":"), *a = strsep(&rest, ":"),
         *n = strsep(&rest, ":\n");
    if (!who || !a || !n) continue;
    char *end;
    int byid = strtoul(who, &end, 10) == id && *end == 0;
    unsigned long count = strtoul(n, NULL, 10);
    if (((name && strcmp(who, name) == 0) || byid) && count > 0) {
      snprintf(words[k++], 24, "%lu", inside);
      snprintf(words[k++], 24, "%lu", strtoul(a, NULL, 10));
      snprintf(words[k++], 24, "%lu", count);
      inside += count;
    }
  }
  fclose(f);
  return k;
}

static int run_tool(char *const argv[]) {
  pid_t p = fork();
  if (p < 0) return -1;
  if (p == 0) {
    execvp(argv[0], argv);
    fprintf(stderr, "strata: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  int st;
  if (waitpid(p, &st, 0) < 0) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) die(path);
  close(fd);
}

/*
 * Makes this process root of a new user namespace (and a mount namespace of its own, where
 * the container roots are mounted): container ids 0 is the user, 1.. the user's subordinate
 * ids, mapped by newuidmap and newgidmap (setuid helpers from Debian's uidmap, which check
 * /etc/subuid and /etc/subgid) from a child, as podman maps its namespace. A user without
 * subordinate ids, or without those helpers, gets a map of their own id alone, and is told.
 */
static void enter_user_namespace(void) {
  uid_t uid = geteuid();
  gid_t gid = getegid();
  char namebuf[256];
  const char *name = user_name(uid, namebuf, sizeof namebuf);
  static char uw[3 * MAX_RANGES][24], gw[3 * MAX_RANGES][24];
  int nu = subordinate("/etc/subuid", name, uid, uw, 3 * MAX_RANGES);
  int ng = subordinate("/etc/subgid", name, gid, gw, 3 * MAX_RANGES);
  int ranges = nu > 0 && ng > 0 && access("/usr/bin/newuidmap", X_OK) == 0 &&
               access("/usr/bin/newgidmap", X_OK) == 0;
  if (!ranges) {
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) die("unshare");
    char map[64];
    write_file("/proc/self/setgroups", "deny");
    snprintf(map, sizeof map, "0 %u 1\n", (unsigned)uid);
    write_file("/proc/self/uid_map", map);
    snprintf(map, sizeof map, "0 %u 1\n", (unsigned)gid);
    write_file("/proc/self/gid_map", map);
    fprintf(stderr, "strata: %s has no subordinate ids in /etc/subuid and /etc/subgid (or "
            "newuidmap is missing): only root is mapped, and files of other owners become "
            "root's\n", name ? name : "this user");
  } else {
    int go[2];
    if (pipe2(go, O_CLOEXEC) < 0) die("pipe");
    pid_t parent = getpid();
    pid_t mapper = fork();
    if (mapper < 0) die("fork");
    if (mapper == 0) {
      char b, pid[24], u0[24], g0[24];
      char *um[6 + 3 * MAX_RANGES], *gm[6 + 3 * MAX_RANGES];
      close(go[1]);
      if (read(go[0], &b, 1) != 1) _exit(1);
      snprintf(pid, sizeof pid, "%d", (int)parent);
      snprintf(u0, sizeof u0, "%u", (unsigned)uid);
      snprintf(g0, sizeof g0, "%u", (unsigned)gid);
      int a = 0, c = 0;
      um[a++] = "/usr/bin/newuidmap"; um[a++] = pid; um[a++] = "0"; um[a++] = u0; um[a++] = "1";
      gm[c++] = "/usr/bin/newgidmap"; gm[c++] = pid; gm[c++] = "0"; gm[c++] = g0; gm[c++] = "1";
      for (int i = 0; i < nu; i++) um[a++] = uw[i];
      for (int i = 0; i < ng; i++) gm[c++] = gw[i];
      um[a] = NULL;
      gm[c] = NULL;
      _exit(run_tool(um) == 0 && run_tool(gm) == 0 ? 0 : 1);
    }
    close(go[0]);
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) die("unshare");
    if (write(go[1], "m", 1) != 1) die("start newuidmap");
    close(go[1]);
    int st;
    if (waitpid(mapper, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      fprintf(stderr, "strata: newuidmap/newgidmap could not map %s's subordinate ids "
              "(/etc/subuid, /etc/subgid; see above)\n", name ? name : "this user");
      exit(125);
    }
  }
  if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) die("become root in it");
  /* its mounts stay its own */
  mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL);
}

/*
 * The mountpoint of `overlay -o OPTS [SOURCE] DIR` when the client may mount it for the daemon
 * (the last word that is no option); NULL for anything else (-f, -d, --help, ...), which then
 * runs in a JVM of its own.
 */
static const char *overlay_mountpoint(int argc, char **argv) {
  const char *last = NULL;
  int seen = 0;
  for (int i = 0; i < argc; i++) {
    if (!seen && strcmp(argv[i], "overlay") == 0) {
      seen = 1;
    } else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
      i++;
    } else if (argv[i][0] == '-') {
      return NULL;
    } else if (seen) {
      last = argv[i];
    }
  }
  return last && last[0] == '/' ? last : NULL;
}

/*
 * Mounts /dev/fuse on DIR here, in this namespace, as strata's own transport mounts as root:
 * the daemon, which is not in this namespace, then serves the descriptor (handed over while
 * this client waits). The descriptor, or -1 after saying why.
 */
static int mount_fuse(const char *dir) {
  int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "strata: cannot open /dev/fuse: %s\n", strerror(errno));
    return -1;
  }
  char data[160];
  snprintf(data, sizeof data,
           "fd=%d,rootmode=40000,user_id=0,group_id=0,default_permissions,allow_other", fd);
  if (mount("strata-overlay", dir, "fuse.strata", MS_NOSUID | MS_NODEV, data) < 0) {
    fprintf(stderr, "strata: mount(2) of %s failed: %s\n", dir, strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

static char handoff_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

static void remove_handoff(void) {
  if (handoff_path[0]) unlink(handoff_path);
  handoff_path[0] = 0;
}

/* The pid of the process at the other end of a unix socket (SO_PEERCRED), or -1. */
static pid_t peer_pid(int sock) {
  struct ucred cred;
  socklen_t len = sizeof cred;
  return getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 ? cred.pid : -1;
}

/* One byte with room for one descriptor (SCM_RIGHTS), sent or received. */
struct fd_message {
  char byte;
  struct iovec iov;
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } u;
  struct msghdr m;
};

static void fd_message_init(struct fd_message *f) {
  memset(f, 0, sizeof *f);
  f->iov.iov_base = &f->byte;
  f->iov.iov_len = 1;
  f->m.msg_iov = &f->iov;
  f->m.msg_iovlen = 1;
  f->m.msg_control = f->u.buf;
  f->m.msg_controllen = sizeof f->u.buf;
}

/* Sends descriptor {@code fd} over the connected socket {@code c} (one byte, SCM_RIGHTS). */
static void send_descriptor(int c, int fd) {
  struct fd_message f;
  fd_message_init(&f);
  f.byte = 'F';
  struct cmsghdr *cm = CMSG_FIRSTHDR(&f.m);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &fd, sizeof(int));
  if (sendmsg(c, &f.m, MSG_NOSIGNAL) < 0)
    fprintf(stderr, "strata: cannot hand the mount to the daemon: %s\n", strerror(errno));
}

/* Where fusermount3 (or libfuse 2's fusermount) may be, in the order they are tried. */
static const char *const FUSERMOUNTS[] = {"/usr/bin/fusermount3", "/bin/fusermount3",
                                          "/usr/local/bin/fusermount3", "/usr/bin/fusermount",
                                          "/bin/fusermount"};

/*
 * Mounts /dev/fuse on DIR with fusermount3 (setuid; libfuse's protocol: the descriptor comes
 * back over the socket named by _FUSE_COMMFD), for a user's daemon that lives in a user
 * namespace of its own and cannot mount on the host. The descriptor, or -1 with why in err.
 */
static int fusermount(const char *dir, const char *options, char *err, size_t cap) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
    snprintf(err, cap, "socketpair: %s", strerror(errno));
    return -1;
  }
  fcntl(sv[0], F_SETFD, FD_CLOEXEC);
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(err, cap, "fork: %s", strerror(errno));
    close(sv[0]);
    close(sv[1]);
    return -1;
  }
  if (pid == 0) {
    char commfd[32];
    snprintf(commfd, sizeof commfd, "%d", sv[1]);
    setenv("_FUSE_COMMFD", commfd, 1);
    for (size_t i = 0; i < sizeof FUSERMOUNTS / sizeof *FUSERMOUNTS; i++)
      execl(FUSERMOUNTS[i], FUSERMOUNTS[i], "-o", options, "--", dir, (char *)NULL);
    _exit(127);
  }
  close(sv[1]);
  struct fd_message f;
  fd_message_init(&f);
  ssize_t n;
  do {
    n = recvmsg(sv[0], &f.m, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  close(sv[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  struct cmsghdr *cm = n > 0 ? CMSG_FIRSTHDR(&f.m) : NULL;
  if (!cm || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
      snprintf(err, cap, "mounting as a user needs fusermount3 (Debian package fuse3)");
    else
      snprintf(err, cap, "fusermount3 did not mount %s (exit %d; is the mountpoint yours, and"
               " user_allow_other in /etc/fuse.conf if allow_other is asked?)", dir,
               WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return -1;
  }
  int fd;
  memcpy(&fd, CMSG_DATA(cm), sizeof fd);
  return fd;
}

/* Whether a FUSE filesystem is mounted at DIR here (/proc/self/mountinfo, escapes undone). */
static int fuse_mounted_at(const char *dir) {
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (!f) return 0;
  char *line = NULL;
  size_t cap = 0;
  int found = 0;
  while (!found && getline(&line, &cap, f) > 0) {
    char *sep = strstr(line, " - ");
    char *p = line;
    for (int i = 0; i < 4 && p; i++) {
      p = strchr(p, ' ');
      if (p) p++;
    }
    char *end = p ? strchr(p, ' ') : NULL;
    if (!sep || !end || end > sep) continue;
    char mp[PATH_MAX];
    size_t n = 0;
    for (char *q = p; q < end && n + 1 < sizeof mp; q++) {
      if (q[0] == '\\' && end - q >= 4 && q[1] >= '0' && q[1] <= '3' && q[2] >= '0' &&
          q[2] <= '7' && q[3] >= '0' && q[3] <= '7') {
        mp[n++] = (char)((q[1] - '0') * 64 + (q[2] - '0') * 8 + (q[3] - '0'));
        q += 3;
      } else {
        mp[n++] = *q;
      }
    }
    mp[n] = 0;
    found = strcmp(mp, dir) == 0 && strncmp(sep + 3, "fuse", 4) == 0;
  }
  free(line);
  fclose(f);
  return found;
}

/*
 * fusermount3 -u (-z when lazy) DIR, its complaint kept for the daemon: 0 when it unmounted,
 * else -1 with what it said (or why it did not run) in err.
 */
static int fusermount_unmount(const char *dir, int lazy, char *err, size_t cap) {
  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) < 0) {
    snprintf(err, cap, "pipe: %s", strerror(errno));
    return -1;
  }
  pid_t pid = fork();
  if (pid == 0) {
    dup2(pfd[1], 1);
    dup2(pfd[1], 2);
    for (size_t i = 0; i < sizeof FUSERMOUNTS / sizeof *FUSERMOUNTS; i++) {
      if (lazy) execl(FUSERMOUNTS[i], FUSERMOUNTS[i], "-u", "-z", "--", dir, (char *)NULL);
      else execl(FUSERMOUNTS[i], FUSERMOUNTS[i], "-u", "--", dir, (char *)NULL);
    }
    _exit(127);
  }
  close(pfd[1]);
  size_t n = 0;
  if (pid > 0) {
    ssize_t r;
    while (n + 1 < cap && ((r = read(pfd[0], err + n, cap - 1 - n)) > 0 || (r < 0 && errno == EINTR)))
      if (r > 0) n += (size_t)r;
  }
  close(pfd[0]);
  err[n] = 0;
  while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' ')) err[--n] = 0;
  int status = 0;
  if (pid < 0) {
    snprintf(err, cap, "fork: %s", strerror(errno));
    return -1;
  }
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
  if (n == 0)
    snprintf(err, cap, "fusermount3 -u %.*s failed (%s %d)", PATH_MAX, dir,
             WIFEXITED(status) ? "exit" : "signal",
             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
  return -1;
}

/* Unmounts DIR, lazily: umount2 where this client mounted it, fusermount3 for a user's. */
static void unmount_lazily(const char *dir, int by_fusermount) {
  if (!by_fusermount) {
    umount2(dir, MNT_DETACH);
    return;
  }
  char ignored[256];
  fusermount_unmount(dir, 1, ignored, sizeof ignored);
}

/*
 * Listens on a unix socket of this client's beside the daemon's socket {@code path}, on which
 * the daemon takes the mounted descriptor (handoff_path names it). The socket, or -1 after
 * saying why.
 */
static int open_handoff(const char *path) {
  struct sockaddr_un h = {.sun_family = AF_UNIX};
  const char *slash = strrchr(path, '/');
  int dirlen = slash ? (int)(slash - path) : 1;
  if (snprintf(handoff_path, sizeof handoff_path, "%.*s/fuse-%d.sock", dirlen,
               slash ? path : ".", (int)getpid()) >= (int)sizeof h.sun_path) {
    fprintf(stderr, "strata: the daemon's socket path is too long for a handoff socket\n");
    handoff_path[0] = 0;
    return -1;
  }
  strcpy(h.sun_path, handoff_path);
  unlink(handoff_path);
  int handoff = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  /* the socket is the user's alone, whatever directory $STRATA_SOCKET names */
  mode_t old_umask = umask(077);
  int bound = handoff >= 0 ? bind(handoff, (struct sockaddr *)&h, sizeof h) : -1;
  umask(old_umask);
  if (bound < 0 || listen(handoff, 1) < 0) {
    fprintf(stderr, "strata: cannot listen on %s: %s\n", handoff_path, strerror(errno));
    if (handoff >= 0) close(handoff);
    handoff_path[0] = 0;
    return -1;
  }
  atexit(remove_handoff);
  return handoff;
}

/*
 * One command's JVM binds jnr's native calls by reflection rather than by classes generated
 * at run time, which no archive can hold: loading one binding took 68 instead of 118 ms, and
 * a call costs 25-85 ns more (getpid 90 -> 116 ns with C2; loops of 2,000,000 calls each
 * way), which a short command never notices. The daemon and background mounts, which serve
 * for long, keep the generated classes.
 */
#define JNR_REFLECTION "-Djnr.ffi.asm.enabled=false"

/*
 * No daemon: runs the command in a JVM of its own. The jar is $STRATA_JAR, else strata.jar
 * beside the directory this program is in (runtime/target/native/ in a build), else
 * /usr/share/strata/strata.jar; java is $STRATA_JAVA, else java on PATH.
 */
static void run_in_jvm(int argc, char **argv, int daemon) {
  char self[PATH_MAX], jar[PATH_MAX + 32], jsa[PATH_MAX + 64];
  const char *j = getenv("STRATA_JAR");
  if (!j) {
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
      self[n] = 0;
      char *slash = strrchr(self, '/');
      if (slash) *slash = 0;
      snprintf(jar, sizeof jar, "%s/../strata.jar", self);
      if (access(jar, R_OK) == 0) j = jar;
    }
  }
  if (!j) j = "/usr/share/strata/strata.jar";
  /* the class-data archive the build made beside the jar */
  snprintf(jsa, sizeof jsa, "-XX:SharedArchiveFile=%.*s.jsa", (int)(strlen(j) - 4), j);
  int have_jsa = strlen(j) > 4 && access(jsa + strlen("-XX:SharedArchiveFile="), R_OK) == 0;
  const char *java = getenv("STRATA_JAVA");
  const char *opts = getenv("STRATA_JAVA_OPTS");
  /*
   * The AOT cache the build made with a newer JDK (runtime/pom.xml), and that JDK, named in
   * the file beside it: one command starts faster there than on java with the archive. Not
   * for the daemon (it took 11 MiB more idle on JDK 25), nor when java or its options are
   * given.
   */
  char aot[PATH_MAX + 64], aot_java[PATH_MAX];
  int have_aot = 0;
  if (!daemon && (!java || !*java) && !(opts && *opts) && strlen(j) > 4) {
    snprintf(aot, sizeof aot, "-XX:AOTCache=%.*s.aot", (int)(strlen(j) - 4), j);
    char named[PATH_MAX + 64];
    snprintf(named, sizeof named, "%s.java", aot + strlen("-XX:AOTCache="));
    FILE *f = access(aot + strlen("-XX:AOTCache="), R_OK) == 0 ? fopen(named, "re") : NULL;
    if (f) {
      if (fgets(aot_java, sizeof aot_java, f)) {
        aot_java[strcspn(aot_java, "\n")] = 0;
        have_aot = aot_java[0] == '/' && access(aot_java, X_OK) == 0;
      }
      fclose(f);
    }
  }
  if (have_aot) java = aot_java;
  if (!java || !*java) java = "java";
  /* room for the arguments, our options and every word of $STRATA_JAVA_OPTS */
  char **args = calloc((size_t)argc + 16 + (opts ? strlen(opts) / 2 + 1 : 0), sizeof *args);
  int k = 0;
  args[k++] = (char *)java;
  char *optcopy = NULL;
  if (opts && *opts) {
    optcopy = strdup(opts);
    for (char *t = strtok(optcopy, " "); t; t = strtok(NULL, " ")) args[k++] = t;
  } else if (daemon) {
    /*
     * The daemon lives long and serves the data path: both compilers, and a heap that gives
     * back what a burst of commands took. The young generation is small because every page
     * of it ends up resident (32 MiB of it cost 18 MiB in a 50-mount daemon; README,
     * Measurements). glibc: two malloc arenas, not 16 (one a thread otherwise, each keeping
     * what it freed), and a fixed mmap threshold, so freed FUSE buffers go back to the kernel.
     */
    setenv("MALLOC_ARENA_MAX", "2", 0);
    setenv("MALLOC_MMAP_THRESHOLD_", "131072", 0);
    args[k++] = "-XX:+UseSerialGC";
    args[k++] = "-Xms8m";
    args[k++] = "-XX:MaxNewSize=8m";
    args[k++] = "-XX:MinHeapFreeRatio=10";
    args[k++] = "-XX:MaxHeapFreeRatio=20";
  } else if (have_aot) {
    /* one command on the newer JDK: its AOT cache, and jnr's native access allowed quietly */
    args[k++] = "-XX:+UseSerialGC";
    args[k++] = "-XX:TieredStopAtLevel=1";
    args[k++] = aot;
    args[k++] = "-Xlog:aot*=off,cds*=off";
    args[k++] = "--enable-native-access=ALL-UNNAMED";
    args[k++] = "--sun-misc-unsafe-memory-access=allow";
    args[k++] = JNR_REFLECTION;
  } else {
    /* one command: start fast (the archive, C1 only, the serial collector) */
    args[k++] = "-XX:+UseSerialGC";
    args[k++] = "-XX:TieredStopAtLevel=1";
    args[k++] = "-Xshare:auto";
    args[k++] = "-Xlog:cds*=off";
    args[k++] = JNR_REFLECTION;
    if (have_jsa) args[k++] = jsa;
  }
  /*
   * jnr unpacks its native stub into java.io.tmpdir: where /tmp is not writable for this user
   * (some sandboxes), the user's runtime directory or home takes its place.
   */
  char tmpdir[PATH_MAX + 32];
  if (access("/tmp", W_OK | X_OK) != 0) {
    const char *d = getenv("XDG_RUNTIME_DIR");
    if (!d || access(d, W_OK | X_OK) != 0) d = getenv("HOME");
    if (d && *d) {
      snprintf(tmpdir, sizeof tmpdir, "-Djava.io.tmpdir=%s", d);
      args[k++] = tmpdir;
    }
  }
  args[k++] = "-jar";
  args[k++] = (char *)j;
  for (int i = 0; i < argc; i++) args[k++] = argv[i];
  args[k] = NULL;
  execvp(java, args);
  fprintf(stderr, "strata: cannot run %s: %s (set STRATA_JAVA, or start `strata daemon`)\n",
          java, strerror(errno));
  exit(127);
}

int main(int argc, char **argv) {
  /* strata-overlay is `strata overlay` (containers/storage's mount_program, mount.fuse3). */
  const char *base = strrchr(argv[0], '/');
  base = base ? base + 1 : argv[0];
  int overlay = strcmp(base, "strata-overlay") == 0;
  int nargs = argc - 1 + overlay;
  char **args = calloc((size_t)nargs + 1, sizeof *args);
  int k = 0;
  if (overlay) args[k++] = "overlay";
  for (int i = 1; i < argc; i++) args[k++] = argv[i];

  /*
   * Where the command runs. A user's daemon lives in a user namespace of the user's ids (the
   * client makes it, as for the store's commands), so it serves the user's store commands and
   * containers, and the mounts rootless podman asks for (handed over mounted, below), and a
   * user's mounts on the host (mount, overlay, umount), which it cannot make there: it asks
   * this client to mount with fusermount3 (an 'M' frame) and takes the descriptor, or to
   * unmount (a 'U' frame).
   */
  const char *cmd = subcommand(nargs, args);
  int host_ns = in_initial_user_namespace();
  int user = geteuid() != 0 && host_ns;
  int mounts = strcmp(cmd, "mount") == 0 || strcmp(cmd, "umount") == 0 ||
               strcmp(cmd, "overlay") == 0;
  int daemon = starts_daemon(nargs, args);
  const char *mountpoint = NULL;
  if (daemon && user) enter_user_namespace();
  /* a user's mount on the host: the client mounts (and unmounts) with fusermount3 when the
   * daemon asks; one kept in the foreground (-f) is served here, in a JVM of its own, which
   * unmounts it itself when it ends (the daemon could not, from its namespace) */
  int mounts_here = user && mounts && !serves_long(nargs, args);
  int may_use_daemon = !daemon && !(user && mounts && !mounts_here);
  if (!host_ns && may_use_daemon) {
    /* root of a user namespace (rootless podman runs strata-overlay there): only an overlay
     * mount goes to the daemon, which serves the /dev/fuse this client mounts here */
    mountpoint = strcmp(cmd, "overlay") == 0 && geteuid() == 0 ? overlay_mountpoint(nargs, args)
                                                               : NULL;
    may_use_daemon = mountpoint != NULL;
  }

  char pathbuf[PATH_MAX];
  const char *path = may_use_daemon ? socket_path(pathbuf, sizeof pathbuf) : NULL;
  int fd = -1;
  if (path && strlen(path) < sizeof(((struct sockaddr_un *)0)->sun_path)) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
      close(fd);
      fd = -1;
    }
  }
  if (fd < 0) {
    if (user && needs_user_namespace(cmd)) enter_user_namespace();
    run_in_jvm(nargs, args, daemon || serves_long(nargs, args));
  }
  /*
   * The daemon is not in this namespace: this client mounts /dev/fuse here and hands the
   * descriptor over a socket of its own beside the daemon's (SCM_RIGHTS; pidfd_getfd would
   * need ptrace rights that a sibling user namespace lacks), whose name the daemon gets in
   * the command's environment.
   */
  int fuse = -1, handoff = -1;
  int by_fusermount = 0; /* the mount was made by fusermount3, on the daemon's word */
  char fuse_env[PATH_MAX + 64];
  if (mountpoint) {
    fuse = mount_fuse(mountpoint);
    if (fuse < 0) return 1;
    handoff = open_handoff(path);
    if (handoff < 0) {
      umount2(mountpoint, MNT_DETACH);
      return 1;
    }
    snprintf(fuse_env, sizeof fuse_env, "STRATA_MOUNTED_FUSE_SOCKET=%s", handoff_path);
  }

  /* The hello: who, where, what. */
  struct buf h = {0};
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd)) strcpy(cwd, "/");
  put32(&h, VERSION);
  put32(&h, (uint32_t)getpid());
  put32(&h, (isatty(0) ? 1 : 0) | (isatty(1) ? 2 : 0) | (isatty(2) ? 4 : 0) |
                (mounts_here ? 8 : 0));
  putstr(&h, cwd);
  put32(&h, (uint32_t)nargs);
  for (int i = 0; i < nargs; i++) putstr(&h, args[i]);
  uint32_t nenv = fuse >= 0 ? 1 : 0;
  for (char **e = environ; *e; e++) nenv++;
  put32(&h, nenv);
  for (char **e = environ; *e; e++) putstr(&h, *e);
  if (fuse >= 0) putstr(&h, fuse_env);
  if (send_frame(fd, 'H', h.p, (uint32_t)h.n) < 0) {
    fprintf(stderr, "strata: the daemon at %s went away: %s\n", path, strerror(errno));
    return 1;
  }

  /* Signals become frames: the daemon passes them to the command (a container's PID 1). */
  int sp[2];
  if (pipe2(sp, O_CLOEXEC | O_NONBLOCK) < 0) { perror("strata: pipe"); return 1; }
  sigpipe_w = sp[1];
  static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
  struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) sigaction(sigs[i], &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  int want_stdin = 0;
  static unsigned char frame[MAX_FRAME + 1]; /* + 1: a NUL after a mount's options */
  for (;;) {
    struct pollfd p[4] = {{fd, POLLIN, 0}, {sp[0], POLLIN, 0}, {handoff, POLLIN, 0},
                          {0, POLLIN, 0}};
    int n = poll(p, want_stdin ? 4 : 3, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("strata: poll");
      return 1;
    }
    if (p[1].revents & POLLIN) {
      unsigned char s;
      while (read(sp[0], &s, 1) == 1) {
        uint32_t v = s;
        unsigned char b[4] = {v >> 24, v >> 16, v >> 8, v};
        if (send_frame(fd, 'S', b, 4) < 0) break;
      }
    }
    if (handoff >= 0 && (p[2].revents & POLLIN)) {
      int c = accept4(handoff, NULL, NULL, SOCK_CLOEXEC);
      if (c >= 0 && peer_pid(c) == peer_pid(fd)) { /* the daemon, no one else */
        send_descriptor(c, fuse);
        close(handoff);
        handoff = -1;
        remove_handoff();
      }
      if (c >= 0) close(c);
    }
    if (want_stdin && (p[3].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t r = read(0, frame, 65536);
      if (r > 0) {
        send_frame(fd, 'I', frame, (uint32_t)r);
      } else if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) {
        send_frame(fd, 'E', NULL, 0);
        want_stdin = 0;
      }
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      unsigned char hd[5];
      if (read_all(fd, hd, 5) < 0) {
        fprintf(stderr, "strata: the daemon went away before the command ended\n");
        if (mountpoint) unmount_lazily(mountpoint, by_fusermount);
        return 1;
      }
      uint32_t len = (uint32_t)hd[1] << 24 | (uint32_t)hd[2] << 16 | (uint32_t)hd[3] << 8 | hd[4];
      if (len > MAX_FRAME || read_all(fd, frame, len) < 0) {
        fprintf(stderr, "strata: a broken frame from the daemon\n");
        return 1;
      }
      switch (hd[0]) {
        case 'O': write_all(1, frame, len); break;
        case 'R': write_all(2, frame, len); break;
        case 'W': want_stdin = 1; break;
        case 'U': {
          /* a user's daemon asks to unmount a mount on the host: u8 lazy, mountpoint */
          char err[PATH_MAX + 256];
          if (!mounts_here || len < 2) {
            snprintf(err, sizeof err, "the client was not asked for an unmount here");
            send_frame(fd, 'f', err, (uint32_t)strlen(err));
            break;
          }
          frame[len] = 0;
          const char *dir = (const char *)frame + 1;
          if (!fuse_mounted_at(dir)) {
            send_frame(fd, 'F', "not mounted", 11);
          } else if (fusermount_unmount(dir, frame[0] != 0, err, sizeof err) == 0) {
            send_frame(fd, 'F', "unmounted", 9);
          } else {
            send_frame(fd, 'f', err, (uint32_t)strlen(err));
          }
          break;
        }
        case 'M': {
          /* a user's daemon asks for its mount on the host: mountpoint, NUL, options */
          char err[PATH_MAX + 256];
          const char *dir = (const char *)frame;
          size_t dl = strnlen(dir, len);
          if (!mounts_here || fuse >= 0 || dl + 1 >= len) {
            snprintf(err, sizeof err, "the client was not asked for a mount here");
            send_frame(fd, 'f', err, (uint32_t)strlen(err));
            break;
          }
          frame[len] = 0;
          int f = fusermount(dir, dir + dl + 1, err, sizeof err);
          if (f >= 0) {
            handoff = open_handoff(path);
            if (handoff < 0) {
              unmount_lazily(dir, 1);
              close(f);
              f = -1;
              snprintf(err, sizeof err, "the client could not hand the mount over");
            }
          }
          if (f < 0) {
            send_frame(fd, 'f', err, (uint32_t)strlen(err));
            break;
          }
          fuse = f;
          by_fusermount = 1;
          static char mounted_at[PATH_MAX];
          snprintf(mounted_at, sizeof mounted_at, "%s", dir);
          mountpoint = mounted_at;
          send_frame(fd, 'F', handoff_path, (uint32_t)strlen(handoff_path));
          break;
        }
        case 'T':
          /* the daemon is stopping and took nothing: run the command here, as with none */
          close(fd);
          if (mountpoint) {
            unmount_lazily(mountpoint, by_fusermount);
            close(fuse);
            if (handoff >= 0) close(handoff);
            remove_handoff();
          }
          signal(SIGPIPE, SIG_DFL);
          for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) signal(sigs[i], SIG_DFL);
          setenv("STRATA_NO_DAEMON", "1", 1); /* nor may the JVM ask that daemon again */
          if (user && needs_user_namespace(cmd)) enter_user_namespace();
          run_in_jvm(nargs, args, daemon || serves_long(nargs, args));
          return 127;
        case 'X': {
          int code = len < 4 ? 1 : (int)((uint32_t)frame[0] << 24 | (uint32_t)frame[1] << 16 |
                                         (uint32_t)frame[2] << 8 | frame[3]);
          /* a mount the daemon did not take up would only fail its users */
          if (mountpoint && code != 0) unmount_lazily(mountpoint, by_fusermount);
          return code;
        }
        default: break; /* a newer daemon's frame */
      }
    }
  }
}
