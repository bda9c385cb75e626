#!/usr/bin/env bash
# run-in-vm.sh - run one command inside a throw-away QEMU VM whose kernel
# mounts a pure cgroup v2 hierarchy (cgroup_no_v1=all) at /sys/fs/cgroup.
#
#   run-in-vm.sh [options] [--] COMMAND [ARGS...]
#
# The VM:
#   * boots Debian's stock amd64 kernel (linux-image-amd64's dependency,
#     fetched once with `apt-get download` and cached) under QEMU, with a
#     tiny busybox initramfs that loads the virtio/9p/overlay modules;
#     the package's full module tree is then visible at /lib/modules/<kver>
#     (veth, bridge, dummy, tun, loop preloaded; others auto-load);
#   * sees the host's root filesystem read-only over 9p, with a tmpfs
#     overlay on top (so /etc, /var, ... are writable, changes discarded),
#     plus fresh tmpfs on /tmp and /run;
#   * sees the work directory (default: $PWD; more with repeated -w)
#     read-write over 9p at the same absolute path, and runs COMMAND in the
#     first one as root, stdin </dev/null, stdout+stderr on the console;
#   * mounts cgroup2 at /sys/fs/cgroup (nsdelegate,memory_recursiveprot)
#     and enables every available controller in the root's
#     cgroup.subtree_control (with -s, systemd does the cgroup setup);
#   * prints COMMAND's output on the serial console, then powers off.
# The script exits with COMMAND's exit status; 124 if the VM ran out of
# time, 125 if the VM failed before/around running the command.
#
# Options (environment variable in brackets):
#   -w DIR   directory shared read-write at the same path; the first
#            one is the command's cwd; repeatable      [VM_WORKDIR, $PWD]
#   -t SECS  wall-clock timeout for the whole VM       [VM_TIMEOUT, 900]
#   -m MiB   guest memory                              [VM_MEM, 2048]
#   -c N     guest CPUs                                [VM_CPUS, 2]
#   -a ACCEL kvm | tcg | auto                          [VM_ACCEL, auto]
#   -M TYPE  pc | q35                                  [VM_MACHINE, pc]
#   -s       boot the host's systemd as PID 1 and run COMMAND as a
#            service (for systemd cgroup-driver tests) [VM_SYSTEMD=1]
#   -v       show kernel/init messages too             [VM_VERBOSE=1]
#   -h       help
# Other environment: VM_CACHE (kernel+initramfs cache dir,
#   default /var/tmp/run-in-vm), VM_KERNEL_PKG (Debian package to boot,
#   default: what linux-image-amd64 depends on), VM_EXTRA_MODULES
#   (space-separated extra kernel modules to load), VM_APPEND (extra
#   kernel command line), VM_QEMU_ARGS (extra qemu args, word-split),
#   VM_ENV (space-separated names of host variables to pass into the guest,
#   or '*' for every exported variable but a few host-specific ones),
#   VM_KEEP=1 (keep the per-run temp dir with console.log).
# Host /tmp is NOT visible in the guest (fresh tmpfs): share what you
# need with -w.  Guest is TCG-emulated unless real KVM is available.
#
# "auto" picks KVM only if /dev/kvm is usable AND the CPU advertises
# vmx/svm; otherwise TCG (software emulation).  (On a PVM-nested host,
# /dev/kvm exists but runs a stock kernel extremely slowly: use TCG.)
set -euo pipefail

ME=${0##*/}
CACHE=${VM_CACHE:-/var/tmp/run-in-vm}
SHARES=()
TIMEOUT=${VM_TIMEOUT:-900}
MEM=${VM_MEM:-2048}
CPUS=${VM_CPUS:-2}
ACCEL=${VM_ACCEL:-auto}
MACHINE=${VM_MACHINE:-pc}
VERBOSE=${VM_VERBOSE:-0}
SYSTEMD=${VM_SYSTEMD:-0}

# Kernel modules.  BASE_MODULES (+ dependencies) are copied into the
# initramfs: needed to mount the root.  LATE_MODULES are loaded after
# switch_root from the complete module tree of the cached package, which the
# guest sees at /lib/modules/<kver> (so the kernel can also auto-load any
# other module, e.g. nf_tables for iptables).  Everything else needed
# (cgroups, namespaces, tmpfs, devtmpfs, 8250 serial, bpf, seccomp) is
# built into Debian's kernel.
BASE_MODULES="virtio_pci 9pnet_virtio 9p overlay"
LATE_MODULES="veth bridge dummy tun loop ${VM_EXTRA_MODULES:-}"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
die() { echo "$ME: $*" >&2; exit 125; }

while getopts "w:t:m:c:a:M:svh" opt; do
    case $opt in
        w) SHARES+=("$OPTARG") ;;
        t) TIMEOUT=$OPTARG ;;
        m) MEM=$OPTARG ;;
        c) CPUS=$OPTARG ;;
        a) ACCEL=$OPTARG ;;
        M) MACHINE=$OPTARG ;;
        s) SYSTEMD=1 ;;
        v) VERBOSE=1 ;;
        h) usage 0 ;;
        *) usage 2 >&2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || usage 2 >&2

command -v qemu-system-x86_64 >/dev/null ||
    die "qemu-system-x86_64 missing (apt-get install --no-install-recommends qemu-system-x86)"
[ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 ||
    die "/bin/busybox must be a static busybox (apt-get install busybox-static)"
[ ${#SHARES[@]} -gt 0 ] || SHARES=("${VM_WORKDIR:-$PWD}")
for i in "${!SHARES[@]}"; do
    SHARES[i]=$(realpath -e -- "${SHARES[i]}") || die "no such directory: ${SHARES[i]}"
    [ -d "${SHARES[i]}" ] && [ "${SHARES[i]}" != / ] || die "cannot share ${SHARES[i]}"
    case ${SHARES[i]} in *$'\n'*) die "newline in path ${SHARES[i]}" ;; esac
done
WORKDIR=${SHARES[0]}

# --------------------------------------------------------------------------
# Guest side, stage 1: /init of the initramfs (runs as PID 1).
# --------------------------------------------------------------------------
read -r -d '' STAGE1 <<'EOF_STAGE1' || true
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
. /vm/env
log() { [ "$VM_VERBOSE" = 1 ] && echo "vm-init: $*"; return 0; }
fatal() {
    echo "vm-init: FATAL: $*"
    echo "${VM_TOKEN}_EXIT=125"
    poweroff -f; sleep 2; reboot -f
}
for m in $(cat /vm/modules); do
    modprobe "$m" 2>/vm/modprobe.err || log "modprobe $m failed: $(cat /vm/modprobe.err)"
done
log "base modules loaded"
O9P="trans=virtio,version=9p2000.L,msize=262144"
mkdir -p /mnt/lower /mnt/rw /newroot
n=0
until mount -t 9p -o "$O9P,ro,cache=loose" hostroot /mnt/lower; do
    n=$((n + 1)); [ $n -lt 30 ] || fatal "cannot mount host root over 9p"
    sleep 0.1
done
mount -t tmpfs -o mode=0755 rwlayer /mnt/rw
mkdir -p /mnt/rw/upper /mnt/rw/work
if ! mount -t overlay -o lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work rootfs /newroot; then
    log "overlay root failed: read-only root, tmpfs on /var"
    mount --bind /mnt/lower /newroot
    mount -t tmpfs -o mode=0755 tmpfs /newroot/var
fi
rm -f /newroot/.dockerenv /newroot/run/.containerenv 2>/dev/null  # a VM, not a container
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
mount -t tmpfs -o mode=0755 tmpfs /newroot/run
mkdir -p /newroot/run/vm
cp /bin/busybox /vm/env /vm/cmd /vm/stage2 /vm/runcmd /newroot/run/vm/
i=0
while IFS= read -r d; do
    mkdir -p "/newroot$d" && mount -t 9p -o "$O9P,cache=mmap" "share$i" "/newroot$d" ||
        fatal "cannot mount $d over 9p"
    i=$((i + 1))
done < /vm/shares
kdir=/lib/modules/$(uname -r)
if [ -f "/mnt/lower$VM_MODDIR/modules.dep" ] && mkdir -p "/newroot$kdir"; then
    mount --bind "/mnt/lower$VM_MODDIR" "/newroot$kdir" || log "cannot bind $VM_MODDIR"
fi
for d in proc sys dev; do mount --move /$d /newroot/$d; done
log "switching root"
exec switch_root /newroot /run/vm/busybox sh /run/vm/stage2
EOF_STAGE1

# --------------------------------------------------------------------------
# Guest side, stage 2: PID 1 on the real root (host root + overlay).
# --------------------------------------------------------------------------
read -r -d '' STAGE2 <<'EOF_STAGE2' || true
bb=/run/vm/busybox
. /run/vm/env
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/run/vm/bin
export HOME=/root TERM=dumb LANG=C.UTF-8
log() { [ "$VM_VERBOSE" = 1 ] && echo "vm-init: $*"; return 0; }
$bb stty -onlcr 2>/dev/null
$bb mkdir -p /run/vm/bin
for a in modprobe lsmod insmod rmmod; do $bb ln -sfn ../busybox /run/vm/bin/$a; done
echo /run/vm/bin/modprobe > /proc/sys/kernel/modprobe
for m in $VM_MODULES; do
    /run/vm/bin/modprobe "$m" || log "modprobe $m failed"
done
$bb ip link set lo up
$bb hostname vm
[ "$VM_VERBOSE" = 1 ] || $bb dmesg -n 1
if [ "$VM_SYSTEMD" = 1 ]; then
    # systemd as PID 1 (it mounts cgroup2 itself); the command runs as a service
    $bb mkdir -p /etc/systemd/system
    # The shared directories are the host's: keep systemd from cleaning
    # "temporary" files in them at boot.
    for u in systemd-tmpfiles-setup.service systemd-tmpfiles-clean.timer tmp.mount; do
        $bb ln -sfn /dev/null /etc/systemd/system/$u
    done

    $bb cat > /etc/systemd/system/vm.target <<'EOF_UNIT'
[Unit]
Description=run-in-vm command
Requires=basic.target
Wants=vm-cmd.service dbus.socket
After=basic.target
AllowIsolate=yes
EOF_UNIT
    $bb cat > /etc/systemd/system/vm-cmd.service <<'EOF_UNIT'
[Unit]
Description=run-in-vm command
After=basic.target dbus.socket
[Service]
Type=oneshot
ExecStart=/run/vm/busybox sh /run/vm/runcmd
StandardInput=null
StandardOutput=tty
StandardError=inherit
TTYPath=/dev/console
EOF_UNIT
    log "starting systemd"
    exec /lib/systemd/systemd --unit=vm.target --show-status=0 --log-target=kmsg
fi
$bb mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup ||
    $bb mount -t cgroup2 cgroup2 /sys/fs/cgroup || log "cgroup2 mount failed"
for c in $($bb cat /sys/fs/cgroup/cgroup.controllers); do
    echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control || log "cannot enable $c"
done
$bb mkdir -p /dev/pts /dev/shm /dev/mqueue /sys/fs/bpf
$bb mount -t devpts -o mode=0620,ptmxmode=0666,gid=5 devpts /dev/pts
$bb mount -t tmpfs -o mode=1777,nosuid,nodev shm /dev/shm
$bb mount -t mqueue mqueue /dev/mqueue 2>/dev/null
$bb mount -t bpf bpf /sys/fs/bpf 2>/dev/null
$bb mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
$bb mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
$bb ln -sfn /proc/self/fd /dev/fd
$bb ln -sfn /proc/self/fd/0 /dev/stdin
$bb ln -sfn /proc/self/fd/1 /dev/stdout
$bb ln -sfn /proc/self/fd/2 /dev/stderr
. /run/vm/runcmd
EOF_STAGE2

# The command wrapper: sourced by stage 2, or run as a systemd service (-s).
read -r -d '' RUNCMD <<'EOF_RUNCMD' || true
bb=/run/vm/busybox
. /run/vm/env
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/run/vm/bin
export HOME=/root TERM=dumb LANG=C.UTF-8
cd "$VM_WORKDIR" || echo "vm-init: cannot cd to $VM_WORKDIR"
sh=/bin/bash; [ -x $sh ] || sh="$bb sh"
[ "$VM_VERBOSE" = 1 ] && echo "vm-init: running command"
echo "${VM_TOKEN}_BEGIN"
$sh /run/vm/cmd </dev/null
rc=$?
$bb sync
echo "${VM_TOKEN}_EXIT=$rc"
$bb poweroff -f
$bb sleep 2
$bb reboot -f
EOF_RUNCMD

# --------------------------------------------------------------------------
# Host side: kernel + base initramfs, built once and cached.
# --------------------------------------------------------------------------
extract_vmlinux() { # bzImage -> uncompressed ELF, booted via PVH: no decompression under emulation
    (
        set +o pipefail
        bz=$1 out=$2
        off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$bz" | head -n1 | cut -d: -f1)
        [ -n "$off" ] || exit 1
        tail -c +"$((off + 1))" "$bz" | xz -dc --single-stream > "$out.tmp" 2>/dev/null || exit 1
        [ "$(head -c 4 "$out.tmp" | od -An -c | tr -d ' ')" = '177ELF' ] || exit 1
        mv "$out.tmp" "$out"
    )
}

prepare() {
    local pkg deb kver mdir st m deps todo done_list key
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.lock"
    flock 9
    # 1. the kernel package: downloaded, unpacked and decompressed once
    if [ ! -s "$CACHE/kernel.img" ]; then
        pkg=${VM_KERNEL_PKG:-$(apt-cache depends linux-image-amd64 |
                               awk '/Depends: linux-image-[0-9]/ {print $2; exit}')}
        [ -n "$pkg" ] || die "cannot resolve linux-image-amd64 (apt-get update?)"
        echo "$ME: preparing $pkg in $CACHE (once)" >&2
        mkdir -p "$CACHE/debs"
        deb=$(ls "$CACHE/debs/${pkg}_"*.deb 2>/dev/null | head -n1 || true)
        if [ -z "$deb" ]; then
            (cd "$CACHE/debs" && apt-get download "$pkg" >&2) || die "apt-get download $pkg failed"
            deb=$(ls "$CACHE/debs/${pkg}_"*.deb | head -n1)
        fi
        rm -rf "$CACHE/kernel" "$CACHE/vmlinux"
        dpkg -x "$deb" "$CACHE/kernel"
        kver=$(ls "$CACHE/kernel/lib/modules" | head -n1)
        /bin/busybox depmod -b "$CACHE/kernel" "$kver"
        if extract_vmlinux "$CACHE/kernel/boot/vmlinuz-$kver" "$CACHE/vmlinux"; then
            ln -sfn vmlinux "$CACHE/kernel.img.tmp"
        else
            echo "$ME: could not extract vmlinux, booting the compressed bzImage" >&2
            ln -sfn "kernel/boot/vmlinuz-$kver" "$CACHE/kernel.img.tmp"
        fi
        echo "$pkg $(dpkg-deb -f "$deb" Version) $kver" > "$CACHE/kernel.version"
        mv -T "$CACHE/kernel.img.tmp" "$CACHE/kernel.img"
    fi
    kver=$(awk '{print $3}' "$CACHE/kernel.version")
    KVER=$kver
    mdir=$CACHE/kernel/lib/modules/$kver
    # 2. the base initramfs, keyed by its inputs
    key=$(printf '%s\n' "$kver" "$BASE_MODULES" "$STAGE1" "$STAGE2" "$RUNCMD" | sha256sum | cut -c1-16)
    INITRAMFS=$CACHE/initramfs-$key.cpio
    if [ ! -s "$INITRAMFS" ]; then
        st=$(mktemp -d "$CACHE/initramfs.XXXXXX")
        mkdir -p "$st/bin" "$st/proc" "$st/sys" "$st/dev" "$st/mnt" "$st/vm" "$st/lib/modules/$kver"
        cp /bin/busybox "$st/bin/busybox"
        printf '%s\n' "$STAGE1" > "$st/init"
        printf '%s\n' "$STAGE2" > "$st/vm/stage2"
        printf '%s\n' "$RUNCMD" > "$st/vm/runcmd"
        chmod 755 "$st/init"
        # the wanted modules plus their (transitive) dependencies
        todo="" done_list=" "
        for m in $BASE_MODULES; do
            deps=$(awk -v m="$m" -F: '{ n = $1; sub(/.*\//, "", n); sub(/\.ko.*$/, "", n);
                       gsub(/-/, "_", n); x = m; gsub(/-/, "_", x); if (n == x) { print $1; exit } }' \
                   "$mdir/modules.dep")
            [ -n "$deps" ] || die "kernel module $m not found in $mdir"
            todo="$todo $deps"
        done
        while [ -n "${todo// /}" ]; do
            set -- $todo; m=$1; shift; todo="$*"
            case "$done_list" in *" $m "*) continue ;; esac
            done_list="$done_list$m "
            mkdir -p "$st/lib/modules/$kver/$(dirname "$m")"
            cp "$mdir/$m" "$st/lib/modules/$kver/$m"
            deps=$(awk -v m="$m" -F': *' '$1 == m { print $2; exit }' "$mdir/modules.dep")
            todo="$todo $deps"
        done
        /bin/busybox depmod -b "$st" "$kver"
        echo "$BASE_MODULES" > "$st/vm/modules"
        (cd "$st" && find . | LC_ALL=C sort | /bin/busybox cpio -o -H newc -R 0:0 2>/dev/null) \
            > "$INITRAMFS.tmp"
        rm -rf "$st"
        mv "$INITRAMFS.tmp" "$INITRAMFS"
    fi
    exec 9>&-
}

prepare

# --------------------------------------------------------------------------
# Host side: per-run initramfs layer (command, env) and QEMU.
# --------------------------------------------------------------------------
RUN=$(mktemp -d "${TMPDIR:-/tmp}/run-in-vm.XXXXXX")
QPID=
cleanup() { [ -n "${VM_KEEP:-}" ] || rm -rf "$RUN"; }
stop() { [ -z "$QPID" ] || kill -TERM "$QPID" 2>/dev/null; exit "$1"; }
trap cleanup EXIT
trap 'stop 130' INT
trap 'stop 143' TERM HUP

TOKEN="VMRUN_$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
mkdir -p "$RUN/root/vm"
{
    printf 'VM_TOKEN=%q\nVM_WORKDIR=%q\nVM_VERBOSE=%q\n' "$TOKEN" "$WORKDIR" "$VERBOSE"
    printf 'VM_SYSTEMD=%q\n' "$SYSTEMD"
    printf 'VM_MODDIR=%q\nVM_MODULES=%q\n' "$(realpath "$CACHE/kernel/lib/modules/$KVER")" "$LATE_MODULES"
} > "$RUN/root/vm/env"
printf '%s\n' "${SHARES[@]}" > "$RUN/root/vm/shares"
if [ "${VM_ENV:-}" = '*' ]; then
    ENV_NAMES=$(compgen -e | grep -vxE '_|PWD|OLDPWD|SHLVL|TERM|TMPDIR|HOSTNAME|MAIL|DISPLAY|LS_COLORS|SSH_[A-Z_]*|XDG_[A-Z_]*|VM_[A-Z_]*' || true)
else
    ENV_NAMES=${VM_ENV:-}
fi
{
    for v in $ENV_NAMES; do
        [[ $v =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "bad variable name in VM_ENV: $v"
        [ -z "${!v+x}" ] || printf 'export %s=%q\n' "$v" "${!v}"
    done
    printf '%q ' "$@"; echo
} > "$RUN/root/vm/cmd"
(cd "$RUN/root" && find . | /bin/busybox cpio -o -H newc -R 0:0 2>/dev/null) > "$RUN/run.cpio"
cat "$INITRAMFS" "$RUN/run.cpio" > "$RUN/initrd"

if [ "$ACCEL" = auto ]; then
    if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
        ACCEL=kvm
    else
        ACCEL=tcg
    fi
fi
case $ACCEL in
    kvm) ACCEL_ARGS=(-accel kvm -cpu host) ;;
    tcg) ACCEL_ARGS=(-accel tcg,thread=multi,tb-size=256 -cpu max) ;;
    *) die "unknown accelerator $ACCEL" ;;
esac
case $MACHINE in
    pc|q35) MACH_ARGS=(-M "$MACHINE") ;;   # (microvm hangs in TSC/timer calibration under TCG)
    *) die "unknown machine type $MACHINE" ;;
esac

APPEND="console=ttyS0 panic=-1 reboot=t cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1"
APPEND+=" mitigations=off 8250.nr_uarts=1 i8042.noaux i8042.nokbd i8042.nopnp"
[ "$VERBOSE" = 1 ] || APPEND+=" quiet loglevel=1"
APPEND+=" ${VM_APPEND:-}"

# shellcheck disable=SC2206
QEMU=(qemu-system-x86_64 "${ACCEL_ARGS[@]}" "${MACH_ARGS[@]}"
      -m "$MEM" -smp "$CPUS" -nodefaults -no-user-config -display none -no-reboot
      -serial stdio -net none
      -kernel "$CACHE/kernel.img" -initrd "$RUN/initrd" -append "$APPEND"
      -fsdev local,id=fsroot,path=/,security_model=none,readonly=on,multidevs=remap
      -device virtio-9p-pci,fsdev=fsroot,mount_tag=hostroot
      ${VM_QEMU_ARGS:-})
for i in "${!SHARES[@]}"; do
    # QEMU option values: a comma is written as ",,"
    QEMU+=(-fsdev "local,id=fs$i,path=${SHARES[i]//,/,,},security_model=none,multidevs=remap"
           -device "virtio-9p-pci,fsdev=fs$i,mount_tag=share$i")
done

# Stream the console: drop everything before the BEGIN marker (unless -v),
# stop at the EXIT marker; the full console log is kept for the exit code.
# QEMU runs in the background so that INT/TERM reach the traps at once.
AWK=(awk)
awk -W version 2>&1 | grep -q mawk && AWK=(awk -W interactive)   # mawk: read line by line
mkfifo "$RUN/console.fifo"
tee "$RUN/console.log" < "$RUN/console.fifo" |
    "${AWK[@]}" -v tok="$TOKEN" -v verbose="$VERBOSE" '
        { sub(/\r$/, "") }
        index($0, tok "_BEGIN") { on = 1; next }
        (i = index($0, tok "_EXIT=")) {
            if (i > 1) printf "%s", substr($0, 1, i - 1)
            on = 0; verbose = 0; fflush(); next
        }
        on || verbose { print; fflush() }' &
FPID=$!
timeout -k 10 "$TIMEOUT" "${QEMU[@]}" </dev/null 2>"$RUN/qemu.err" >"$RUN/console.fifo" &
QPID=$!
QRC=0
wait "$QPID" || QRC=$?
QPID=
wait "$FPID" || true
RC=$(tr -d '\r' < "$RUN/console.log" | sed -n "s/.*${TOKEN}_EXIT=\([0-9]\+\).*/\1/p" | tail -n1)
if [ -n "$RC" ]; then
    exit "$RC"
fi
if [ "$QRC" = 124 ] || [ "$QRC" = 137 ]; then
    echo "$ME: timeout after ${TIMEOUT}s" >&2
    exit 124
fi
echo "$ME: VM ended (qemu rc=$QRC) without reporting an exit code" >&2
cat "$RUN/qemu.err" >&2
[ "$VERBOSE" = 1 ] || tail -n 30 "$RUN/console.log" | tr -d '\r' >&2
exit 125
