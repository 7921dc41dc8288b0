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
echo "store: $STRATA_ROOT   (./strata --help lists every command)"
