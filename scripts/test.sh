#!/bin/sh
# Runs every test, as CI does: installs what the tests need, then builds and tests the reactor.
# Tests mount and restore owners and device nodes, so they run as root.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
exec mvn -B -ntp verify
