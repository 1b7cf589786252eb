#!/usr/bin/env bash
# Installs what token-sampler needs on a fresh Debian/Ubuntu machine that has
# the Rust toolchain (Mesa's Vulkan drivers: lavapipe runs the GPU backend on
# the CPU when there is no GPU; Python 3 with venv), then builds the release
# binary and the C library, and the Python module into .venv/
# (scripts/python_env.sh). The real-model example's extras are
# scripts/setup_example.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
packages="mesa-vulkan-drivers libvulkan1"
missing=""
for p in $packages; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
# Python 3 with venv and pip (Debian splits them out of python3).
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  missing="$missing python3 python3-venv python3-pip"
fi
if [ -n "$missing" ]; then
  echo "setup: installing$missing" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
# The whole workspace: the library, the `token-sampler` binary
# (crates/token-sampler-cli) and the C library (crates/token-sampler-c).
cargo build --release --locked --workspace 2>&1 | tail -n 3 >&2
echo "setup: built ${CARGO_TARGET_DIR:-target}/release/token-sampler and libtoken_sampler_c.so" >&2
# The Python module `token_sampler`, built by maturin and installed in .venv/.
scripts/python_env.sh
