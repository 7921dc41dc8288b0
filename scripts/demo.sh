#!/bin/sh
# The main job on a fresh machine: install what is needed, build strata, make the sample image,
# import it into a store and show what the store holds. Safe to run twice.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
mvn -B -q -DskipTests package
export STRATA_ROOT="${STRATA_ROOT:-$PWD/.strata-dev/store}"
mkdir -p .strata-dev
scripts/sample-image.sh .strata-dev/sample-oci
./strata import .strata-dev/sample-oci --name sample:latest
./strata images
./strata layers
# Mount it, look inside, write through it, unmount (the upper under the store keeps the write).
mkdir -p .strata-dev/mnt
if grep -qs " $PWD/.strata-dev/mnt " /proc/mounts; then ./strata umount .strata-dev/mnt; fi
./strata mount sample .strata-dev/mnt
ls .strata-dev/mnt
cat .strata-dev/mnt/etc/hostname
echo "written through strata at $(date)" > .strata-dev/mnt/root/hello
./strata umount .strata-dev/mnt
echo "store: $STRATA_ROOT   (./strata --help lists every command)"
