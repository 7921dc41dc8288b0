#!/bin/bash
# Start-to-exit time of `strata run --rm IMAGE /bin/true` beside `runc run` and `crun run` on
# the same busybox rootfs, alternating, median of RUNS. crun 1.8 refuses hybrid cgroup
# machines ("cgroups in hybrid mode not supported"); it is then reported as failed.
# Usage: scripts/bench-run.sh [RUNS]
set -eu
runs=${1:-11}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /var/tmp/strata-bench-run.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bundle/rootfs/bin"
cp /bin/busybox "$work/bundle/rootfs/bin/"
ln -s busybox "$work/bundle/rootfs/bin/true"
(cd "$work/bundle" && runc spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"/"\/bin\/true"/' config.json)
tar -C "$work/bundle/rootfs" -cf "$work/bb.tar" .
export STRATA_ROOT="$work/store"
"$here/strata" import "$work/bb.tar" --name bench-true:1 -q >/dev/null
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1 || return 1; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
declare -A t
for i in $(seq 1 "$runs"); do
  t[strata]+="$(ms "$here/strata" run --rm bench-true:1 /bin/true || echo fail) "
  t[runc]+="$(cd "$work/bundle" && ms runc run "bench-$$-$i" || echo fail) "
  t[crun]+="$(cd "$work/bundle" && ms crun run "bench-$$-$i" || echo fail) "
done
median() { printf '%s\n' "$@" | grep -v fail | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "fail"}'; }
s=$(median ${t[strata]})
echo "start-to-exit of /bin/true, median of $runs, $(date -u +%Y-%m-%d), $(nproc) cores"
for tool in strata runc crun; do
  m=$(median ${t[$tool]})
  if [ "$m" = fail ]; then echo "$tool: failed"; else echo "$tool: ${m} ms (x$(echo "scale=2; $m / $s" | bc) of strata)"; fi
done
