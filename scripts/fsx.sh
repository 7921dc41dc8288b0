#!/bin/bash
# fsxlite (unionfs/src/test/c/fsxlite.c, in the manner of xfstests' fsx) on kernel overlayfs
# and on strata with and without passthrough, each with a reader held open from before the
# copy-up, and a check that the lower layer did not change. Needs root and a build
# (mvn -DskipTests package). Usage: scripts/fsx.sh [OPS] [SEEDS] [WORKDIR]
set -eu
ops=${1:-100000}
seeds=${2:-3}
work=${3:-/var/tmp/strata-fsx}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$work"
cc -O2 -o "$work/fsxlite" "$here/unionfs/src/test/c/fsxlite.c"
mounted=()
cleanup() {
  for m in "${mounted[@]:-}"; do
    [ -n "$m" ] && grep -qs " $m " /proc/mounts && umount -l "$m" 2>/dev/null || true
  done
}
trap cleanup EXIT INT TERM
rm -rf "$work/lower"; mkdir -p "$work/lower"
for s in $(seq "$seeds"); do head -c 300000 /dev/urandom > "$work/lower/f$s"; done
before=$(cd "$work/lower" && sha256sum f*)
run() { # NAME HELD-MODE MOUNT-COMMAND...
  local name=$1 held=$2; shift 2
  rm -rf "$work/$name"; mkdir -p "$work/$name/upper" "$work/$name/work" "$work/$name/mnt"
  "$@" "$work/$name/mnt"
  mounted+=("$work/$name/mnt")
  for s in $(seq "$seeds"); do
    printf '%-28s seed %s: ' "$name" "$s"
    "$work/fsxlite" -N "$ops" -S "$s" -H "$held" "$work/$name/mnt/f$s"
  done
  umount "$work/$name/mnt"
}
o() { echo "lowerdir=$work/lower,upperdir=$work/$1/upper,workdir=$work/$1/work"; }
run kernel-overlayfs new mount -t overlay overlay -o "$(o kernel-overlayfs)"
run strata-passthrough old "$here/strata" overlay -o "$(o strata-passthrough)"
run strata-no-passthrough new "$here/strata" overlay -o "$(o strata-no-passthrough),passthrough=0"
after=$(cd "$work/lower" && sha256sum f*)
if [ "$before" != "$after" ]; then
  echo "fsx.sh: THE LOWER LAYER CHANGED" >&2
  exit 1
fi
echo "fsx.sh: every run matched; the lower layer is unchanged"
