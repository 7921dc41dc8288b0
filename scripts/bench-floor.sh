#!/bin/bash
# The floor under a FUSE request on this host (issue 19): what a request costs strata beside a
# FUSE server in C that answers from constants (bench/src/main/c/fuse-echo.c), over /dev/fuse
# and over FUSE io_uring, with fuse-overlayfs and kernel overlayfs for scale. Two requests:
#   xattr   - lgetxattr("security.selinux") of 2,000 files that have none, in turn: a GETXATTR
#             round trip each on every FUSE server (what `ls -l` pays per file);
#   getattr - fstat of an open file on a mount with timeout=0: a GETATTR round trip each.
# Each as the caller runs free and pinned to CPU 0 (taskset), ROUNDS rounds of SECONDS each,
# the backends alternating within a round; prints medians (µs per call) and the caller's
# migrations between CPUs. Root; after `mvn -DskipTests package`. Turns the fuse module's
# enable_uring on for the io_uring rows and restores it.
# Usage: [BACKENDS="echo-uring strata-uring …"] scripts/bench-floor.sh [ROUNDS] [SECONDS]
set -eu
ROUNDS=${1:-3}
SECS=${2:-1}
FILES=2000
here=$(cd "$(dirname "$0")/.." && pwd)
W=/var/tmp/strata-floor
E="$W/fuse-echo"
P=/sys/module/fuse/parameters/enable_uring
uring_was=$(cat "$P" 2>/dev/null || echo N)

cleanup() {
  set +e
  for m in $(awk -v w="$W" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r); do umount "$m" || umount -l "$m"; done
  [ -w "$P" ] && echo "$uring_was" > "$P"
}
trap cleanup EXIT
cleanup
rm -rf "$W"; mkdir -p "$W/l/d" "$W/m"
cc -O2 -Wall -o "$E" "$here/bench/src/main/c/fuse-echo.c" -lpthread
for i in $(seq 0 $((FILES - 1))); do printf '' > "$W/l/d/$(printf 'f%05d' "$i")"; done

# mount BACKEND DIR TIMEOUT: the lower under DIR's mountpoint; the echo serves its own tree of
# the same names
mount_one() {
  local b=$1 t=$2 d=$W/m/$1-$2
  rm -rf "$d"; mkdir -p "$d/u" "$d/w" "$d/mnt"
  local o="lowerdir=$W/l,upperdir=$d/u,workdir=$d/w"
  case $b in
    kernel) mount -t overlay overlay -o "$o" "$d/mnt" ;;
    fuse-overlayfs) fuse-overlayfs -o "$o,timeout=$t" "$d/mnt" >/dev/null 2>&1 ;;
    strata-dev|strata-uring)
      STRATA_SOCKET=none "$here/strata" overlay -o "$o,timeout=$t,transport=${b#strata-}" "$d/mnt" >/dev/null ;;
    echo-dev|echo-uring)
      "$E" "$d/mnt" "${b#echo-}" "$t" >/dev/null 2>>"$W/echo.log" &
      until [ -e "$d/mnt/d/f00000" ]; do sleep 0.02; done ;;
  esac
  echo "$d/mnt"
}

declare -A r
backends=${BACKENDS:-kernel fuse-overlayfs echo-dev strata-dev echo-uring strata-uring}
[ -w "$P" ] || backends=$(echo "$backends" | tr ' ' '\n' | grep -v uring | paste -sd' ')
for round in $(seq "$ROUNDS"); do
  for b in $backends; do
    case $b in *uring) echo Y > "$P" ;; *) echo "$uring_was" > "$P" ;; esac
    for kind in xattr getattr; do
      [ "$kind" = getattr ] && [ "$b" = kernel ] && continue
      [ "$kind" = xattr ] && t=86400 || t=0
      mp=$(mount_one "$b" "$t") || { echo "$b: the mount failed" >&2; exit 1; }
      for pin in free cpu0; do
        cpus=0-$(( $(nproc) - 1 )); [ $pin = cpu0 ] && cpus=0
        out=$(taskset -c $cpus "$E" probe $kind "$mp" $FILES "$SECS") || { echo "$b: the probe failed" >&2; exit 1; }
        r[$b,$kind,$pin]="${r[$b,$kind,$pin]:-} ${out% *}"
        r[$b,$kind,$pin,m]="${r[$b,$kind,$pin,m]:-} ${out#* }"
      done
      umount "$mp"
    done
  done
done
median() { printf '%s\n' $@ | sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "-"}'; }

echo "## The floor under a FUSE request ($(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r), medians of $ROUNDS rounds of ${SECS} s)"
echo
echo "| backend | GETXATTR µs, caller free (migrations) | pinned to CPU 0 | GETATTR µs (timeout=0), free | pinned |"
echo "|---|---|---|---|---|"
for b in $backends; do
  row="| $b"
  for kind in xattr getattr; do
    for pin in free cpu0; do
      if [ -z "${r[$b,$kind,$pin]:-}" ]; then row="$row | -"; continue; fi
      v=$(median ${r[$b,$kind,$pin]})
      if [ $pin = free ]; then row="$row | $v ($(median ${r[$b,$kind,$pin,m]}))"; else row="$row | $v"; fi
    done
  done
  echo "$row |"
done
