#!/usr/bin/env bash
# Builds berth-vm's guest agent statically linked (scripts/build-static.sh)
# into target/static/x86_64-unknown-linux-gnu/release/berth-vm-agent: it
# is the guest's /init, started before anything could load a library.
exec "$(dirname "$0")/build-static.sh" -p berth-vm --bin berth-vm-agent "$@"
