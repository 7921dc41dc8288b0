#!/bin/sh
# The CRI benchmark (issue 20): containerd 1.6's CRI plugin on the overlayfs snapshotter and on
# strata's, alternated in each round, driven through the CRI's gRPC API (CriBench, a JUnit
# class that runs only when asked). Needs a root file system tar of a Debian image: made by
# debootstrap and cached in WORKDIR (the first run reaches Debian's mirror once).
# Usage: scripts/bench-cri.sh [ROUNDS] [WORKDIR]   (root; default 3 rounds, /var/tmp)
set -eu
rounds=${1:-3}
W=${2:-/var/tmp}
cd "$(dirname "$0")/.."
if [ ! -f "$W/debian.tar" ]; then
  rm -rf "$W/rootfs"
  debootstrap --variant=minbase bookworm "$W/rootfs" http://deb.debian.org/debian >/dev/null
  tar -C "$W/rootfs" -cf "$W/debian.tar" .
  rm -rf "$W/rootfs"
fi
mvn -q -o install -DskipTests >/dev/null
cd runtime
mvn -q -o surefire:test@default-test -Dtest=CriBench -Dsurefire.failIfNoSpecifiedTests=false \
  -Dstrata.bench.cri="$W/debian.tar" -Dstrata.bench.rounds="$rounds" ${STRATA_BENCH_OPTS:-}
sed -n '/^CRI benchmark/,$p' target/surefire-reports/io.strata.cli.CriBench-output.txt
