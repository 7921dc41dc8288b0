#!/bin/bash
# Side-by-side measurements of the union mount for the hot paths: stat walk of a 100,000-file
# tree (cold and warm), readdir of a 10,000-entry directory, 1 GiB sequential read (cold) and
# a 1 GiB copy-up, on a plain directory, kernel overlayfs, fuse-overlayfs and strata, over the
# same lower layer. Backends run in turn, RUNS times each; medians are reported with the ratio
# of each backend to strata. Needs root (mounts, drop_caches).
# Usage: [BACKENDS="kernel strata"] [STRATA_OPTS=timeout=60] scripts/bench-union.sh [RUNS] [WORKDIR]
set -eu
runs=${1:-3}
work=${2:-/var/tmp/strata-bench-union}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$work"
lower="$work/lower"
mounts=()
cleanup() {
  for m in "${mounts[@]:-}"; do
    [ -n "$m" ] && grep -qs " $m " /proc/mounts && umount -l "$m" 2>/dev/null || true
  done
}
trap cleanup EXIT INT TERM

if [ ! -f "$lower/.complete" ]; then
  echo "building the lower layer in $lower (100,000 files, a 10,000-entry directory, 1 GiB file)" >&2
  rm -rf "$lower"; mkdir -p "$lower"
  python3 - "$lower" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(100):
    p = os.path.join(root, "tree", "d%03d" % d)
    os.makedirs(p)
    for f in range(1000):
        with open(os.path.join(p, "f%04d" % f), "wb") as fh:
            fh.write(b"x" * 100)
big = os.path.join(root, "dir10k")
os.makedirs(big)
for f in range(10000):
    open(os.path.join(big, "e%05d" % f), "wb").close()
PY
  dd if=/dev/urandom of="$lower/big" bs=1M count=1024 status=none
  touch "$lower/.complete"
fi

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# Prints the wall time of a command in seconds.
t() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo "scale=3; ($e-$s)/1000000000" | bc; }

mount_backend() { # NAME DIR -> prints the path to use
  local name=$1 d=$2
  rm -rf "$d"; mkdir -p "$d/u" "$d/w" "$d/m"
  case $name in
    plain) cp -a --reflink=auto "$lower/." "$d/m/" 2>/dev/null || cp -a "$lower/." "$d/m/";;
    kernel) mount -t overlay overlay -o "lowerdir=$lower,upperdir=$d/u,workdir=$d/w" "$d/m";;
    fuse-overlayfs) fuse-overlayfs -o "lowerdir=$lower,upperdir=$d/u,workdir=$d/w" "$d/m";;
    strata) "$here/strata" overlay -o "lowerdir=$lower,upperdir=$d/u,workdir=$d/w${STRATA_OPTS:+,$STRATA_OPTS}" "$d/m";;
  esac
  mounts+=("$d/m")
}

declare -A results
backends=(${BACKENDS:-plain kernel fuse-overlayfs strata})
workloads=(stat-walk-cold stat-walk-warm readdir-10k seq-read-1g-cold copy-up-1g)
for run in $(seq 1 "$runs"); do
  for b in "${backends[@]}"; do
    d="$work/$b"
    mount_backend "$b" "$d"
    m="$d/m"
    drop
    results[$b,stat-walk-cold,$run]=$(t find "$m/tree" -printf '%s %i\n')
    results[$b,stat-walk-warm,$run]=$(t find "$m/tree" -printf '%s %i\n')
    results[$b,readdir-10k,$run]=$(t sh -c "for i in 1 2 3 4 5 6 7 8 9 10; do ls -f '$m/dir10k' >/dev/null; done")
    drop
    results[$b,seq-read-1g-cold,$run]=$(t cat "$m/big")
    results[$b,copy-up-1g,$run]=$(t sh -c "echo x >> '$m/big'")
    if [ "$b" != plain ]; then umount "$m"; fi
    echo "run $run $b done" >&2
  done
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "strata union benchmark, $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r), runs=$runs (median seconds; ratio = backend / strata)"
printf '| %-18s |' workload; for b in "${backends[@]}"; do printf ' %-22s |' "$b"; done; echo
printf '|%s|' "--------------------"; for b in "${backends[@]}"; do printf '%s|' "------------------------"; done; echo
for w in "${workloads[@]}"; do
  s_vals=(); for r in $(seq 1 "$runs"); do s_vals+=("${results[strata,$w,$r]}"); done
  s_med=$(median "${s_vals[@]}")
  printf '| %-18s |' "$w"
  for b in "${backends[@]}"; do
    vals=(); for r in $(seq 1 "$runs"); do vals+=("${results[$b,$w,$r]}"); done
    med=$(median "${vals[@]}")
    ratio=$(echo "scale=2; $med / $s_med" | bc 2>/dev/null || echo "?")
    printf ' %-22s |' "${med}s (x$ratio)"
  done
  echo
done
