/*
 * strata-init: the part of `strata run` that a JVM cannot do safely. It is started by the JVM,
 * which releases it through a FIFO once the cgroup is made. It then unshares the namespaces,
 * forks the container's PID 1, which joins the container's cgroups before anything else (the
 * monitor stays out of them, so a pids limit counts the container only), pivots into the rootfs, mounts
 * /proc, /dev and /sys, masks the usual /proc paths, sets the hostname, drops capabilities,
 * sets no_new_privs, switches user and execs the command (or, with --init, runs it under a
 * tiny reaper). This outer process stays outside the pid namespace as the monitor: it forwards
 * signals to PID 1 and exits with its status (128+N when signal N ended it).
 *
 * Usage: strata-init --rootfs DIR --sync FIFO [--hostname H] [--net none|host|slirp4netns]
 *                    [--slirp4netns PATH] [--cwd DIR]
 *                    [--user UID:GID] [--init] [--read-only] [--volume SRC:DST[:ro]]...
 *                    [--userns HOSTUID:COUNT] [--no-seccomp] [--no-mknod]
 *                    [--cgroup CGROUP.PROCS]... [--stdio-of PID] -- CMD [ARG...]
 *
 * Every path it creates or mounts on inside the root (volume targets, the working directory,
 * /proc, /dev, /sys) is resolved inside the root and never through a symlink out of it
 * (openat2 with RESOLVE_IN_ROOT, or a walk that refuses symlinks where openat2 is missing);
 * `..` is refused. /dev is a nodev tmpfs holding bind mounts of the host's standard nodes, so
 * a node made with mknod cannot be opened there; the device allow-list itself is the JVM's
 * (the devices cgroup). The system-call policy is security.h's table.
 *
 * With --userns, a user namespace maps container ids 0..COUNT-1 onto host ids HOSTUID..: the
 * monitor forks a child that unshares the user namespace, waits while the monitor writes its
 * uid and gid maps from outside, makes the other namespaces (owned by the new user namespace),
 * forks PID 1, tells the monitor its pid and exits: PID 1 is reparented to the monitor, a
 * subreaper, which puts it in the cgroups (from inside the namespace it could not), then lets
 * it run, and waits for it. Device nodes are then bind-mounted from the
 * host, since mknod is refused.
 * Exit codes of its own: 125 bad usage or setup failure (message on stderr), 127 exec failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <linux/mount.h>
#include <sys/sendfile.h>
#include "security.h"

#define SETUP_FAILED 125
#define EXEC_FAILED 127
#define MAX_VOLUMES 64

static const char *rootfs, *sync_fifo, *hostname = "strata", *net = "none", *cwd = "/";
static const char *volumes[MAX_VOLUMES];
#define MAX_CGROUPS 16
static const char *cgroup_procs[MAX_CGROUPS];
static int ncgroups;
static int nvolumes, use_init, read_only, seccomp_on = 1, keep_mknod = 1, init_fd = -1;
static long userns_host = -1, userns_count;
static const char *slirp; /* --slirp4netns PATH: a private network with outbound access */
static long stdio_of = -1;
static uid_t uid;
static gid_t gid;
#define MAX_GROUPS 64
static gid_t groups[MAX_GROUPS];
static int ngroups;
static pid_t child;

static void die(const char *fmt, ...) {
  va_list ap;
  int err = errno;
  fprintf(stderr, "strata-init: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, ": %s\n", strerror(err));
  _exit(SETUP_FAILED);
}

static void xmount(const char *src, const char *dst, const char *type, unsigned long flags,
                   const char *data) {
  if (mount(src, dst, type, flags, data) < 0) die("mount %s on %s", type ? type : src, dst);
}

/*
 * Opens the directory PATH (as seen inside the container) below ROOTFD, creating what is
 * missing when CREATE is set, without ever leaving the root: symlinks are followed as the
 * container would see them (an absolute one or a `..` at the top stays in the root), and `..`
 * in PATH itself is refused. Returns an O_PATH descriptor; dies with a message otherwise.
 */
static int open_in_root(int rootfd, const char *path, int create) {
  char prefix[4096] = "";
  size_t plen = 0;
  int fd = fcntl(rootfd, F_DUPFD_CLOEXEC, 0);
  const char *p = path;
  if (fd < 0) die("dup the root");
  while (*p) {
    while (*p == '/') p++;
    if (!*p) break;
    const char *end = strchrnul(p, '/');
    size_t n = (size_t)(end - p);
    char name[256];
    if (n >= sizeof name || plen + n + 2 >= sizeof prefix) { errno = ENAMETOOLONG; die("%s", path); }
    memcpy(name, p, n);
    name[n] = 0;
    p = end;
    if (strcmp(name, ".") == 0) continue;
    if (strcmp(name, "..") == 0) { errno = EINVAL; die("path %s: '..' is not allowed", path); }
    if (plen) prefix[plen++] = '/';
    memcpy(prefix + plen, name, n + 1);
    plen += n;
    for (int attempt = 0;; attempt++) {
      struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                             .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
      int next = (int)syscall(SYS_openat2, rootfd, prefix, &how, sizeof how);
      if (next < 0 && errno == ENOSYS) /* no openat2: refuse symlinks outright */
        next = openat(fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (next >= 0) {
        close(fd);
        fd = next;
        break;
      }
      if (errno != ENOENT || !create || attempt > 0) die("%s (at /%s)", path, prefix);
      if (mkdirat(fd, name, 0755) < 0 && errno != EEXIST) die("create /%s", prefix);
    }
  }
  return fd;
}

/* Where mount(2) reaches the directory behind an O_PATH descriptor. */
static const char *fd_path(int fd) {
  static char buf[64];
  snprintf(buf, sizeof buf, "/proc/self/fd/%d", fd);
  return buf;
}

/*
 * Opens the file PATH inside the root for a bind mount (O_PATH, the last name never followed
 * as a symlink), creating an empty one, and its directory, when missing.
 */
static int open_file_in_root(int rootfd, const char *path) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  const char *name = slash ? slash + 1 : dir;
  if (slash) *slash = 0;
  if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
    errno = EINVAL;
    die("volume target %s", path);
  }
  int dirfd = open_in_root(rootfd, slash ? dir : "/", 1);
  int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    int made = openat(dirfd, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (made < 0 && errno != EEXIST) die("create %s", path);
    if (made >= 0) close(made);
    fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  }
  if (fd < 0) die("%s", path);
  struct stat st;
  if (fstat(fd, &st) < 0) die("%s", path);
  if (S_ISLNK(st.st_mode) || S_ISDIR(st.st_mode)) {
    fprintf(stderr, "strata-init: volume target %s is %s; a file goes on a file\n", path,
            S_ISLNK(st.st_mode) ? "a symlink" : "a directory");
    _exit(SETUP_FAILED);
  }
  close(dirfd);
  return fd;
}

/*
 * The image's /proc, /dev or /sys must be a directory of its own (made if missing): a symlink
 * there would carry the mount somewhere else and leave the container without its masks.
 */
static void check_special_dir(int rootfd, const char *name) {
  struct stat st;
  if (fstatat(rootfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno != ENOENT) die("/%s", name);
    if (mkdirat(rootfd, name, 0555) < 0) die("create /%s", name);
    return;
  }
  if (!S_ISDIR(st.st_mode)) {
    fprintf(stderr, "strata-init: the image's /%s is %s, not a directory; refusing to start\n",
            name, S_ISLNK(st.st_mode) ? "a symlink" : "not a directory");
    _exit(SETUP_FAILED);
  }
}

static void make_dev(void) {
  static const char *nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
  /* nodev: a device node made in /dev cannot be opened; the standard ones are bind mounts of
   * the host's nodes, which keep their own (device-permitting) mount. */
  xmount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NODEV | MS_STRICTATIME, "mode=755,size=65536k");
  for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
    char path[64], host[64];
    snprintf(path, sizeof path, "dev/%s", nodes[i]);
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
    if (fd < 0) die("create %s", path);
    close(fd);
    snprintf(host, sizeof host, "/dev/%s", nodes[i]);
    xmount(host, path, NULL, MS_BIND, NULL);
  }
  mkdir("dev/pts", 0755);
  xmount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
         "newinstance,ptmxmode=0666,mode=0620");
  if (symlink("pts/ptmx", "dev/ptmx") < 0) die("symlink dev/ptmx");
  mkdir("dev/shm", 01777);
  xmount("shm", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k");
  mkdir("dev/mqueue", 0755);
  mount("mqueue", "dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  symlink("/proc/self/fd", "dev/fd");
  symlink("/proc/self/fd/0", "dev/stdin");
  symlink("/proc/self/fd/1", "dev/stdout");
  symlink("/proc/self/fd/2", "dev/stderr");
}

/*
 * Moves this process into the container's cgroups (each --cgroup names a cgroup.procs file),
 * before it runs anything of the container's: everything it forks is then in them, and the
 * monitor is not, so that a pids limit counts the container's processes only.
 */
static void join_cgroups(void) {
  for (int i = 0; i < ncgroups; i++) {
    int fd = open(cgroup_procs[i], O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "0", 1) != 1) die("join the cgroup %s", cgroup_procs[i]);
    close(fd);
  }
}

/*
 * --stdio-of PID: the container's standard streams become PID's own (the strata client that
 * ran the command through the daemon): the very open files, duplicated with pidfd_getfd(2), so
 * a terminal stays the controlling one and a file keeps its one offset. Where the kernel or
 * the ptrace policy refuses, the streams the daemon opened through /proc stay.
 */
static void take_stdio(long pid) {
#if defined(SYS_pidfd_open) && defined(SYS_pidfd_getfd)
  int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
  if (pidfd < 0) return;
  for (int n = 0; n < 3; n++) {
    int fd = (int)syscall(SYS_pidfd_getfd, pidfd, n, 0);
    if (fd < 0) continue;
    if (fd != n) {
      dup2(fd, n);
      close(fd);
    }
  }
  close(pidfd);
#else
  (void)pid;
#endif
}

/* Hides what a container should not read, as runc does by default. */
static void mask_proc(void) {
  static const char *null_masked[] = {"/proc/kcore", "/proc/keys", "/proc/timer_list",
                                      "/proc/sched_debug", "/proc/latency_stats"};
  static const char *dir_masked[] = {"/proc/acpi", "/proc/scsi", "/sys/firmware"};
  static const char *read_only_paths[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                          "/proc/sysrq-trigger"};
  for (size_t i = 0; i < sizeof null_masked / sizeof *null_masked; i++)
    mount("/dev/null", null_masked[i], NULL, MS_BIND, NULL); /* absent paths are fine */
  for (size_t i = 0; i < sizeof dir_masked / sizeof *dir_masked; i++)
    mount("tmpfs", dir_masked[i], "tmpfs", MS_RDONLY, "size=0");
  for (size_t i = 0; i < sizeof read_only_paths / sizeof *read_only_paths; i++) {
    if (mount(read_only_paths[i], read_only_paths[i], NULL, MS_BIND | MS_REC, NULL) == 0)
      mount(NULL, read_only_paths[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, NULL);
  }
}

static void loopback_up(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq ifr = {0};
  if (s < 0) return;
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    ioctl(s, SIOCSIFFLAGS, &ifr);
  }
  close(s);
}

/* Docker's default capability set; everything else leaves the bounding set. */
static const int keep_caps[] = {CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FSETID, CAP_FOWNER, CAP_MKNOD,
                                CAP_NET_RAW, CAP_SETGID, CAP_SETUID, CAP_SETFCAP, CAP_SETPCAP,
                                CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_KILL, CAP_AUDIT_WRITE};

static int kept(int cap) {
  if (cap == CAP_MKNOD && !keep_mknod) return 0;
  for (size_t i = 0; i < sizeof keep_caps / sizeof *keep_caps; i++)
    if (keep_caps[i] == cap) return 1;
  return 0;
}

static void drop_caps(void) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2] = {{0}};
  for (int cap = 0; cap <= 63; cap++) {
    if (!kept(cap) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
      die("drop capability %d", cap);
  }
  /* The inheritable set stays empty, as runc's since CVE-2022-24769: a file's inheritable
   * capabilities must not grant what the container was not given. */
  for (size_t i = 0; i < sizeof keep_caps / sizeof *keep_caps; i++) {
    int c = keep_caps[i];
    if (!kept(c)) continue;
    d[c / 32].effective |= 1u << (c % 32);
    d[c / 32].permitted |= 1u << (c % 32);
  }
  if (syscall(SYS_capset, &h, d) < 0) die("capset");
}

static void forward(int sig) {
  if (child > 0) kill(child, sig);
}

/* The signals a monitor or an init passes on to the process it watches. */
static void forward_signals(void) {
  static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) signal(sigs[i], forward);
}

static int status_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return SETUP_FAILED;
}

/* PID 1 under --init: runs the command, reaps every orphan, passes signals on. */
static int run_init(char **argv) {
  pid_t cmd = fork();
  if (cmd < 0) die("fork");
  if (cmd == 0) {
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    execvp(argv[0], argv);
    fprintf(stderr, "strata-init: exec %s: %s\n", argv[0], strerror(errno));
    _exit(EXEC_FAILED);
  }
  child = cmd;
  for (;;) {
    int status;
    pid_t p = waitpid(-1, &status, 0);
    if (p == cmd) return status_code(status);
    if (p < 0 && errno == ECHILD) return SETUP_FAILED;
  }
}

/*
 * Makes the mount at FD read-only, with what is mounted below it: mount_setattr(2) with
 * AT_RECURSIVE (Linux 5.12+), which changes that one flag and keeps the ones a user namespace
 * locks (nosuid, nodev of the source); else a plain read-only remount of the top mount.
 */
static void make_read_only(int fd, const char *what) {
#ifdef SYS_mount_setattr
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
  if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) == 0)
    return;
  if (errno != ENOSYS) die("make %s read-only", what);
#endif
  struct statfs st;
  unsigned long keep = 0;
  if (fstatfs(fd, &st) == 0) /* the flags a user namespace locks must be given again */
    keep = (unsigned long)st.f_flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC);
  xmount(NULL, fd_path(fd), NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | keep, NULL);
}

/*
 * Bind-mounts each SRC:DST[:ro] volume. A directory goes on a directory, a file (or any
 * non-directory: a socket, a device the policy allows) on a file, both made inside the root
 * when missing, as Docker does; the target's last name is never followed as a symlink. The
 * read-only flag goes on the new mount itself, reached by opening the target again once the
 * bind is there (the descriptor the bind went onto names the directory below it).
 */
static void mount_volumes(int rootfd) {
  for (int i = 0; i < nvolumes; i++) {
    char spec[4096];
    snprintf(spec, sizeof spec, "%s", volumes[i]);
    char *src = spec, *target = strchr(spec, ':');
    int ro = 0;
    if (!target) { errno = EINVAL; die("volume %s", volumes[i]); }
    *target++ = 0;
    char *mode = strchr(target, ':');
    if (mode) { *mode++ = 0; ro = strcmp(mode, "ro") == 0; }
    struct stat st;
    if (stat(src, &st) < 0) die("volume source %s", src);
    int fd;
    if (S_ISDIR(st.st_mode)) {
      fd = open_in_root(rootfd, target, 1);
    } else {
      fd = open_file_in_root(rootfd, target);
    }
    xmount(src, fd_path(fd), NULL, MS_BIND | MS_REC, NULL);
    close(fd);
    if (ro) {
      int top = S_ISDIR(st.st_mode) ? open_in_root(rootfd, target, 0)
                                    : open_file_in_root(rootfd, target);
      make_read_only(top, target);
      close(top);
    }
  }
}

/* Runs argv as PID 1's child from a sealed in-memory copy of this program (see main). */
static void exec_init(char **argv) {
  int n = 0;
  while (argv[n]) n++;
  char **args = calloc((size_t)n + 3, sizeof *args);
  if (!args) die("calloc");
  args[0] = "strata-init";
  args[1] = "--as-init";
  memcpy(args + 2, argv, (size_t)n * sizeof *args);
  syscall(SYS_execveat, init_fd, "", args, environ, AT_EMPTY_PATH);
  die("exec the init");
}

static int setgroups_denied(void) {
  char buf[16] = {0};
  int fd = open("/proc/self/setgroups", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  return n > 0 && strncmp(buf, "deny", 4) == 0;
}

static void container(char **argv) {
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die("make / private");
  /* A mount of its own in this namespace, as pivot_root wants (in a user namespace the
   * copied mounts are locked to their parents). */
  xmount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL);
  if (chdir(rootfs) < 0) die("chdir %s", rootfs);
  int rootfd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) die("open %s", rootfs);
  check_special_dir(rootfd, "proc");
  check_special_dir(rootfd, "dev");
  check_special_dir(rootfd, "sys");
  xmount("proc", "proc", "proc", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL);
  make_dev();
  if (mount("sysfs", "sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL) < 0)
    xmount("/sys", "sys", NULL, MS_BIND | MS_REC | MS_RDONLY, NULL); /* host network: bind */
  mount_volumes(rootfd);
  close(open_in_root(rootfd, cwd, 1)); /* a missing working directory is made, as Docker does */
  close(rootfd);
  if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root %s", rootfs);
  if (umount2(".", MNT_DETACH) < 0) die("detach the old root");
  if (chdir("/") < 0) die("chdir /");
  mask_proc();
  if (read_only) xmount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL);
  if (sethostname(hostname, strlen(hostname)) < 0) die("sethostname");
  if (strcmp(net, "host") != 0) loopback_up();
  drop_caps();
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("no_new_privs");
  /* A user namespace whose map was written without newgidmap (one id: the user's) has
   * setgroups denied, and the groups it holds cannot be dropped there (as in podman's one-id
   * mapping); any other refusal is an error. */
  if (setgroups((size_t)ngroups, groups) < 0 && !(errno == EPERM && ngroups == 0 &&
                                                 setgroups_denied()))
    die("setgroups");
  if (setgid(gid) < 0) die("setgid %d", gid);
  if (setuid(uid) < 0) die("setuid %d", uid);
  if (chdir(cwd) < 0) die("chdir %s", cwd);
  if (seccomp_on && install_seccomp() < 0) die("install the seccomp filter");
  if (use_init) exec_init(argv);
  execvp(argv[0], argv);
  fprintf(stderr, "strata-init: exec %s: %s\n", argv[0], strerror(errno));
  _exit(EXEC_FAILED);
}

/*
 * A copy of this program in a sealed memfd, for --init: PID 1 then runs from it, so its
 * /proc/1/exe names no host path and cannot be written through.
 */
static int sealed_copy_of_self(void) {
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
  int fd = memfd_create("strata-init", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
  if (fd < 0 && errno == EINVAL) fd = memfd_create("strata-init", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) die("memfd_create");
  int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (self < 0 || fstat(self, &st) < 0) die("open /proc/self/exe");
  for (off_t off = 0; off < st.st_size;) {
    ssize_t n = sendfile(fd, self, &off, (size_t)(st.st_size - off));
    if (n <= 0) die("copy /proc/self/exe");
  }
  close(self);
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0)
    die("seal the init copy");
  return fd;
}

/*
 * --net slirp4netns: a network namespace of its own whose tap0 slirp4netns (Debian's package,
 * as rootless podman uses it) connects to the outside through the host's stack, NAT'd, from
 * this monitor's (the host's) network namespace: a child makes the namespace and waits;
 * slirp4netns configures tap0 in it (10.0.2.100/24, gateway 10.0.2.2, DNS 10.0.2.3; the
 * host's loopback not reachable, as podman's default) and says it is ready; this monitor then
 * joins the namespace, so that the container's namespaces are made inside it. slirp4netns
 * lives until the container ends.
 */
static pid_t slirp_pid = -1;

static void slirp_network(void) {
  int made[2], ready[2];
  if (pipe2(made, O_CLOEXEC) < 0) die("pipe");
  pid_t holder = fork();
  if (holder < 0) die("fork");
  if (holder == 0) {
    if (unshare(CLONE_NEWNET) < 0) _exit(1);
    if (write(made[1], "n", 1) != 1) _exit(1);
    for (;;) pause();
  }
  char b;
  close(made[1]);
  if (read(made[0], &b, 1) != 1) die("make the network namespace");
  close(made[0]);
  /* made after the holder, which must not hold its writing end */
  if (pipe(ready) < 0) die("pipe");
  /* slirp4netns ends when this monitor does, however it ends (--exit-fd sees the EOF) */
  int alive[2];
  if (pipe2(alive, O_CLOEXEC) < 0) die("pipe");
  /* what slirp4netns says ("sent tapfd=…" when all is well) is kept for a failure */
  int said = memfd_create("slirp4netns", MFD_CLOEXEC);
  slirp_pid = fork();
  if (slirp_pid < 0) die("fork");
  if (slirp_pid == 0) {
    char target[24], fd[32], exitfd[32];
    close(ready[0]);
    snprintf(exitfd, sizeof exitfd, "--exit-fd=%d", dup(alive[0])); /* dup: not close-on-exec */
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) { dup2(null, 0); dup2(null, 1); dup2(said >= 0 ? said : null, 2); }
    snprintf(target, sizeof target, "%d", (int)holder);
    snprintf(fd, sizeof fd, "--ready-fd=%d", ready[1]);
    execl(slirp, slirp, "--configure", "--mtu=65520", "--disable-host-loopback", fd, exitfd,
          target, "tap0", (char *)NULL);
    _exit(127);
  }
  close(ready[1]);
  close(alive[0]); /* alive[1] stays open in this monitor, closed in what it execs */
  if (read(ready[0], &b, 1) != 1) {
    int st = 0;
    kill(holder, SIGKILL);
    waitpid(slirp_pid, &st, 0);
    char text[2048];
    ssize_t n = said >= 0 ? pread(said, text, sizeof text - 1, 0) : -1;
    text[n > 0 ? n : 0] = 0;
    fprintf(stderr, "strata-init: slirp4netns (%s) did not set up the network (exit %d): %s\n",
            slirp, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), text);
    _exit(SETUP_FAILED);
  }
  close(ready[0]);
  if (said >= 0) close(said);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/net", (int)holder);
  int ns = open(path, O_RDONLY | O_CLOEXEC);
  if (ns < 0 || setns(ns, CLONE_NEWNET) < 0) die("join the network namespace");
  close(ns);
  kill(holder, SIGKILL);
  waitpid(holder, NULL, 0);
}

int main(int argc, char **argv) {
  int i = 1;
  for (; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--") == 0) { i++; break; }
    if (strcmp(a, "--as-init") == 0) { /* PID 1 of --init, exec'd from the sealed copy */
      forward_signals();
      return run_init(argv + i + 1);
    }
    if (strcmp(a, "--init") == 0) { use_init = 1; continue; }
    if (strcmp(a, "--no-seccomp") == 0) { seccomp_on = 0; continue; }
    if (strcmp(a, "--no-mknod") == 0) { keep_mknod = 0; continue; }
    if (strcmp(a, "--read-only") == 0) { read_only = 1; continue; }
    if (!v) { fprintf(stderr, "strata-init: %s needs a value\n", a); return SETUP_FAILED; }
    i++;
    if (strcmp(a, "--rootfs") == 0) rootfs = v;
    else if (strcmp(a, "--sync") == 0) sync_fifo = v;
    else if (strcmp(a, "--hostname") == 0) hostname = v;
    else if (strcmp(a, "--net") == 0) net = v;
    else if (strcmp(a, "--slirp4netns") == 0) slirp = v;
    else if (strcmp(a, "--cwd") == 0) cwd = v;
    else if (strcmp(a, "--userns") == 0) {
      if (sscanf(v, "%ld:%ld", &userns_host, &userns_count) != 2 || userns_host < 0 ||
          userns_count <= 0) {
        fprintf(stderr, "strata-init: bad --userns %s (HOSTUID:COUNT)\n", v);
        return SETUP_FAILED;
      }
    }
    else if (strcmp(a, "--user") == 0) { /* UID:GID[:G1,G2...] */
      char *end;
      unsigned long u = strtoul(v, &end, 10), g = u;
      if (end != v && *end == ':') g = strtoul(end + 1, &end, 10);
      while (end != v && *end && (*end == ':' || *end == ',') && ngroups < MAX_GROUPS)
        groups[ngroups++] = (gid_t)strtoul(end + 1, &end, 10);
      if (end == v || *end) { fprintf(stderr, "strata-init: bad --user %s\n", v); return SETUP_FAILED; }
      uid = (uid_t)u;
      gid = (gid_t)g;
    } else if (strcmp(a, "--volume") == 0 && nvolumes < MAX_VOLUMES) volumes[nvolumes++] = v;
    else if (strcmp(a, "--cgroup") == 0 && ncgroups < MAX_CGROUPS) cgroup_procs[ncgroups++] = v;
    else if (strcmp(a, "--stdio-of") == 0) stdio_of = strtol(v, NULL, 10);
    else { fprintf(stderr, "strata-init: unknown option %s\n", a); return SETUP_FAILED; }
  }
  if (!rootfs || i >= argc) {
    fprintf(stderr, "usage: strata-init --rootfs DIR [--sync FIFO] [options] -- CMD [ARG...]\n");
    return SETUP_FAILED;
  }
  if (strcmp(net, "none") != 0 && strcmp(net, "host") != 0 && strcmp(net, "slirp4netns") != 0) {
    fprintf(stderr, "strata-init: --net must be none, host or slirp4netns\n");
    return SETUP_FAILED;
  }
  if (strcmp(net, "slirp4netns") == 0 && (!slirp || userns_host >= 0)) {
    fprintf(stderr, "strata-init: --net slirp4netns needs --slirp4netns PATH, and no --userns\n");
    return SETUP_FAILED;
  }
  if (stdio_of > 0) take_stdio(stdio_of);
  if (use_init) init_fd = sealed_copy_of_self();
  if (sync_fifo) { /* wait until the JVM has put this process in its cgroup */
    int fd = open(sync_fifo, O_RDONLY | O_CLOEXEC);
    char go;
    if (fd < 0 || read(fd, &go, 1) != 1) die("wait for the go-ahead on %s", sync_fifo);
    close(fd);
  }
  int flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID;
  if (strcmp(net, "none") == 0) flags |= CLONE_NEWNET;
  /* The container's PID 1 ends up this monitor's child in either case (see below). */
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) die("become a subreaper");
  if (userns_host >= 0) {
    int to_parent[2], to_child[2], go[2];
    if (pipe2(to_parent, O_CLOEXEC) < 0 || pipe2(to_child, O_CLOEXEC) < 0 ||
        pipe2(go, O_CLOEXEC) < 0)
      die("pipe");
    pid_t maker = fork();
    if (maker < 0) die("fork");
    if (maker == 0) {
      char b;
      if (unshare(CLONE_NEWUSER) < 0) die("unshare the user namespace");
      if (write(to_parent[1], "u", 1) != 1 || read(to_child[0], &b, 1) != 1) die("sync maps");
      if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) die("become root in the namespace");
      if (unshare(flags) < 0) die("unshare");
      pid_t init = fork();
      if (init < 0) die("fork");
      if (init == 0) {
        /* Inside the user namespace it could not join the cgroups itself: it waits until the
         * monitor has moved it there, before it runs anything. */
        close(go[1]);
        if (read(go[0], &b, 1) != 1) die("wait to be put in the cgroup");
        close(go[0]);
        container(argv + i);
      }
      /* Tell the monitor who PID 1 is, and go: PID 1 is reparented to the monitor (a
       * subreaper), and this process is in no cgroup of the container's, so that only the
       * container's own processes count against its pids limit. */
      if (write(to_parent[1], &init, sizeof init) != sizeof init) die("report PID 1");
      _exit(0);
    }
    close(go[0]);
    char b, path[64], map[64];
    if (read(to_parent[0], &b, 1) != 1) die("wait for the user namespace");
    snprintf(map, sizeof map, "0 %ld %ld\n", userns_host, userns_count);
    for (int k = 0; k < 2; k++) {
      snprintf(path, sizeof path, "/proc/%d/%s", maker, k == 0 ? "uid_map" : "gid_map");
      int fd = open(path, O_WRONLY | O_CLOEXEC);
      if (fd < 0 || write(fd, map, strlen(map)) != (ssize_t)strlen(map)) die("write %s", path);
      close(fd);
    }
    if (write(to_child[1], "m", 1) != 1) die("release the child");
    close(to_parent[1]);
    pid_t init;
    int status;
    if (read(to_parent[0], &init, sizeof init) != sizeof init) {
      waitpid(maker, &status, 0);
      return status_code(status); /* it failed before PID 1 existed, and said why */
    }
    if (waitpid(maker, &status, 0) < 0) die("wait for the namespace maker");
    child = init;
    for (int k = 0; k < ncgroups; k++) {
      char pid[24];
      int fd = open(cgroup_procs[k], O_WRONLY | O_CLOEXEC);
      int len = snprintf(pid, sizeof pid, "%d", init);
      if (fd < 0 || write(fd, pid, (size_t)len) != len) {
        kill(init, SIGKILL);
        die("put PID 1 in the cgroup %s", cgroup_procs[k]);
      }
      close(fd);
    }
    if (write(go[1], "g", 1) != 1) die("release PID 1");
    close(go[1]);
  } else {
    if (strcmp(net, "slirp4netns") == 0) slirp_network();
    if (unshare(flags) < 0) die("unshare");
    child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
      join_cgroups();
      container(argv + i);
    }
  }
  /* The monitor: pass signals on, and end as the container ended. */
  forward_signals();
  for (;;) {
    int status;
    pid_t p = waitpid(child, &status, 0);
    if (p == child) {
      if (slirp_pid > 0) {
        kill(slirp_pid, SIGTERM);
        waitpid(slirp_pid, NULL, 0);
      }
      return status_code(status);
    }
    if (p < 0 && errno != EINTR) die("waitpid");
  }
}
