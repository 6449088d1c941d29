#!/usr/bin/env bash
# The project's test command: installs what is missing, then runs the format check, clippy,
# and every unit, integration and interop test (interop against the official Python SDK;
# the service's OpenAPI document against the service, with schemathesis).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
PY="$(scripts/interop-venv.sh)"
ST="$(scripts/schemathesis-venv.sh)"
# A one-shot build gains nothing from incremental caches, which would only fill the disk.
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi
export LPGW_PYTHON="$PY" LPGW_PY="$PY" LPGW_SCHEMATHESIS="$ST" LPGW_REQUIRE_INTEROP=1 LPGW_REQUIRE_BROWSER=1
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
