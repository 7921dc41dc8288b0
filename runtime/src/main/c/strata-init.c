/*
 * strata-init: the part of `strata run` that a JVM cannot do safely. It is started by the JVM,
 * which places it in the container's cgroup and then releases it through a FIFO. It then
 * unshares the namespaces, forks the container's PID 1, which pivots into the rootfs, mounts
 * /proc, /dev and /sys, masks the usual /proc paths, sets the hostname, drops capabilities,
 * sets no_new_privs, switches user and execs the command (or, with --init, runs it under a
 * tiny reaper). This outer process stays outside the pid namespace as the monitor: it forwards
 * signals to PID 1 and exits with its status (128+N when signal N ended it).
 *
 * Usage: strata-init --rootfs DIR --sync FIFO [--hostname H] [--net none|host] [--cwd DIR]
 *                    [--user UID:GID] [--init] [--read-only] [--volume SRC:DST[:ro]]...
 *                    [--userns HOSTUID:COUNT] -- CMD [ARG...]
 *
 * With --userns, a user namespace maps container ids 0..COUNT-1 onto host ids HOSTUID..: the
 * monitor forks a child that unshares the user namespace, writes its uid and gid maps from
 * outside, and the child then makes the other namespaces (owned by the new user namespace)
 * and forks PID 1. Device nodes are then bind-mounted from the host, since mknod is refused.
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
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/capability.h>

#define SETUP_FAILED 125
#define EXEC_FAILED 127
#define MAX_VOLUMES 64

static const char *rootfs, *sync_fifo, *hostname = "strata", *net = "none", *cwd = "/";
static const char *volumes[MAX_VOLUMES];
static int nvolumes, use_init, read_only;
static long userns_host = -1, userns_count;
static uid_t uid;
static gid_t gid;
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

static void mkdirs(const char *path, mode_t mode) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p == '/') {
      *p = 0;
      mkdir(buf, mode);
      *p = '/';
    }
  }
  mkdir(buf, mode);
}

static void make_dev(void) {
  static const struct { const char *name; int major, minor; } nodes[] = {
    {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9},
    {"tty", 5, 0}};
  xmount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k");
  for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
    char path[64], host[64];
    snprintf(path, sizeof path, "dev/%s", nodes[i].name);
    if (userns_host >= 0) { /* no mknod in a user namespace: bind the host's node */
      int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
      if (fd < 0) die("create %s", path);
      close(fd);
      snprintf(host, sizeof host, "/dev/%s", nodes[i].name);
      xmount(host, path, NULL, MS_BIND, NULL);
      continue;
    }
    if (mknod(path, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor)) < 0) die("mknod %s", path);
    chmod(path, 0666);
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
  for (size_t i = 0; i < sizeof keep_caps / sizeof *keep_caps; i++) {
    int c = keep_caps[i];
    d[c / 32].effective |= 1u << (c % 32);
    d[c / 32].permitted |= 1u << (c % 32);
    d[c / 32].inheritable |= 1u << (c % 32);
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

static void container(char **argv) {
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die("make / private");
  /* A mount of its own in this namespace, as pivot_root wants (in a user namespace the
   * copied mounts are locked to their parents). */
  xmount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL);
  if (chdir(rootfs) < 0) die("chdir %s", rootfs);
  for (int i = 0; i < nvolumes; i++) {
    char spec[4096], dst[4096];
    snprintf(spec, sizeof spec, "%s", volumes[i]);
    char *src = spec, *target = strchr(spec, ':');
    int ro = 0;
    if (!target) { errno = EINVAL; die("volume %s", volumes[i]); }
    *target++ = 0;
    char *mode = strchr(target, ':');
    if (mode) { *mode++ = 0; ro = strcmp(mode, "ro") == 0; }
    snprintf(dst, sizeof dst, ".%s", target);
    mkdirs(dst, 0755);
    xmount(src, dst, NULL, MS_BIND | MS_REC, NULL);
    if (ro) xmount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL);
  }
  mkdir("proc", 0555);
  xmount("proc", "proc", "proc", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL);
  mkdir("dev", 0755);
  make_dev();
  mkdir("sys", 0555);
  if (mount("sysfs", "sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL) < 0)
    xmount("/sys", "sys", NULL, MS_BIND | MS_REC | MS_RDONLY, NULL); /* host network: bind */
  if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root %s", rootfs);
  if (umount2(".", MNT_DETACH) < 0) die("detach the old root");
  if (chdir("/") < 0) die("chdir /");
  mask_proc();
  if (read_only) xmount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL);
  if (sethostname(hostname, strlen(hostname)) < 0) die("sethostname");
  if (strcmp(net, "none") == 0) loopback_up();
  drop_caps();
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("no_new_privs");
  if (setgroups(0, NULL) < 0) die("setgroups");
  if (setgid(gid) < 0) die("setgid %d", gid);
  if (setuid(uid) < 0) die("setuid %d", uid);
  if (chdir(cwd) < 0) die("chdir %s", cwd);
  if (use_init) {
    forward_signals();
    _exit(run_init(argv));
  }
  execvp(argv[0], argv);
  fprintf(stderr, "strata-init: exec %s: %s\n", argv[0], strerror(errno));
  _exit(EXEC_FAILED);
}

int main(int argc, char **argv) {
  int i = 1;
  for (; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--") == 0) { i++; break; }
    if (strcmp(a, "--init") == 0) { use_init = 1; continue; }
    if (strcmp(a, "--read-only") == 0) { read_only = 1; continue; }
    if (!v) { fprintf(stderr, "strata-init: %s needs a value\n", a); return SETUP_FAILED; }
    i++;
    if (strcmp(a, "--rootfs") == 0) rootfs = v;
    else if (strcmp(a, "--sync") == 0) sync_fifo = v;
    else if (strcmp(a, "--hostname") == 0) hostname = v;
    else if (strcmp(a, "--net") == 0) net = v;
    else if (strcmp(a, "--cwd") == 0) cwd = v;
    else if (strcmp(a, "--userns") == 0) {
      if (sscanf(v, "%ld:%ld", &userns_host, &userns_count) != 2 || userns_host < 0 ||
          userns_count <= 0) {
        fprintf(stderr, "strata-init: bad --userns %s (HOSTUID:COUNT)\n", v);
        return SETUP_FAILED;
      }
    }
    else if (strcmp(a, "--user") == 0) {
      unsigned u = 0, g = 0;
      int n = sscanf(v, "%u:%u", &u, &g);
      if (n < 1) { fprintf(stderr, "strata-init: bad --user %s\n", v); return SETUP_FAILED; }
      uid = u;
      gid = n == 2 ? g : u;
    } else if (strcmp(a, "--volume") == 0 && nvolumes < MAX_VOLUMES) volumes[nvolumes++] = v;
    else { fprintf(stderr, "strata-init: unknown option %s\n", a); return SETUP_FAILED; }
  }
  if (!rootfs || i >= argc) {
    fprintf(stderr, "usage: strata-init --rootfs DIR [--sync FIFO] [options] -- CMD [ARG...]\n");
    return SETUP_FAILED;
  }
  if (strcmp(net, "none") != 0 && strcmp(net, "host") != 0) {
    fprintf(stderr, "strata-init: --net must be none or host\n");
    return SETUP_FAILED;
  }
  if (sync_fifo) { /* wait until the JVM has put this process in its cgroup */
    int fd = open(sync_fifo, O_RDONLY | O_CLOEXEC);
    char go;
    if (fd < 0 || read(fd, &go, 1) != 1) die("wait for the go-ahead on %s", sync_fifo);
    close(fd);
  }
  int flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID;
  if (strcmp(net, "none") == 0) flags |= CLONE_NEWNET;
  if (userns_host >= 0) {
    int to_parent[2], to_child[2];
    if (pipe2(to_parent, O_CLOEXEC) < 0 || pipe2(to_child, O_CLOEXEC) < 0) die("pipe");
    child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
      char b;
      if (unshare(CLONE_NEWUSER) < 0) die("unshare the user namespace");
      if (write(to_parent[1], "u", 1) != 1 || read(to_child[0], &b, 1) != 1) die("sync maps");
      if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) die("become root in the namespace");
      if (unshare(flags) < 0) die("unshare");
      pid_t init = fork();
      if (init < 0) die("fork");
      if (init == 0) container(argv + i);
      child = init;
      forward_signals();
      for (;;) {
        int status;
        pid_t p = waitpid(init, &status, 0);
        if (p == init) _exit(status_code(status));
        if (p < 0 && errno != EINTR) die("waitpid");
      }
    }
    char b, path[64], map[64];
    if (read(to_parent[0], &b, 1) != 1) die("wait for the user namespace");
    snprintf(map, sizeof map, "0 %ld %ld\n", userns_host, userns_count);
    for (int k = 0; k < 2; k++) {
      snprintf(path, sizeof path, "/proc/%d/%s", child, k == 0 ? "uid_map" : "gid_map");
      int fd = open(path, O_WRONLY | O_CLOEXEC);
      if (fd < 0 || write(fd, map, strlen(map)) != (ssize_t)strlen(map)) die("write %s", path);
      close(fd);
    }
    if (write(to_child[1], "m", 1) != 1) die("release the child");
  } else {
    if (unshare(flags) < 0) die("unshare");
    child = fork();
    if (child < 0) die("fork");
    if (child == 0) container(argv + i);
  }
  /* The monitor: pass signals on, and end as the container ended. */
  forward_signals();
  for (;;) {
    int status;
    pid_t p = waitpid(child, &status, 0);
    if (p == child) return status_code(status);
    if (p < 0 && errno != EINTR) die("waitpid");
  }
}
