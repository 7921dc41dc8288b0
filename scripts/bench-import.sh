#!/bin/bash
# Import throughput of strata against GNU tar extracting the same layer, both followed by sync,
# alternating runs so both see the same machine. Usage: scripts/bench-import.sh LAYER.tar [RUNS]
# Prints each run and the median ratio strata/tar (below 1: strata is faster).
set -eu
layer=$(realpath "${1:?usage: bench-import.sh LAYER.tar[.gz|.zst] [RUNS]}")
runs=${2:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /var/tmp/strata-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
case $(head -c2 "$layer" | od -An -tx1 | tr -d ' ') in
  1f8b) tarflags=-xzf ;;
  28b5) tarflags=--zstd\ -xf ;;
  *) tarflags=-xf ;;
esac
ratios=()
for i in $(seq 1 "$runs"); do
  rm -rf "$work/x" "$work/st"; mkdir "$work/x"; sync
  t0=$(date +%s%N); tar $tarflags "$layer" -C "$work/x" --same-owner -p; sync; t1=$(date +%s%N)
  "$here/strata" --root "$work/st" import "$layer" -q >/dev/null; sync; t2=$(date +%s%N)
  tar_ms=$(( (t1 - t0) / 1000000 )); strata_ms=$(( (t2 - t1) / 1000000 ))
  ratio=$(echo "scale=2; $strata_ms / $tar_ms" | bc)
  ratios+=("$ratio")
  echo "run $i: tar $tar_ms ms, strata import $strata_ms ms, ratio $ratio"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
size=$(stat -c %s "$layer")
echo "layer: $layer ($((size / 1048576)) MiB, $(tar -tf "$layer" 2>/dev/null | wc -l) entries); median strata/tar ratio: $median"
