#!/bin/bash
# What keeping mounts with strata-holder (so that they outlive a crash of the daemon) costs and
# gives, as root, after `mvn -DskipTests package`:
#   1. a first and a second `find -ls` of 100,000 files (1,000 directories) through a
#      daemon's strata-overlay mount, with checkpoints every second and without
#      (--checkpoint-interval 0), alternating, ROUNDS rounds;
#   2. the pause a process working in a mount sees when the daemon is SIGKILLed and a new one
#      started at once: the longest gap between its answers, and whether any failed.
# Usage: scripts/bench-crash.sh [ROUNDS]   (scratch under /var/tmp/strata-bench-crash)
set -eu
rounds=${1:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
strata="$here/strata"
base=/var/tmp/strata-bench-crash
sock=$base/s.sock
export STRATA_SOCKET=$sock
mkdir -p $base
cleanup() {
  fusermount3 -u $base/m 2>/dev/null || true
  pkill -TERM -f "daemon --socket $sock" 2>/dev/null || true
  sleep 2
  pkill -KILL -f "strata-holder $base" 2>/dev/null || true
}
trap cleanup EXIT
if [ ! -d $base/l ]; then
  python3 -c "
import os
for d in range(1000):
    p='$base/l/d%04d' % d; os.makedirs(p)
    for f in range(100): open('%s/f%03d' % (p, f), 'w').write('x')
"
fi
start_daemon() {
  (setsid "$strata" daemon --socket $sock --checkpoint-interval $1 > $base/daemon.log 2>&1 &)
  for _ in $(seq 300); do "$strata" daemon status > /dev/null 2>&1 && return; sleep 0.1; done
  echo "the daemon did not start: $(cat $base/daemon.log)" >&2; exit 1
}
mount_it() {
  rm -rf $base/u $base/w && mkdir -p $base/u $base/w $base/m
  "$strata" overlay -o lowerdir=$base/l,upperdir=$base/u,workdir=$base/w none $base/m
}
stop_daemon() {
  "$strata" umount $base/m
  pkill -TERM -f "daemon --socket $sock"; sleep 2
}
now() { date +%s.%N; }
echo "| round | checkpoints | first find -ls | second | checkpoints written (ms spent) |"
echo "|---|---|---|---|---|"
for r in $(seq $rounds); do
  for ck in 0 1000; do
    start_daemon $ck; mount_it
    sync; echo 2 > /proc/sys/vm/drop_caches
    a=$(now); find $base/m -ls > /dev/null; b=$(now); find $base/m -ls > /dev/null; c=$(now)
    st=$("$strata" daemon status --format json | python3 -c \
      'import json,sys; s=json.load(sys.stdin); print("%d (%d)" % (s["checkpoints"], s["checkpointMillis"]))')
    printf "| %s | %s | %.2f s | %.2f s | %s |\n" $r "$([ $ck = 0 ] && echo off || echo "every ${ck} ms")" \
      "$(echo "$b - $a" | bc)" "$(echo "$c - $b" | bc)" "$st"
    stop_daemon
  done
done
echo
echo "SIGKILL of the daemon under a worker (stat, read, append+fsync every 10 ms):"
start_daemon 1000; mount_it
python3 - "$base/m" "$base/stop" > $base/worker.out 2>&1 <<'PY' &
import os, sys, time
m, stop = sys.argv[1], sys.argv[2]
os.chdir(m + '/d0001')
log = open('log', 'a')
last, gap, fails, n = time.monotonic(), 0.0, 0, 0
while not os.path.exists(stop):
    try:
        os.stat('f001'); open('f002').read(); log.write('%d\n' % n); log.flush(); os.fsync(log.fileno())
    except OSError as e:
        fails += 1
    t = time.monotonic(); gap = max(gap, t - last); last = t; n += 1
    time.sleep(0.01)
print('rounds %d, failures %d, longest gap %.0f ms' % (n, fails, gap * 1000))
PY
worker=$!
sleep 3
pkill -KILL -f "java.*daemon --socket $sock"
start_daemon 1000
sleep 2; touch $base/stop; wait $worker; rm -f $base/stop
cat $base/worker.out
grep -E "resumed|took over|could not" $base/daemon.log | sed 's/^[^ ]* //'
