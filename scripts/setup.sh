#!/usr/bin/env bash
# One command from a fresh Debian 12 machine (as root) to a running
# container: installs the packages berth needs, builds it, prepares a
# busybox bundle and runs it with berth-runtime.
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

cargo build --release --workspace --bins
install -m 0755 target/release/berth-runtime /usr/local/bin/berth-runtime

bundle=/var/lib/berth/demo-bundle
scripts/make-bundle.sh "$bundle"
berth-runtime delete --force berth-demo 2>/dev/null || true
berth-runtime run --bundle "$bundle" berth-demo
