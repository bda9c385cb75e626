#!/usr/bin/env bash
# Builds berth-monitor statically linked and not position-independent
# (scripts/build-static.sh), into target/static/x86_64-unknown-linux-gnu/release/.
exec "$(dirname "$0")/build-static.sh" -p berth-monitor "$@"
