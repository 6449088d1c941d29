#!/usr/bin/env bash
# The main job, runnable on a fresh machine: builds lpgw and runs the end-to-end trickle path
# (a server, a publisher and a subscriber over loopback), checking every byte.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p lpgw
BIN=target/release/lpgw
PORT="${PORT:-7280}"
$BIN trickle serve --listen "127.0.0.1:$PORT" --autocreate &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
sleep 0.5
IN=$(mktemp); OUT=$(mktemp)
head -c 3000000 /dev/urandom > "$IN"
# The channel is created by the first publish; the window keeps the last 5 segments, so a
# subscriber that starts at segment 0 right after still reads all three.
$BIN trickle publish "http://127.0.0.1:$PORT/demo" --segment-bytes 1000000 < "$IN"
$BIN trickle subscribe "http://127.0.0.1:$PORT/demo" --start 0 --count 3 > "$OUT"
if cmp -s "$IN" "$OUT"; then
  echo "demo: 3 MB went through trickle and came back byte for byte"
else
  echo "demo: output differs" >&2; exit 1
fi
