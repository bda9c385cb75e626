#!/usr/bin/env bash
# Builds berth-runtime statically linked and not position-independent
# (scripts/build-static.sh), beside the static berth-monitor. Every
# container starts the runtime three times (create, start, delete): a
# static binary at a fixed address has no loader, no libraries to map and
# relocate and no libgcc_s constructor at each start (docs/benchmarks.md).
exec "$(dirname "$0")/build-static.sh" -p berth-runtime-cli "$@"
