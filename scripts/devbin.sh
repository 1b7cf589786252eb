#!/usr/bin/env bash
# Assembles .devbin/ for scripts/device_check.sh on a machine without Rust:
# the release `token-sampler`, the `gpu_bench` example, every gpu_* test
# executable (from `cargo test --release --no-run`), and the Vulkan loader.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${DEST:-.devbin}"
mkdir -p "$DEST"
cargo build --release --locked --bin token-sampler --example gpu_bench
cp target/release/token-sampler target/release/examples/gpu_bench "$DEST/"
cargo test --release --locked --no-run 2>&1 \
  | grep -o 'target/release/deps/gpu_[a-z_]*-[0-9a-f]*' \
  | sort -u \
  | while read -r exe; do
      name=$(basename "$exe")
      cp "$exe" "$DEST/${name%-*}"
    done
loader=$(ldconfig -p | awk '/libvulkan\.so\.1 /{print $NF; exit}')
if [ -n "$loader" ]; then cp -L "$loader" "$DEST/libvulkan.so.1"; fi
ls -l "$DEST"
