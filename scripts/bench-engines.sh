#!/bin/sh
# Start-to-exit of /bin/true under the engines, in one run (issue 11's measurement):
#   ctr run --rm with the strata snapshotter, containerd's overlayfs and native snapshotters;
#   podman run --rm with strata-overlay and fuse-overlayfs as mount_program.
# Prints the median of RUNS runs each. Usage: scripts/bench-engines.sh [RUNS]  (root, after setup)
set -eu
cd "$(dirname "$0")/.."
RUNS=${1:-5}
W=/tmp/strata-bench-engines
rm -rf "$W"; mkdir -p "$W/bin" "$W/bb/bin"
ln -sf "$PWD/strata-overlay" "$W/bin/strata-overlay"
cp /bin/busybox "$W/bb/bin/" && for a in sh true; do ln -sf busybox "$W/bb/bin/$a"; done
tar -C "$W/bb" -cf "$W/bb.tar" .
STRATA_ROOT="$W/strata" ./strata import "$W/bb.tar" --name bb:1 -q >/dev/null
STRATA_ROOT="$W/strata" ./strata save bb:1 -o "$W/bb-archive.tar" 2>/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timeit() { s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }

cat > "$W/config.toml" <<TOML
version = 2
root = "$W/root"
state = "$W/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$W/containerd.sock"
[proxy_plugins]
  [proxy_plugins.strata]
    type = "snapshot"
    address = "$W/snap.sock"
TOML
./strata snapshotter --address "$W/snap.sock" --root "$W/snapshots" > "$W/snapshotter.log" 2>&1 &
SNAP=$!
while [ ! -S "$W/snap.sock" ]; do sleep 0.1; done
PATH="$W/bin:$PATH" containerd --config "$W/config.toml" > "$W/containerd.log" 2>&1 &
CTD=$!
trap 'kill $CTD $SNAP 2>/dev/null || true' EXIT
while [ ! -S "$W/containerd.sock" ] || [ ! -S "$W/snap.sock" ]; do sleep 0.1; done
C="ctr -a $W/containerd.sock"
for sn in strata overlayfs native; do
  $C images import --snapshotter $sn "$W/bb-archive.tar" >/dev/null
  $C run --rm --snapshotter $sn docker.io/library/bb:1 warm-$sn true >/dev/null 2>&1 || true
  i=0; : > "$W/t-$sn"
  while [ $i -lt "$RUNS" ]; do timeit $C run --rm --snapshotter $sn docker.io/library/bb:1 r$i-$sn true >> "$W/t-$sn"; i=$((i+1)); done
  echo "ctr run --rm true, snapshotter $sn: median $(median < "$W/t-$sn") ms of $RUNS"
done

for prog in strata-overlay fuse-overlayfs; do
  path=$(command -v "$prog" || echo "$W/bin/$prog"); [ "$prog" = strata-overlay ] && path="$W/bin/strata-overlay"
  d="$W/podman-$prog"; mkdir -p "$d"
  printf '[storage]\ndriver = "overlay"\ngraphroot = "%s/graph"\nrunroot = "%s/run"\n[storage.options.overlay]\nmount_program = "%s"\n' "$d" "$d" "$path" > "$d/storage.conf"
  P="env CONTAINERS_STORAGE_CONF=$d/storage.conf podman --tmpdir $d/tmp --runtime runc"
  $P load -q -i "$W/bb-archive.tar" >/dev/null
  $P run --rm --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 localhost/bb:1 true >/dev/null
  i=0; : > "$W/p-$prog"
  while [ $i -lt "$RUNS" ]; do timeit $P run --rm --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 localhost/bb:1 true >> "$W/p-$prog"; i=$((i+1)); done
  echo "podman run --rm true, mount_program $prog: median $(median < "$W/p-$prog") ms of $RUNS"
  $P rmi -a -f >/dev/null 2>&1 || true
done
