#!/usr/bin/env bash
# Installs berth-vm's guest kernel: Debian's stock amd64 kernel (the
# package linux-image-amd64 depends on), unpacked into
# /usr/local/lib/berth-vm/kernel (its lib/modules tree and boot/), with
# the image also decompressed to vmlinux, which QEMU boots straight
# through PVH: no decompression under emulation. The package is fetched
# with apt-get download (once; scripts/run-in-vm.sh's cache is reused).
# Nothing is installed into the host's own /boot or /lib/modules.
set -euo pipefail
DEST=${BERTH_VM_DIR:-/usr/local/lib/berth-vm}/kernel
CACHE=/var/cache/berth-vm
pkg=${BERTH_VM_KERNEL_PKG:-$(apt-cache depends linux-image-amd64 |
                            awk '/Depends: linux-image-[0-9]/ {print $2; exit}')}
[ -n "$pkg" ] || { echo "install-vm-kernel.sh: cannot resolve linux-image-amd64 (apt-get update?)" >&2; exit 1; }
if [ -f "$DEST/package" ] && [ "$(cat "$DEST/package")" = "$pkg" ] && [ -s "$DEST/vmlinux" ]; then
    exit 0
fi
mkdir -p "$CACHE/debs"
deb=$(ls "$CACHE/debs/${pkg}_"*.deb /var/tmp/run-in-vm/debs/"${pkg}_"*.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ]; then
    (cd "$CACHE/debs" && apt-get download "$pkg" >&2)
    deb=$(ls "$CACHE/debs/${pkg}_"*.deb | head -n1)
fi
mkdir -p "${DEST%/*}"
work=$(mktemp -d "${DEST%/*}/.kernel.XXXXXX")
trap 'rm -rf "$work"' EXIT
dpkg -x "$deb" "$work/k"
kver=$(ls "$work/k/lib/modules" | head -n1)
# The package leaves modules.dep to its postinst: berth-vm reads it to
# find the drivers its initramfs needs and their dependencies.
/bin/busybox depmod -b "$work/k" "$kver"
# The compressed kernel follows the bzImage's setup code: find the xz
# stream's magic and decompress from there.
bz="$work/k/boot/vmlinuz-$kver"
off=$(set +o pipefail; LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$bz" | head -n1 | cut -d: -f1)
# (xz stops at the stream's end, so tail dies of SIGPIPE: not a failure)
if [ -n "$off" ] && (set +o pipefail; tail -c +"$((off + 1))" "$bz" | xz -dc --single-stream > "$work/k/vmlinux" 2>/dev/null) &&
   [ "$(head -c 4 "$work/k/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ]; then
    :
else
    echo "install-vm-kernel.sh: could not decompress $bz; berth-vm boots the bzImage" >&2
    rm -f "$work/k/vmlinux"
fi
rm -rf "$work/k/usr" "$work/k/etc"
echo "$pkg" > "$work/k/package"
rm -rf "$DEST.old"
[ ! -e "$DEST" ] || mv "$DEST" "$DEST.old"
mv "$work/k" "$DEST"
rm -rf "$DEST.old"
echo "install-vm-kernel.sh: $pkg ($kver) in $DEST" >&2
