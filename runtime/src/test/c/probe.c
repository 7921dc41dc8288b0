/*
 * probe: makes each named system call with harmless arguments inside a container and prints
 * "NAME ERRNO" (0 when it succeeded), so a test can tell what the seccomp filter denies.
 * Built statically by SecurityTest and copied into the test image as /bin/probe.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/io_uring.h>

static long probe(const char *name) {
  if (!strcmp(name, "unshare")) return syscall(SYS_unshare, CLONE_NEWUSER);
  if (!strcmp(name, "clone-newuser")) {
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid((pid_t)pid, NULL, 0);
    return pid < 0 ? -1 : 0;
  }
  if (!strcmp(name, "clone-plain")) {
    long pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid((pid_t)pid, NULL, 0);
    return pid < 0 ? -1 : 0;
  }
  if (!strcmp(name, "clone3")) return syscall(SYS_clone3, NULL, 0);
  if (!strcmp(name, "keyctl")) return syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3, 0);
  if (!strcmp(name, "add_key")) return syscall(SYS_add_key, "user", "probe", "v", 1, -2);
  if (!strcmp(name, "setns")) return syscall(SYS_setns, -1, 0);
  if (!strcmp(name, "name_to_handle_at")) {
    char buf[128] = {0};
    int mount_id;
    *(unsigned *)buf = 128 - 8;
    return syscall(SYS_name_to_handle_at, AT_FDCWD, "/", buf, &mount_id, 0);
  }
  if (!strcmp(name, "io_uring_setup")) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    return syscall(SYS_io_uring_setup, 1, &p);
  }
  if (!strcmp(name, "userfaultfd")) return syscall(SYS_userfaultfd, 1 /* UFFD_USER_MODE_ONLY */);
  if (!strcmp(name, "mount")) return syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, 0);
  if (!strcmp(name, "getpid")) return syscall(SYS_getpid);
  errno = EINVAL;
  return -2;
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    errno = 0;
    long r = probe(argv[i]);
    if (r == -2) { fprintf(stderr, "probe: unknown call %s\n", argv[i]); return 2; }
    printf("%s %d\n", argv[i], r < 0 ? errno : 0);
  }
  return 0;
}
