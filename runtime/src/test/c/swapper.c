/*
 * The attacker of issue 16, item 3: swaps two names (a directory and a symlink pointing out of
 * the root) with renameat2(RENAME_EXCHANGE) in a loop, as fast as it can, so that anything
 * walking the container's upper by path follows the symlink somewhere. Usage: swapper A B
 * (it runs until killed; after the first swap it creates the file READY if given as $3).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: swapper A B [READY]\n");
    return 2;
  }
  for (long i = 0;; i++) {
    if (syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2], RENAME_EXCHANGE) < 0) {
      perror("renameat2");
      return 1;
    }
    if (i == 0 && argc > 3) close(open(argv[3], O_CREAT | O_WRONLY, 0644));
  }
}
