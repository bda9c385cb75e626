#!/usr/bin/env bash
# Builds what its arguments name (cargo's -p/--bin) statically linked
# (glibc and libseccomp) and not position-independent, into
# target/static/x86_64-unknown-linux-gnu/release/, all sharing one build.
# The flags apply to the target only (--target), not to build scripts and
# proc macros, which cannot be static.
set -euo pipefail
cd "$(dirname "$0")/.."
export LIBSECCOMP_LIB_PATH=/usr/lib/x86_64-linux-gnu
export LIBSECCOMP_LINK_TYPE=static
export RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static"
export CARGO_TARGET_DIR=target/static
exec cargo build --release --target x86_64-unknown-linux-gnu "$@"
