#!/usr/bin/env bash
# Builds berth-vm's guest agent statically linked (glibc and libseccomp),
# into target/static/x86_64-unknown-linux-gnu/release/berth-vm-agent
# (beside the static berth-runtime, sharing its build): it is the guest's
# /init, started before anything could load a shared library.
set -euo pipefail
cd "$(dirname "$0")/.."
export LIBSECCOMP_LIB_PATH=/usr/lib/x86_64-linux-gnu
export LIBSECCOMP_LINK_TYPE=static
export RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static"
export CARGO_TARGET_DIR=target/static
exec cargo build --release -p berth-vm --bin berth-vm-agent --target x86_64-unknown-linux-gnu "$@"
