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
 * The socket: $STRATA_SOCKET (none: never a daemon), else /run/strata/strata.sock for root,
 * else $XDG_RUNTIME_DIR/strata/strata.sock, else /tmp/strata-UID/strata.sock. The wire is
 * runtime/src/main/java/io/strata/runtime/daemon/Wire.java's. Linked statically, as the
 * container helper is: it starts in a millisecond and depends on nothing.
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
  if (!in_initial_user_namespace()) return NULL;
  if (s && *s) return strcmp(s, "none") == 0 ? NULL : s;
  if (geteuid() == 0) return "/run/strata/strata.sock";
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

/* The first range of /etc/subuid or /etc/subgid for the user (by name or id); 0 when none. */
static int subordinate(const char *file, const char *name, unsigned long id,
                       unsigned long *start, unsigned long *count) {
  FILE *f = fopen(file, "re");
  char line[512];
  int found = 0;
  if (!f) return 0;
  while (!found && fgets(line, sizeof line, f)) {
    char *rest = line, *who = strsep(&rest, ":"), *a = strsep(&rest, ":"),
         *n = strsep(&rest, ":\n");
    if (!who || !a || !n) continue;
    char *end;
    int byid = strtoul(who, &end, 10) == id && *end == 0;
    if ((name && strcmp(who, name) == 0) || byid) {
      *start = strtoul(a, NULL, 10);
      *count = strtoul(n, NULL, 10);
      found = *count > 0;
    }
  }
  fclose(f);
  return found;
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
  unsigned long us = 0, uc = 0, gs = 0, gc = 0;
  int ranges = subordinate("/etc/subuid", name, uid, &us, &uc) &&
               subordinate("/etc/subgid", name, gid, &gs, &gc) &&
               access("/usr/bin/newuidmap", X_OK) == 0 && access("/usr/bin/newgidmap", X_OK) == 0;
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
      char b, pid[24], u[3][24], g[3][24];
      close(go[1]);
      if (read(go[0], &b, 1) != 1) _exit(1);
      snprintf(pid, sizeof pid, "%d", (int)parent);
      snprintf(u[0], sizeof u[0], "%u", (unsigned)uid);
      snprintf(u[1], sizeof u[1], "%lu", us);
      snprintf(u[2], sizeof u[2], "%lu", uc);
      snprintf(g[0], sizeof g[0], "%u", (unsigned)gid);
      snprintf(g[1], sizeof g[1], "%lu", gs);
      snprintf(g[2], sizeof g[2], "%lu", gc);
      char *um[] = {"/usr/bin/newuidmap", pid, "0", u[0], "1", "1", u[1], u[2], NULL};
      char *gm[] = {"/usr/bin/newgidmap", pid, "0", g[0], "1", "1", g[1], g[2], NULL};
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
  if (!java || !*java) java = "java";
  const char *opts = getenv("STRATA_JAVA_OPTS");
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
  } else {
    /* one command: start fast (the archive, C1 only, the serial collector) */
    args[k++] = "-XX:+UseSerialGC";
    args[k++] = "-XX:TieredStopAtLevel=1";
    args[k++] = "-Xshare:auto";
    args[k++] = "-Xlog:cds*=off";
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

  if (!overlay && geteuid() != 0 && in_initial_user_namespace() &&
      needs_user_namespace(subcommand(nargs, args)))
    enter_user_namespace(); /* then no daemon: it is in the host's namespaces */

  char pathbuf[PATH_MAX];
  const char *path = starts_daemon(nargs, args) ? NULL : socket_path(pathbuf, sizeof pathbuf);
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
  if (fd < 0) run_in_jvm(nargs, args, starts_daemon(nargs, args));

  /* The hello: who, where, what. */
  struct buf h = {0};
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd)) strcpy(cwd, "/");
  put32(&h, VERSION);
  put32(&h, (uint32_t)getpid());
  put32(&h, (isatty(0) ? 1 : 0) | (isatty(1) ? 2 : 0) | (isatty(2) ? 4 : 0));
  putstr(&h, cwd);
  put32(&h, (uint32_t)nargs);
  for (int i = 0; i < nargs; i++) putstr(&h, args[i]);
  uint32_t nenv = 0;
  for (char **e = environ; *e; e++) nenv++;
  put32(&h, nenv);
  for (char **e = environ; *e; e++) putstr(&h, *e);
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
  static unsigned char frame[MAX_FRAME];
  for (;;) {
    struct pollfd p[3] = {{fd, POLLIN, 0}, {sp[0], POLLIN, 0}, {0, POLLIN, 0}};
    int n = poll(p, want_stdin ? 3 : 2, -1);
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
    if (want_stdin && (p[2].revents & (POLLIN | POLLHUP | POLLERR))) {
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
        case 'X':
          if (len < 4) return 1;
          return (int)((uint32_t)frame[0] << 24 | (uint32_t)frame[1] << 16 |
                       (uint32_t)frame[2] << 8 | frame[3]);
        default: break; /* a newer daemon's frame */
      }
    }
  }
}
