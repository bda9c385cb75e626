#!/usr/bin/env bash
# Builds berth-runtime statically linked (glibc and libseccomp) and not
# position-independent, into target/static/x86_64-unknown-linux-gnu/release/
# (beside the static berth-monitor, sharing its build). Every container
# starts the runtime three times (create, start, delete): a static binary
# at a fixed address has no loader, no libraries to map and relocate and
# no libgcc_s constructor at each start (docs/benchmarks.md). The flags
# apply to the target only (--target), not to build scripts and proc
# macros, which cannot be static.
set -euo pipefail
cd "$(dirname "$0")/.."
export LIBSECCOMP_LIB_PATH=/usr/lib/x86_64-linux-gnu
export LIBSECCOMP_LINK_TYPE=static
export RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static"
export CARGO_TARGET_DIR=target/static
exec cargo build --release -p berth-runtime-cli --target x86_64-unknown-linux-gnu "$@"
