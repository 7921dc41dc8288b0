/*
 * The container's system-call policy, as data: what Docker's default seccomp profile denies to a
 * container with Docker's default capabilities (profiles/seccomp/default.json). Docker allows a
 * list and denies the rest; strata denies the list of what Docker leaves out that a Linux
 * x86_64 kernel has, which is the same in effect for that capability set (strata grants no
 * others: there is no --cap-add). Every entry is one line, to be audited as a table.
 *
 * Deliberate choices, as Docker's: ptrace, process_vm_readv/writev and kcmp are allowed (the
 * pid namespace bounds whom they reach and seccomp is checked after ptrace on kernels >= 4.8);
 * clone3 answers ENOSYS so that libc falls back to clone, whose namespace flags can be checked;
 * a system call of another ABI (i386, x32) answers ENOSYS.
 */
#ifndef STRATA_SECURITY_H
#define STRATA_SECURITY_H

#include <errno.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/sched.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

struct denied_syscall {
  int nr;
  int err;
  const char *why;
};

/* Denied with EPERM unless noted. */
static const struct denied_syscall denied_syscalls[] = {
  {SYS_acct, EPERM, "process accounting (CAP_SYS_PACCT)"},
  {SYS_add_key, EPERM, "kernel keyring is not namespaced"},
  {SYS_keyctl, EPERM, "kernel keyring is not namespaced"},
  {SYS_request_key, EPERM, "kernel keyring is not namespaced"},
  {SYS_bpf, EPERM, "loading BPF programs (CAP_SYS_ADMIN/CAP_BPF)"},
  {SYS_perf_event_open, EPERM, "perf events can observe the host"},
  {SYS_clock_adjtime, EPERM, "setting the clock (CAP_SYS_TIME)"},
  {SYS_clock_settime, EPERM, "setting the clock (CAP_SYS_TIME)"},
  {SYS_settimeofday, EPERM, "setting the clock (CAP_SYS_TIME)"},
  {SYS_create_module, EPERM, "kernel modules (CAP_SYS_MODULE)"},
  {SYS_init_module, EPERM, "kernel modules (CAP_SYS_MODULE)"},
  {SYS_finit_module, EPERM, "kernel modules (CAP_SYS_MODULE)"},
  {SYS_delete_module, EPERM, "kernel modules (CAP_SYS_MODULE)"},
  {SYS_get_kernel_syms, EPERM, "kernel modules (obsolete)"},
  {SYS_query_module, EPERM, "kernel modules (obsolete)"},
  {SYS_kexec_load, EPERM, "loading a new kernel (CAP_SYS_BOOT)"},
  {SYS_kexec_file_load, EPERM, "loading a new kernel (CAP_SYS_BOOT)"},
  {SYS_reboot, EPERM, "rebooting (CAP_SYS_BOOT)"},
  {SYS_mount, EPERM, "mounting (CAP_SYS_ADMIN)"},
  {SYS_umount2, EPERM, "unmounting (CAP_SYS_ADMIN)"},
  {SYS_pivot_root, EPERM, "changing the root mount (CAP_SYS_ADMIN)"},
  {SYS_open_tree, EPERM, "new mount API (CAP_SYS_ADMIN)"},
  {SYS_move_mount, EPERM, "new mount API (CAP_SYS_ADMIN)"},
  {SYS_fsopen, EPERM, "new mount API (CAP_SYS_ADMIN)"},
  {SYS_fsconfig, EPERM, "new mount API (CAP_SYS_ADMIN)"},
  {SYS_fsmount, EPERM, "new mount API (CAP_SYS_ADMIN)"},
  {SYS_fspick, EPERM, "new mount API (CAP_SYS_ADMIN)"},
#ifdef SYS_mount_setattr
  {SYS_mount_setattr, EPERM, "new mount API (CAP_SYS_ADMIN)"},
#endif
  {SYS_unshare, EPERM, "new namespaces (a user namespace would regain capabilities)"},
  {SYS_setns, EPERM, "joining other namespaces"},
  {SYS_swapon, EPERM, "swap (CAP_SYS_ADMIN)"},
  {SYS_swapoff, EPERM, "swap (CAP_SYS_ADMIN)"},
  {SYS_quotactl, EPERM, "quotas (CAP_SYS_ADMIN)"},
#ifdef SYS_quotactl_fd
  {SYS_quotactl_fd, EPERM, "quotas (CAP_SYS_ADMIN)"},
#endif
  {SYS_name_to_handle_at, EPERM, "file handles (CAP_DAC_READ_SEARCH: the shocker escape)"},
  {SYS_open_by_handle_at, EPERM, "file handles (CAP_DAC_READ_SEARCH: the shocker escape)"},
  {SYS_nfsservctl, EPERM, "kernel NFS server (obsolete)"},
  {SYS_lookup_dcookie, EPERM, "profiling (CAP_SYS_ADMIN)"},
  {SYS_fanotify_init, EPERM, "filesystem-wide notification (CAP_SYS_ADMIN)"},
  {SYS_syslog, EPERM, "the kernel log (CAP_SYSLOG)"},
  {SYS_uselib, EPERM, "obsolete"},
  {SYS_ustat, EPERM, "obsolete"},
  {SYS_sysfs, EPERM, "obsolete"},
  {SYS__sysctl, EPERM, "obsolete"},
  {SYS_userfaultfd, EPERM, "widens kernel race windows"},
  {SYS_iopl, EPERM, "I/O ports (CAP_SYS_RAWIO)"},
  {SYS_ioperm, EPERM, "I/O ports (CAP_SYS_RAWIO)"},
  {SYS_vhangup, EPERM, "terminal hangup (CAP_SYS_TTY_CONFIG)"},
  {SYS_get_mempolicy, EPERM, "NUMA policy (CAP_SYS_NICE)"},
  {SYS_set_mempolicy, EPERM, "NUMA policy (CAP_SYS_NICE)"},
  {SYS_mbind, EPERM, "NUMA policy (CAP_SYS_NICE)"},
  {SYS_move_pages, EPERM, "NUMA policy (CAP_SYS_NICE)"},
  {SYS_migrate_pages, EPERM, "NUMA policy (CAP_SYS_NICE)"},
  {SYS_io_uring_setup, EPERM, "io_uring (denied by Docker since 25.0)"},
  {SYS_io_uring_enter, EPERM, "io_uring (denied by Docker since 25.0)"},
  {SYS_io_uring_register, EPERM, "io_uring (denied by Docker since 25.0)"},
  {SYS_clone3, ENOSYS, "its flags cannot be inspected; libc falls back to clone"},
};

/* clone(2) with any of these flags is denied: they make namespaces. */
#define DENIED_CLONE_FLAGS                                                                  \
  (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | \
   CLONE_NEWCGROUP | CLONE_NEWTIME)

#define X32_SYSCALL_BIT 0x40000000

/* Installs the filter on the calling thread (no_new_privs must be set). */
static int install_seccomp(void) {
  enum { N = sizeof denied_syscalls / sizeof *denied_syscalls };
  struct sock_filter f[8 + 2 * N + 8];
  size_t k = 0;
#define ADD(code, jt, jf, kk) (f[k++] = (struct sock_filter)BPF_JUMP(code, kk, jt, jf))
  ADD(BPF_LD | BPF_W | BPF_ABS, 0, 0, offsetof(struct seccomp_data, arch));
  ADD(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, AUDIT_ARCH_X86_64);
  ADD(BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ERRNO | ENOSYS);
  ADD(BPF_LD | BPF_W | BPF_ABS, 0, 0, offsetof(struct seccomp_data, nr));
  ADD(BPF_JMP | BPF_JGE | BPF_K, 0, 1, X32_SYSCALL_BIT);
  ADD(BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ERRNO | ENOSYS);
  for (size_t i = 0; i < N; i++) {
    ADD(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, (unsigned)denied_syscalls[i].nr);
    ADD(BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ERRNO | (unsigned)denied_syscalls[i].err);
  }
  ADD(BPF_JMP | BPF_JEQ | BPF_K, 0, 3, SYS_clone);
  /* x86_64 passes clone's flags in the first argument; its low 32 bits hold them all. */
  ADD(BPF_LD | BPF_W | BPF_ABS, 0, 0, offsetof(struct seccomp_data, args[0]));
  ADD(BPF_JMP | BPF_JSET | BPF_K, 0, 1, DENIED_CLONE_FLAGS);
  ADD(BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ERRNO | EPERM);
  ADD(BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ALLOW);
#undef ADD
  struct sock_fprog prog = {(unsigned short)k, f};
  return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
}

#endif
