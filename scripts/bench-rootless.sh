#!/bin/bash
# Issue 21's figures, strata beside its peers, alternating, medians of RUNS:
#   rootless `podman run --rm IMAGE true` with mount_program strata-overlay (served by the
#   user's daemon, fresh and then warm, and by a JVM of its own) and fuse-overlayfs;
#   `strata run --rm IMAGE /bin/true` as a user (a user namespace of the user's subordinate
#   ids) and as root, each with its daemon and without one.
# Makes a user `strata-bench` (home under /var/tmp/sbr, subordinate ids from useradd), sets
# /dev/fuse 0666 for the run, and undoes both at the end. The image is busybox-static.
# Root; after `mvn -DskipTests package`. Usage: scripts/bench-rootless.sh [RUNS]
set -eu
RUNS=${1:-11}
here=$(cd "$(dirname "$0")/.." && pwd)
C="$here/runtime/target/native/strata-client"
W=/var/tmp/sbr
U=strata-bench
UL="--ulimit nofile=1024:1024 --ulimit nproc=4096:4096"
fuse_mode=$(stat -c %a /dev/fuse)

cleanup() {
  set +e
  if id "$U" >/dev/null 2>&1; then
    pkill -KILL -u "$U"; sleep 0.5
    userdel "$U"
  fi
  rm -rf "/tmp/hsperfdata_$U" # the user's JVMs' perf data outlives the user
  [ -n "${DAEMON:-}" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
  for m in $(awk -v w="$W" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r); do umount -l "$m"; done
  chmod "$fuse_mode" /dev/fuse
  rm -rf "$W" "/run/user/$uid"
}
trap cleanup EXIT
uid=none
cleanup
mkdir -p "$W"; chmod 755 "$W"
useradd -m -d "$W/home" -U -s /bin/sh "$U"
uid=$(id -u "$U")
mkdir -p -m 700 "/run/user/$uid"; chown "$U:$U" "/run/user/$uid"
chmod 666 /dev/fuse

# --- the image: busybox, as a tar for strata and a docker-archive for podman
mkdir -p "$W/bb/bin" "$W/bb/etc" "$W/bb/tmp"
cp /bin/busybox "$W/bb/bin/"; for a in $(/bin/busybox --list | grep -vx busybox); do ln -sf busybox "$W/bb/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$W/bb/etc/passwd"
tar -C "$W/bb" -cf "$W/bb.tar" .
STRATA_SOCKET=none STRATA_ROOT="$W/root-store" "$C" import -q "$W/bb.tar" --name bench:1 >/dev/null
STRATA_SOCKET=none STRATA_ROOT="$W/root-store" "$C" save bench:1 -o "$W/archive.tar"
chmod 644 "$W/bb.tar" "$W/archive.tar"

as_user() { setpriv --reuid="$uid" --regid="$uid" --init-groups --reset-env \
  env XDG_RUNTIME_DIR="/run/user/$uid" "$@"; }
for prog in strata-overlay fuse-overlayfs; do
  p=$( [ $prog = strata-overlay ] && echo "$here/runtime/target/native/strata-overlay" || echo /usr/bin/fuse-overlayfs )
  mkdir -p "$W/home/$prog"
  printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n[storage.options.overlay]\nmount_program = "%s"\n' \
    "$W/home/$prog/graph" "/run/user/$uid/$prog" "$p" > "$W/home/$prog/storage.conf"
  chown -R "$U:$U" "$W/home/$prog"
  as_user env CONTAINERS_STORAGE_CONF="$W/home/$prog/storage.conf" podman load -q -i "$W/archive.tar" >/dev/null
done
as_user env STRATA_SOCKET=none "$C" import -q "$W/bb.tar" --name bench:1 >/dev/null
# the user's daemon, as the user starts it (the client puts it in the user's namespace)
as_user setsid "$C" daemon > "$W/user-daemon.log" 2>&1 < /dev/null &
until as_user "$C" daemon status >/dev/null 2>&1; do sleep 0.05; done

STRATA_SOCKET=none "$C" daemon --socket "$W/strata.sock" 2> "$W/daemon.log" &
DAEMON=$!
until STRATA_SOCKET="$W/strata.sock" "$C" daemon status >/dev/null 2>&1; do sleep 0.05; done

ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>>"$W/errors" || { echo fail; return 0; }; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
median() { printf '%s\n' "$@" | grep -v fail | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "fail"}'; }
ratio() { if [ "$1" = fail ] || [ "$2" = fail ] || [ "$2" = 0 ]; then echo "-"; else echo "scale=2; $1 / $2" | bc; fi; }
declare -A t
# a podman pair, in ABBA order (the even rounds start with fuse-overlayfs), so that neither
# program always runs right after the other: each run leaves work behind (a JIT compiling
# what it ran, podman's cleanup), which the next run pays for
pair() {
  local order="strata-overlay fuse-overlayfs"
  [ $(( $2 % 2 )) = 0 ] && order="fuse-overlayfs strata-overlay"
  for prog in $order; do
    t[$1$prog]+="$(ms as_user env CONTAINERS_STORAGE_CONF="$W/home/$prog/storage.conf" podman run --rm --runtime runc --network none $UL localhost/bench:1 true) "
  done
}
# the user's daemon fresh: its first RUNS containers, with nothing else run in between (the
# other figures below ran between them before 2026-12-07, and their JVMs and the root
# daemon's compilations fell on the podman run that came next)
for i in $(seq 1 "$RUNS"); do pair "" "$i"; done
# the same again, the user's daemon now warm: a user's daemon runs for long
for i in $(seq 1 "$RUNS"); do pair w- "$i"; done
for i in $(seq 1 "$RUNS"); do
  t[ovl_n]+="$(ms as_user env STRATA_SOCKET=none CONTAINERS_STORAGE_CONF="$W/home/strata-overlay/storage.conf" podman run --rm --runtime runc --network none $UL localhost/bench:1 true) "
  t[user]+="$(ms as_user env STRATA_SOCKET=none "$C" run --rm bench:1 /bin/true) "
  t[userd]+="$(ms as_user "$C" run --rm bench:1 /bin/true) "
  t[root]+="$(ms env STRATA_SOCKET=none STRATA_ROOT="$W/root-store" "$C" run --rm bench:1 /bin/true) "
  t[rootd]+="$(ms env STRATA_SOCKET="$W/strata.sock" STRATA_ROOT="$W/root-store" "$C" run --rm bench:1 /bin/true) "
done
a=$(median ${t[strata-overlay]}); b=$(median ${t[fuse-overlayfs]})
wa=$(median ${t[w-strata-overlay]}); wb=$(median ${t[w-fuse-overlayfs]})
echo "## rootless figures ($(date -u +%Y-%m-%d), $(nproc) cores, busybox, medians of $RUNS)"
echo
echo "| what | strata | peer | ratio |"
echo "|---|---|---|---|"
n=$(median ${t[ovl_n]})
echo "| rootless \`podman run --rm IMAGE true\`, strata-overlay served by the user's daemon, its first $RUNS | $a ms | fuse-overlayfs $b ms | $(ratio "$a" "$b") |"
echo "| the same, the next $RUNS (the daemon warm) | $wa ms | fuse-overlayfs $wb ms | $(ratio "$wa" "$wb") |"
echo "| rootless \`podman run --rm IMAGE true\`, strata-overlay in a JVM of its own | $n ms | fuse-overlayfs (first $RUNS) $b ms | $(ratio "$n" "$b") |"
u=$(median ${t[user]}); ud=$(median ${t[userd]}); r=$(median ${t[root]}); d=$(median ${t[rootd]})
echo "| \`strata run --rm IMAGE /bin/true\` as a user, daemon | $ud ms | as root, daemon $d ms | $(ratio "$ud" "$d") |"
echo "| \`strata run --rm IMAGE /bin/true\` as a user, no daemon | $u ms | as root, no daemon $r ms | $(ratio "$u" "$r") |"
if [ -s "$W/errors" ]; then
  echo; echo "what failed (each once):"; sort -u "$W/errors" | head -20
fi >&2
