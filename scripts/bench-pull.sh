#!/bin/sh
# Pull of a ~130 MB image from a local registry (Debian's docker-registry on 127.0.0.1), in one
# run: strata pull; skopeo copy to an OCI layout plus strata import; podman pull (own root,
# runc). Then a second image sharing all but its top layer. Prints wall times and the blob
# bytes each fetched. Usage: scripts/bench-pull.sh [WORKDIR]   (run as root after setup)
set -eu
cd "$(dirname "$0")/.."
W=${1:-/tmp/strata-bench-pull}
rm -rf "$W"; mkdir -p "$W"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$W/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $W/registry
http:
  addr: 127.0.0.1:$PORT
YML
docker-registry serve "$W/registry.yml" > "$W/registry.log" 2>&1 &
REG=$!
trap 'kill $REG 2>/dev/null; podman --root "$W/podman" --runroot "$W/podman-run" rmi -a -f >/dev/null 2>&1 || true' EXIT
sleep 1
H=127.0.0.1:$PORT

# Layers of random bytes (incompressible, so the network carries their full size): 80 + 40 +
# 8 MB, and a different 8 MB top for the second image.
mk() { mkdir -p "$W/src/$1" && head -c "$2" /dev/urandom > "$W/src/$1/data" && tar -C "$W/src/$1" -cf "$W/$1.tar" . && gzip -1 -k "$W/$1.tar"; }
mk base 80000000; mk mid 40000000; mk top1 8000000; mk top2 8000000
for img in 1 2; do
  umoci init --layout "$W/oci$img" >/dev/null
  umoci new --image "$W/oci$img:v" >/dev/null
  for l in base mid top$img; do umoci raw add-layer --image "$W/oci$img:v" "$W/$l.tar"; done
  skopeo copy --quiet --dest-tls-verify=false "oci:$W/oci$img:v" "docker://$H/big:v$img"
done

t() { s=$(date +%s.%N); "$@" > "$W/last.out" 2>&1; e=$(date +%s.%N); echo "$s $e" | awk '{printf "%.2f", $2-$1}'; }
export STRATA_ROOT="$W/strata"
echo "strata pull big:v1:                       $(t ./strata pull "$H/big:v1") s  ($(grep -o '[0-9.]* [KMG]iB' "$W/last.out" | head -1) fetched)"
echo "strata pull big:v2 (shares 2 of 3 layers): $(t ./strata pull "$H/big:v2") s  ($(grep -o '[0-9]* layers fetched[^)]*' "$W/last.out"))"
export STRATA_ROOT="$W/strata2"
a=$(t skopeo copy --quiet --src-tls-verify=false "docker://$H/big:v1" "oci:$W/copied:v1")
b=$(t ./strata import "$W/copied" --name big:v1)
echo "skopeo copy + strata import big:v1:       $a + $b s  ($(du -sb "$W/copied/blobs" | cut -f1) bytes of blobs)"
if command -v podman >/dev/null; then
  P="podman --root $W/podman --runroot $W/podman-run --storage-driver vfs"
  echo "podman pull big:v1 (vfs):                 $(t $P pull --tls-verify=false "$H/big:v1") s"
  echo "podman pull big:v2:                       $(t $P pull --tls-verify=false "$H/big:v2") s"
fi
