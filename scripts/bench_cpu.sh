#!/usr/bin/env bash
# Reproduces the CPU tables of BENCHMARKS.md on this machine, in one command:
#   scripts/bench_cpu.sh            (results also saved under target/bench-cpu/)
# 1. `token-sampler bench` on the cpu backend: every named parameter set at
#    B = 32, V = 131 072 and at B = 1, V = 200 064 (table + JSON).
# 2. The side-by-side with llama.cpp's sampler chain and candle-transformers'
#    LogitsProcessor (benches/peers.rs, cargo feature `peers`), on the same rows
#    in the same process. llama.cpp is built from source by llama-cpp-sys-2: it
#    needs cmake, a C++ compiler and libclang (Debian: cmake clang libclang-dev).
#    Set PEERS=0 to skip it.
# Close other work first: the numbers are wall-clock medians.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-target/bench-cpu}"
runs="${RUNS:-30}"
mkdir -p "$out"

{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  lscpu | grep -E '^(Model name|CPU\(s\)|Thread\(s\) per core|Core\(s\) per socket|L2 cache|L3 cache|Hypervisor vendor):' || true
  rustc --version
} | tee "$out/machine.txt"

cargo build --release --locked --bin token-sampler
bin="${CARGO_TARGET_DIR:-target}/release/token-sampler"
for shape in "32 131072" "1 200064"; do
  set -- $shape
  "$bin" bench --backend cpu --batch "$1" --vocab "$2" --runs "$runs" | tee "$out/cpu_b$1_v$2.txt"
  "$bin" bench --backend cpu --batch "$1" --vocab "$2" --runs "$runs" --json > "$out/cpu_b$1_v$2.json"
done

if [ "${PEERS:-1}" != "0" ]; then
  if command -v cmake >/dev/null && { ldconfig -p 2>/dev/null | grep -q libclang || ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1; }; then
    PEERS_RUNS="$runs" PEERS_JSON="$PWD/$out/peers.json" \
      cargo bench --locked -p token-sampler --features peers --bench peers | tee "$out/peers.txt"
  else
    echo "peers skipped: llama-cpp-sys-2 needs cmake and libclang (apt-get install cmake clang libclang-dev)" | tee "$out/peers.txt"
  fi
fi
echo "results in $out/"
