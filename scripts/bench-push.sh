#!/bin/sh
# Push of an image committed on a pulled one (issue 16, item 8), beside podman, from a local
# registry (Debian's docker-registry on 127.0.0.1): the base is a Debian minbase made with
# debootstrap (~190 MiB). Each tool pulls the base, commits a one-file change, pushes the
# result to the base's repository, then pushes it again. Prints wall times and what was sent.
# Usage: scripts/bench-push.sh [WORKDIR]   (root; debootstrap reaches Debian's mirror once)
set -eu
cd "$(dirname "$0")/.."
W=${1:-/var/tmp/strata-bench-push}
mkdir -p "$W"
if [ ! -f "$W/debian.tar" ]; then
  rm -rf "$W/rootfs"
  debootstrap --variant=minbase bookworm "$W/rootfs" http://deb.debian.org/debian >/dev/null
  tar -C "$W/rootfs" -cf "$W/debian.tar" .
fi
rm -rf "$W/registry" "$W/strata" "$W/podman" "$W/podman-run" "$W/mnt"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
  "$W/registry" "$PORT" > "$W/registry.yml"
docker-registry serve "$W/registry.yml" > "$W/registry.log" 2>&1 &
REG=$!
P="podman --root $W/podman --runroot $W/podman-run --runtime runc"
trap 'kill $REG 2>/dev/null; $P rm -af >/dev/null 2>&1; $P rmi -af >/dev/null 2>&1 || true; grep -qs " $W/mnt " /proc/mounts && umount -l "$W/mnt"' EXIT
sleep 1
H=127.0.0.1:$PORT
./strata --root "$W/seed" import "$W/debian.tar" --name debian:base >/dev/null
./strata --root "$W/seed" push debian:base "$H/debian:base" -q >/dev/null
rm -rf "$W/seed"

t() { s=$(date +%s.%N); "$@" > "$W/last.out" 2>&1; e=$(date +%s.%N); echo "$s $e" | awk '{printf "%.2f", $2-$1}'; }
export STRATA_ROOT="$W/strata"
./strata pull -q "$H/debian:base" >/dev/null
mkdir -p "$W/mnt"
./strata mount "$H/debian:base" "$W/mnt"
echo changed > "$W/mnt/etc/strata-bench"
./strata umount "$W/mnt"
./strata commit -q "$W/mnt" derived:1 >/dev/null
echo "strata push (first):   $(t ./strata push derived:1 "$H/debian:strata") s   $(grep -o 'pushed.*' "$W/last.out")"
echo "strata push (again):   $(t ./strata push derived:1 "$H/debian:strata") s   $(grep -o 'pushed.*' "$W/last.out")"

$P pull -q --tls-verify=false "$H/debian:base" >/dev/null
$P run --name c1 --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 "$H/debian:base" \
  sh -c 'echo changed > /etc/strata-bench' >/dev/null
$P commit -q c1 derived:1 >/dev/null
echo "podman push (first):   $(t $P push --tls-verify=false derived:1 "$H/debian:podman") s"
echo "podman push (again):   $(t $P push --tls-verify=false derived:1 "$H/debian:podman") s"
du -sh "$W/registry/docker/registry/v2/blobs" | awk '{print "registry blobs: " $1}'
