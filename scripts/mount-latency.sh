#!/bin/sh
# strata-overlay's latency beside fuse-overlayfs's, timed by a C loop (no shell in the timed
# path): from exec to an answering mount, then the first stat through it, alternating, ROUNDS
# times, on a busybox root; with a daemon of its own (started here, stopped after) that first
# makes WARM mounts. Root; after `mvn -DskipTests package`.
# Usage: scripts/mount-latency.sh [ROUNDS] [WARM]
set -eu
ROUNDS=${1:-60}
WARM=${2:-0}
here=$(cd "$(dirname "$0")/.." && pwd)
C="$here/runtime/target/native/strata-client"
W=$(mktemp -d /var/tmp/strata-latency.XXXXXX)
cleanup() {
  set +e
  umount "$W/mnt" 2>/dev/null
  [ -n "${D:-}" ] && kill "$D" 2>/dev/null
  sleep 1
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/rootfs/bin" "$W/rootfs/etc" "$W/bin"
cp /bin/busybox "$W/rootfs/bin/"
echo 'root:x:0:0:root:/root:/bin/sh' > "$W/rootfs/etc/passwd"
ln -s "$C" "$W/bin/strata-overlay"
gcc -O2 -o "$W/mount-latency" "$here/bench/src/main/c/mount-latency.c"
STRATA_SOCKET=none "$C" daemon --socket "$W/strata.sock" --hold-mounts 0 2> "$W/daemon.log" &
D=$!
export STRATA_SOCKET="$W/strata.sock"
until "$C" daemon status >/dev/null 2>&1; do sleep 0.05; done
sleep 12 # the daemon's warm-up, then idle
i=0
while [ "$i" -lt "$WARM" ]; do
  rm -rf "$W/upper" "$W/work"; mkdir -p "$W/upper" "$W/work" "$W/mnt"
  "$W/bin/strata-overlay" -o "lowerdir=$W/rootfs,upperdir=$W/upper,workdir=$W/work" "$W/mnt"
  stat "$W/mnt/etc/passwd" >/dev/null
  umount "$W/mnt"
  i=$((i + 1))
done
echo "## strata-overlay and fuse-overlayfs, $ROUNDS rounds after $WARM warm-up mounts ($(date -u +%Y-%m-%d), $(nproc) cores)"
"$W/mount-latency" "$ROUNDS" "$W" "$W/bin/strata-overlay" 2>&1 | grep -v lazytime
