#!/usr/bin/env bash
# Installs, idempotently, the system packages lpgw builds against (Debian/Ubuntu, via apt):
# FFmpeg's libraries and headers for the media crate, clang for their bindings, pkg-config,
# cmake and nasm to build the bundled libjpeg-turbo (with its SIMD code) for JPEG work,
# and Chromium with its WebDriver for the service's browser test.
set -euo pipefail
PKGS=(pkg-config clang libclang-dev cmake nasm libavcodec-dev libavformat-dev libavutil-dev
      libswscale-dev libswresample-dev libavfilter-dev libavdevice-dev
      chromium chromium-driver)
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust with rustup (https://rustup.rs)" >&2
  exit 1
fi
