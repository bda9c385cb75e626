#!/usr/bin/env bash
# Runs the whole test suite as root: unit tests, real containers from a
# busybox rootfs, podman and containerd driving berth-runtime, and the
# cgroup v2 / systemd tests in a throw-away guest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "test.sh: run as root (the tests create real containers)" >&2
    exit 1
fi
# The tests start every binary of the workspace (berthd, berth-monitor
# beside berth), and nextest builds only the test targets' own.
cargo build --workspace --bins
# berth-vm's guest agent must be static: the tests boot this build of it.
scripts/build-vm-agent.sh
if cargo nextest --version >/dev/null 2>&1; then
    exec cargo nextest run --workspace --no-fail-fast "$@"
fi
exec cargo test --workspace --no-fail-fast "$@"
