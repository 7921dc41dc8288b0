/*
 * The latency of a FUSE mount program, strata-overlay against fuse-overlayfs: fork/exec of
 * the program until it exits (the mount answers), then a first stat through the new mount,
 * then umount2; the two alternate, ROUNDS times. Prints the median, 10th and 90th percentile
 * of each, in milliseconds. No shell or `date` in the timed path.
 * Usage: mount-latency ROUNDS DIR STRATA-OVERLAY   (DIR holds rootfs/ with etc/passwd; root)
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double run(char **argv) {
  double s = now();
  pid_t p = fork();
  if (p == 0) {
    execv(argv[0], argv);
    _exit(127);
  }
  int st;
  waitpid(p, &st, 0);
  if (st) fprintf(stderr, "%s failed: status %d\n", argv[0], st);
  return now() - s;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s ROUNDS DIR STRATA-OVERLAY\n", argv[0]);
    return 2;
  }
  int n = atoi(argv[1]);
  const char *w = argv[2];
  char opts[1024], mp[512], file[600], fresh[1200];
  snprintf(opts, sizeof opts, "lowerdir=%s/rootfs,upperdir=%s/upper,workdir=%s/work", w, w, w);
  snprintf(mp, sizeof mp, "%s/mnt", w);
  snprintf(file, sizeof file, "%s/etc/passwd", mp);
  snprintf(fresh, sizeof fresh, "rm -rf %s/upper %s/work; mkdir -p %s/upper %s/work %s", w, w,
           w, w, mp);
  char *strata[] = {argv[3], "-o", opts, mp, NULL};
  char *peer[] = {"/usr/bin/fuse-overlayfs", "-o", opts, mp, NULL};
  double *t[4];
  for (int k = 0; k < 4; k++) t[k] = calloc((size_t)n, sizeof(double));
  for (int i = 0; i < n; i++) {
    for (int k = 0; k < 2; k++) {
      if (system(fresh) != 0) return 1;
      t[2 * k][i] = run(k ? peer : strata);
      double s = now();
      struct stat sb;
      if (stat(file, &sb) != 0) perror(file);
      t[2 * k + 1][i] = now() - s;
      umount2(mp, 0);
    }
  }
  const char *name[] = {"strata-overlay mount", "strata-overlay first stat",
                        "fuse-overlayfs mount", "fuse-overlayfs first stat"};
  for (int k = 0; k < 4; k++) {
    qsort(t[k], (size_t)n, sizeof(double), cmp);
    printf("%-26s median %6.2f ms   p10 %6.2f   p90 %6.2f\n", name[k], t[k][n / 2],
           t[k][n / 10], t[k][n * 9 / 10]);
  }
  return 0;
}
