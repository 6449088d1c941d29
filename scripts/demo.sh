#!/usr/bin/env bash
# The main job on a fresh machine: installs what is missing, builds lpgw and runs `lpgw demo`:
# a devnet (orchestrator, remote signer, Scope and LV2V runners) and the gateway service with
# its browser app, all in one process. Open the printed URL; Ctrl-C stops it cleanly.
# Extra arguments go to `lpgw demo` (for example --listen 127.0.0.1:9000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p lpgw
# Wherever the build went (CARGO_TARGET_DIR may move it out of ./target).
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
exec "$TARGET_DIR/release/lpgw" demo "$@"
