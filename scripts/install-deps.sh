#!/bin/sh
# Installs the Debian packages strata builds, runs and tests with. Safe to run twice: it asks
# apt only for what is missing. libfuse2 is what jnr-fuse loads; fuse3 brings fusermount3
# (Debian's fuse and fuse3 packages exclude each other, so the old fuse is not asked for).
# uidmap brings newuidmap/newgidmap for the rootless tests, slirp4netns their private network.
set -eu
pkgs="openjdk-17-jdk-headless maven gcc libc6-dev libfuse2 fuse3 fuse-overlayfs busybox-static
umoci skopeo tar gzip zstd debootstrap sqlite3 git docker-registry apache2-utils openssl attr podman buildah runc containerd uidmap slirp4netns"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages:$missing (run as root, or install them)" >&2
    exit 1
  fi
  echo "install-deps: installing$missing" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
