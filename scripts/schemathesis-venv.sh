#!/usr/bin/env bash
# Creates (idempotently) the Python venv holding schemathesis, which tries the service's
# OpenAPI document against the running service. It lives outside the source tree.
# Prints the schemathesis executable's path on stdout.
set -euo pipefail
VERSION=4.32.5
VENV="${LPGW_SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/lpgw/schemathesis-venv}"
if [ -x "$VENV/bin/schemathesis" ] && "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$VERSION"; then
  echo "$VENV/bin/schemathesis"
  exit 0
fi
if PYENV_VERSION=3.12.1 python3 -c 'import sys; assert sys.version_info >= (3, 10)' 2>/dev/null; then
  PY="env PYENV_VERSION=3.12.1 python3"
else
  PY="python3"
fi
mkdir -p "$(dirname "$VENV")"
$PY -m venv "$VENV" >&2
"$VENV/bin/pip" install -q --upgrade pip >&2 || true
"$VENV/bin/pip" install -q "schemathesis==$VERSION" >&2
"$VENV/bin/schemathesis" --version >&2
echo "$VENV/bin/schemathesis"
