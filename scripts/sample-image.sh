#!/bin/sh
# Builds the sample image: a busybox userland from Debian's busybox-static, as an OCI image
# layout made by umoci (two layers: the userland, then a layer that changes and deletes a
# file). Usage: scripts/sample-image.sh DIR   (DIR is replaced)
set -eu
out=${1:?usage: sample-image.sh DIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$out"
umoci init --layout "$out"
umoci new --image "$out:latest"
umoci unpack --image "$out:latest" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/root"
chmod 1777 "$rootfs/tmp"
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list); do
  [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
done
echo "root:x:0:0:root:/root:/bin/sh" > "$rootfs/etc/passwd"
echo "root:x:0:" > "$rootfs/etc/group"
echo "Welcome to the strata sample image." > "$rootfs/etc/motd"
umoci repack --refresh-bundle --image "$out:latest" "$work/bundle"
echo "strata-sample" > "$rootfs/etc/hostname"
rm "$rootfs/etc/motd"
umoci repack --image "$out:latest" "$work/bundle"
umoci config --image "$out:latest" --config.cmd /bin/sh --config.env PATH=/bin
