#!/usr/bin/env bash
# One run on a real GPU (e.g. an NVIDIA H100/H200 under Vulkan), within ~10
# minutes: release build, the GPU test suite with REQUIRE_GPU=1, then the
# benchmark grid. Everything is written under "$OUT".
set -uo pipefail
OUT="${OUT:-./device_out}"
mkdir -p "$OUT"
export REQUIRE_GPU=1
{
  echo "== info"; cargo run --release -q -- info --json
} >"$OUT/info.txt" 2>&1
cargo build --release --tests --benches >"$OUT/build.txt" 2>&1 || { echo "build failed"; exit 1; }
timeout 300 cargo test --release --test gpu_vs_reference --test shaders_validate >"$OUT/tests.txt" 2>&1
echo "tests rc=$?" >>"$OUT/tests.txt"
# Grid B ∈ {1, 32, 256} × V ∈ {32000, 128256, 200064} × five parameter sets:
# criterion end-to-end times plus kernel times (timestamp queries) on stderr.
TS_BENCH_FULL=1 timeout 240 cargo bench --bench gpu -- --warm-up-time 1 --measurement-time 2 >"$OUT/bench.txt" 2>"$OUT/bench_kernel.txt"
echo "bench rc=$?" >>"$OUT/bench.txt"
ls -l "$OUT"
