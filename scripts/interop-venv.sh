#!/usr/bin/env bash
# Creates (idempotently) the Python venv holding the official SDK, livepeer-gateway 1.0.0,
# used by the interop tests and benchmarks. It lives outside the source tree.
# Prints the venv's python path on stdout.
set -euo pipefail
VENV="${LPGW_INTEROP_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/lpgw/interop-venv}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import livepeer_gateway, av' 2>/dev/null; then
  echo "$VENV/bin/python"
  exit 0
fi
# The SDK requires Python >= 3.12; prefer pyenv's 3.12, fall back to any python3.12.
PY=""
if command -v pyenv >/dev/null 2>&1 && PYENV_VERSION=3.12.1 pyenv exec python3 --version >/dev/null 2>&1; then
  PY="env PYENV_VERSION=3.12.1 pyenv exec python3"
elif PYENV_VERSION=3.12.1 python3 -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then
  PY="env PYENV_VERSION=3.12.1 python3"
elif command -v python3.12 >/dev/null 2>&1; then
  PY="python3.12"
fi
mkdir -p "$(dirname "$VENV")"
if [ -n "$PY" ]; then
  $PY -m venv "$VENV" >&2
  EXTRA=""
else
  python3 -m venv "$VENV" >&2
  EXTRA="--ignore-requires-python"
fi
"$VENV/bin/pip" install -q --upgrade pip >&2 || true
# PyAV must come as a binary wheel: a source build fails against Debian's FFmpeg headers.
"$VENV/bin/pip" install -q --only-binary=:all: av >&2
"$VENV/bin/pip" install -q $EXTRA livepeer-gateway==1.0.0 >&2
"$VENV/bin/python" -c 'import livepeer_gateway' >&2
echo "$VENV/bin/python"
