#!/usr/bin/env bash
# make-bundle.sh DIR: an OCI bundle whose rootfs is Debian's static busybox,
# and whose process says where it runs.
set -euo pipefail
dir=$1
busybox=${BUSYBOX:-/bin/busybox}
berth_runtime=${BERTH_RUNTIME:-berth-runtime}
rm -rf "$dir"
mkdir -p "$dir/rootfs"/{bin,etc,proc,sys,dev,tmp,root}
cp "$busybox" "$dir/rootfs/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$dir/rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$dir/rootfs/etc/passwd"
echo 'root:x:0:' >"$dir/rootfs/etc/group"
cd "$dir"
"$berth_runtime" spec
# No terminal: the demo must work from scripts and CI as well.
jq '.process.terminal = false
    | .process.args = ["sh", "-c", "echo hello from $(hostname): pid $$ of a berth container on $(uname -sr)"]' \
    config.json >config.json.new
mv config.json.new config.json
