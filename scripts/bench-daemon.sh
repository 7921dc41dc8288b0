#!/bin/bash
# Issue 18's figures in one run, strata beside its peers, alternating, medians of RUNS:
#   `strata images` with the daemon, without one, and `podman images`;
#   strata-overlay (the client, the daemon serving) from start to a mount that answers, and
#     fuse-overlayfs; `podman run --rm` with each as mount_program;
#   `strata run --rm IMAGE /bin/true` with and without the daemon, `runc run` on the same
#     rootfs, `podman run --rm --runtime runc` (kernel overlay);
#   `strata diff` / `strata commit` of a one-file change, `podman diff` / `podman commit`;
#   memory: the idle daemon, 50 mounts of the image each walked by find (and fuse-overlayfs's
#     50 processes for the same), the snapshotter served by the daemon.
# The image is a Debian minbase made by debootstrap (cached; the first run reaches Debian's
# mirror) or busybox with IMAGE=busybox. Prints Markdown. Root; after `mvn -DskipTests package`.
# Usage: scripts/bench-daemon.sh [RUNS]
set -eu
RUNS=${1:-11}
here=$(cd "$(dirname "$0")/.." && pwd)
C="$here/runtime/target/native/strata-client"
# short: conmon puts a socket under the runroot, and a socket path has 108 bytes at most
W=/var/tmp/sbd
IMAGE=${IMAGE:-debian}
UL="--ulimit nofile=1024:1024 --ulimit nproc=4096:4096"

cleanup() {
  set +e
  for m in $(awk -v w="$W" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r); do umount -l "$m"; done
  [ -n "${SNAP:-}" ] && kill "$SNAP" 2>/dev/null
  [ -n "${DAEMON:-}" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
  $P rm -af >/dev/null 2>&1; $P rmi -af >/dev/null 2>&1
  for prog in strata-overlay fuse-overlayfs; do
    env CONTAINERS_STORAGE_CONF="$W/p-$prog/storage.conf" podman --tmpdir "$W/p-$prog/tmp" rmi -af >/dev/null 2>&1
  done
}
P="podman --root $W/podman --runroot $W/podman-run --runtime runc"
# at exit, everything but the cached Debian tarball goes (a gigabyte of stores and trees)
trap 'cleanup; find "$W" -mindepth 1 -maxdepth 1 ! -name debian.tar -exec rm -rf {} +' EXIT
cleanup
rm -rf "$W/store" "$W/podman" "$W/podman-run" "$W/p-strata-overlay" "$W/p-fuse-overlayfs" \
  "$W/m" "$W/o" "$W/bundle" "$W/snaps"
mkdir -p "$W/bin" "$W/m" "$W/o"

# --- the image
if [ "$IMAGE" = debian ]; then
  if [ ! -f "$W/debian.tar" ]; then
    rm -rf "$W/rootfs"
    debootstrap --variant=minbase bookworm "$W/rootfs" http://deb.debian.org/debian >/dev/null
    tar -C "$W/rootfs" -cf "$W/debian.tar" .
  fi
  TAR="$W/debian.tar"
else
  rm -rf "$W/bb"; mkdir -p "$W/bb/bin" "$W/bb/etc"
  cp /bin/busybox "$W/bb/bin/"; for a in $(/bin/busybox --list | grep -vx busybox); do ln -sf busybox "$W/bb/bin/$a"; done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$W/bb/etc/passwd"
  tar -C "$W/bb" -cf "$W/bb.tar" .
  TAR="$W/bb.tar"
fi
rm -rf "$W/rootfs"; mkdir -p "$W/rootfs"; tar -C "$W/rootfs" -xf "$TAR"
export STRATA_ROOT="$W/store"
N="env STRATA_SOCKET=none $C"
$N import -q "$TAR" --name bench:1 >/dev/null
$N save bench:1 -o "$W/archive.tar" 2>/dev/null
$P load -q -i "$W/archive.tar" >/dev/null

# --- the daemon, started as a person would (the client execs the JVM with its settings)
rm -f "$W/strata.sock"
STRATA_SOCKET=none "$C" daemon --socket "$W/strata.sock" 2> "$W/daemon.log" &
DAEMON=$!
while ! "$C" daemon status >/dev/null 2>&1 && [ ! -S "$W/strata.sock" ]; do sleep 0.05; done
export STRATA_SOCKET="$W/strata.sock"
D="$C"
ln -sf "$C" "$W/bin/strata-overlay"
until $D daemon status >/dev/null 2>&1; do sleep 0.05; done
sleep 12 # its warm-up, then idle past its first idle trim (every 10 s after work)
fresh=$(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$DAEMON/status")

ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1 || { echo fail; return 0; }; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
median() { printf '%s\n' "$@" | grep -v fail | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "fail"}'; }
ratio() { if [ "$1" = fail ] || [ "$2" = fail ] || [ "$2" = 0 ]; then echo "-"; else echo "scale=2; $1 / $2" | bc; fi; }
rss() { awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$1/status"; }
declare -A t

echo "## strata daemon figures ($(date -u +%Y-%m-%d), $(nproc) cores, image $IMAGE, medians of $RUNS)"
echo
# --- commands
for i in $(seq 1 "$RUNS"); do
  t[img_d]+="$(ms $D images) "
  t[img_n]+="$(ms $N images) "
  t[img_p]+="$(ms $P images) "
done
a=$(median ${t[img_d]}); b=$(median ${t[img_n]}); p=$(median ${t[img_p]})
echo "| what | strata | peer | ratio |"
echo "|---|---|---|---|"
echo "| \`strata images\`, daemon | $a ms | \`podman images\` $p ms | $(ratio "$a" "$p") |"
echo "| \`strata images\`, no daemon | $b ms | \`podman images\` $p ms | $(ratio "$b" "$p") |"

# --- strata-overlay and fuse-overlayfs: start to a mount that answers
mkdir -p "$W/u1" "$W/w1" "$W/u2" "$W/w2"
for i in $(seq 1 "$RUNS"); do
  rm -rf "$W/u1" "$W/w1" "$W/u2" "$W/w2"; mkdir -p "$W/u1" "$W/w1" "$W/u2" "$W/w2"
  t[ovl_s]+="$(ms sh -c "'$W/bin/strata-overlay' -o lowerdir=$W/rootfs,upperdir=$W/u1,workdir=$W/w1 $W/o && stat $W/o/etc/passwd") "
  umount "$W/o"
  t[ovl_f]+="$(ms sh -c "fuse-overlayfs -o lowerdir=$W/rootfs,upperdir=$W/u2,workdir=$W/w2 $W/o && stat $W/o/etc/passwd") "
  umount "$W/o"
done
a=$(median ${t[ovl_s]}); p=$(median ${t[ovl_f]})
echo "| strata-overlay to an answering mount, daemon | $a ms | fuse-overlayfs $p ms | $(ratio "$a" "$p") |"

# --- podman run with each mount_program
for prog in strata-overlay fuse-overlayfs; do
  d="$W/p-$prog"; mkdir -p "$d"
  path=$([ "$prog" = strata-overlay ] && echo "$W/bin/strata-overlay" || command -v fuse-overlayfs)
  printf '[storage]\ndriver = "overlay"\ngraphroot = "%s/graph"\nrunroot = "%s/run"\n[storage.options.overlay]\nmount_program = "%s"\n' "$d" "$d" "$path" > "$d/storage.conf"
  env CONTAINERS_STORAGE_CONF="$d/storage.conf" podman --tmpdir "$d/tmp" load -q -i "$W/archive.tar" >/dev/null
done
pr() { env CONTAINERS_STORAGE_CONF="$W/p-$1/storage.conf" podman --tmpdir "$W/p-$1/tmp" --runtime runc run --rm $UL localhost/bench:1 /bin/true; }
pr strata-overlay >/dev/null 2>&1; pr fuse-overlayfs >/dev/null 2>&1
for i in $(seq 1 "$RUNS"); do
  t[pod_s]+="$(ms pr strata-overlay) "
  t[pod_f]+="$(ms pr fuse-overlayfs) "
done
a=$(median ${t[pod_s]}); p=$(median ${t[pod_f]})
echo "| \`podman run --rm\`, mount_program strata-overlay (daemon) | $a ms | with fuse-overlayfs $p ms | $(ratio "$a" "$p") |"

# --- containers
mkdir -p "$W/bundle"; cp -a "$W/rootfs" "$W/bundle/rootfs"
(cd "$W/bundle" && runc spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"/"\/bin\/true"/' config.json)
$D run --rm bench:1 /bin/true >/dev/null 2>&1 || true
for i in $(seq 1 "$RUNS"); do
  t[run_d]+="$(ms $D run --rm bench:1 /bin/true) "
  t[run_n]+="$(ms $N run --rm bench:1 /bin/true) "
  t[run_r]+="$(cd "$W/bundle" && ms runc run "bench-$$-$i") "
  t[run_p]+="$(ms $P run --rm $UL localhost/bench:1 /bin/true) "
done
a=$(median ${t[run_d]}); b=$(median ${t[run_n]}); r=$(median ${t[run_r]}); p=$(median ${t[run_p]})
echo "| \`strata run --rm IMAGE /bin/true\`, daemon | $a ms | \`runc run\` $r ms | $(ratio "$a" "$r") |"
echo "| \`strata run --rm IMAGE /bin/true\`, daemon | $a ms | \`podman run --rm --runtime runc\` $p ms | $(ratio "$a" "$p") |"
echo "| \`strata run --rm IMAGE /bin/true\`, no daemon | $b ms | \`runc run\` $r ms | $(ratio "$b" "$r") |"

# --- diff and commit of a one-file change
for i in $(seq 1 "$RUNS"); do
  $D mount bench:1 "$W/m" >/dev/null
  echo "change $i" > "$W/m/etc/bench-change"
  t[diff_d]+="$(ms $D diff "$W/m") "
  t[commit_d]+="$(ms $D commit -q "$W/m" "changed:$i") "
  $D umount --rm "$W/m" >/dev/null
  $P run --name "c$i" $UL localhost/bench:1 sh -c "echo change $i > /etc/bench-change" >/dev/null 2>&1
  t[diff_p]+="$(ms $P diff "c$i") "
  t[commit_p]+="$(ms $P commit -q "c$i" "changed:$i") "
  $P rm "c$i" >/dev/null 2>&1
done
a=$(median ${t[diff_d]}); p=$(median ${t[diff_p]})
echo "| \`strata diff\` of a one-file change, daemon | $a ms | \`podman diff\` $p ms | $(ratio "$a" "$p") |"
a=$(median ${t[commit_d]}); p=$(median ${t[commit_p]})
echo "| \`strata commit\` of a one-file change, daemon | $a ms | \`podman commit\` $p ms | $(ratio "$a" "$p") |"

# --- memory
sleep 12 # the daemon collects once idle
DAEMON_JVM=$DAEMON # the client execs the JVM
idle=$(rss "$DAEMON_JVM")
mkdir -p "$W/many/m0"
$D mount --read-only bench:1 "$W/many/m0" >/dev/null
find "$W/many/m0" >/dev/null
sleep 12
one=$(rss "$DAEMON_JVM")
for i in $(seq 1 49); do mkdir -p "$W/many/m$i"; $D mount --read-only bench:1 "$W/many/m$i" >/dev/null; done
pids=""; for i in $(seq 0 49); do find "$W/many/m$i" >/dev/null & pids="$pids $!"; done; wait $pids
sleep 12
fifty=$(rss "$DAEMON_JVM")
for i in $(seq 0 49); do $D umount "$W/many/m$i" >/dev/null; done
for i in $(seq 0 49); do
  mkdir -p "$W/many/u$i" "$W/many/w$i"
  fuse-overlayfs -o "lowerdir=$W/rootfs,upperdir=$W/many/u$i,workdir=$W/many/w$i" "$W/many/m$i"
done
pids=""; for i in $(seq 0 49); do find "$W/many/m$i" >/dev/null & pids="$pids $!"; done; wait $pids
fo=$(ps -C fuse-overlayfs -o rss= | awk '{s += $1} END {print int(s / 1024)}')
for i in $(seq 0 49); do umount "$W/many/m$i"; done
echo
echo "| memory | strata daemon | fuse-overlayfs |"
echo "|---|---|---|"
echo "| idle, fresh | $fresh MiB | - |"
echo "| idle after the runs above | $idle MiB | - |"
echo "| one mount after find | $one MiB | - |"
echo "| 50 mounts after a find of each | $fifty MiB ($(( fifty - one )) MiB more than one) | $fo MiB (50 processes) |"
before=$(rss "$DAEMON_JVM")
$D snapshotter --address "$W/snap.sock" --root "$W/snaps" 2>/dev/null &
SNAP=$!
while [ ! -S "$W/snap.sock" ]; do sleep 0.1; done
sleep 12
after=$(rss "$DAEMON_JVM")
kill "$SNAP"; wait "$SNAP" 2>/dev/null || true; SNAP=
echo "| the containerd snapshotter inside | +$(( after - before )) MiB | - |"
