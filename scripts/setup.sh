#!/usr/bin/env bash
# Installs what token-sampler needs on a fresh Debian/Ubuntu machine that has
# the Rust toolchain (Mesa's Vulkan drivers: lavapipe runs the GPU backend on
# the CPU when there is no GPU), then builds the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
packages="mesa-vulkan-drivers libvulkan1"
missing=""
for p in $packages; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing$missing" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
# The whole workspace: the library and the `token-sampler` binary
# (crates/token-sampler-cli).
cargo build --release --locked --workspace 2>&1 | tail -n 3 >&2
echo "setup: built ${CARGO_TARGET_DIR:-target}/release/token-sampler" >&2
