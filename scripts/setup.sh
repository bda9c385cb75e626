#!/usr/bin/env bash
# One command from a fresh Debian 12 machine (as root) to a running
# container: installs the packages berth needs, builds and installs it,
# makes a busybox image and runs a container from it with `berth run`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: run as root (containers need it)" >&2
    exit 1
fi
if ! command -v cargo >/dev/null; then
    echo "setup.sh: cargo is missing: install a Rust toolchain (rustup) first" >&2
    exit 1
fi

if [ "${BERTH_SKIP_APT:-0}" != 1 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2046
    apt-get install -y -q --no-install-recommends $(grep -v '^#' scripts/deps.txt)
fi

# An ordinary user's containers reach the network through pasta or
# slirp4netns, which open /dev/net/tun as that user, and may mount with
# fuse-overlayfs (/dev/fuse): udev makes both 0666 (Debian's
# 50-udev-default.rules); a machine without udev leaves them 0600.
for dev in /dev/net/tun /dev/fuse; do
    if [ -c "$dev" ] && [ "$(stat -c %a "$dev")" != 666 ]; then
        chmod 0666 "$dev"
    fi
done

cargo build --release -p berth-cli -p berthd -p berth-vm --bins
for bin in berth berthd berth-vm; do
    install -m 0755 "target/release/$bin" "/usr/local/bin/$bin"
done
# berth-monitor runs once per container, so its private memory counts per
# container; berth-runtime is executed three times per container start.
# Both are linked statically and at a fixed address: no loader, no
# relocated library data, half the private pages of the dynamic build and
# about 0.6 ms less per execution (docs/benchmarks.md).
scripts/build-monitor-static.sh
scripts/build-runtime-static.sh
for bin in berth-monitor berth-runtime; do
    install -m 0755 "target/static/x86_64-unknown-linux-gnu/release/$bin" "/usr/local/bin/$bin"
done
# berth-vm (`--runtime berth-vm`): its static guest agent and Debian's
# kernel for the guest.
scripts/build-vm-agent.sh
install -D -m 0755 target/static/x86_64-unknown-linux-gnu/release/berth-vm-agent \
    /usr/local/lib/berth-vm/berth-vm-agent
scripts/install-vm-kernel.sh

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Shell completions and man pages, made by the berth just installed from
# the definitions that parse its command line. Made in $work first, so a
# failure leaves the installed ones as they were; a rerun replaces them.
berth completion bash >"$work/berth.bash"
berth completion zsh >"$work/_berth"
berth completion fish >"$work/berth.fish"
berth generate-man "$work/man1"
install -D -m 0644 "$work/berth.bash" /usr/share/bash-completion/completions/berth
install -D -m 0644 "$work/_berth" /usr/share/zsh/vendor-completions/_berth
install -D -m 0644 "$work/berth.fish" /usr/share/fish/vendor_completions.d/berth.fish
install -d /usr/local/share/man/man1
install -m 0644 "$work"/man1/*.1 /usr/local/share/man/man1/

# An image from Debian's busybox-static (there is no registry to pull
# from on an offline machine), then a container from it.
scripts/make-bundle.sh "$work/bundle" >/dev/null
tar -C "$work/bundle/rootfs" -cf "$work/busybox.tar" .
berth import --cmd sh "$work/busybox.tar" localhost/busybox:latest >/dev/null
berth run --rm localhost/busybox sh -c \
    'echo "hello from $(hostname), a berth container at $(ip -4 -o addr show eth0 | awk "{print \$4}")"'
