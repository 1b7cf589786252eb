#!/usr/bin/env bash
# One check of the GPU backend on a real GPU (e.g. an NVIDIA H100/H200 under
# Vulkan) with prebuilt binaries: no Rust toolchain or network is needed
# there. Finishes in under 6 minutes; everything goes to "$OUT", the summary
# is printed last.
#
# Build the binaries where cargo is (same OS/libc as the device machine):
#   cargo build --release --bin token-sampler --example gpu_bench
#   cargo test --release --no-run --message-format=json \
#     | jq -r 'select(.executable != null and (.target.name | startswith("gpu_")))
#              | .target.name + " " + .executable'
#   mkdir -p .devbin && cp target/release/token-sampler target/release/examples/gpu_bench .devbin/
#   # copy each gpu_* test executable listed above to .devbin/<name>
#   cp /usr/lib/x86_64-linux-gnu/libvulkan.so.1 .devbin/   # the Vulkan loader
# then run:  BIN=.devbin OUT=/some/dir scripts/device_check.sh
#
# Steps (each under its own timeout): `token-sampler info` (text and JSON),
# every $BIN/gpu_* test executable with REQUIRE_GPU=1 (each binary shares one
# device among its tests; on a hardware adapter a read waiting over 20 s fails
# the test that made it, so a hung device names its test), `token-sampler
# validate --backend gpu --cases 4`, then the benchmark grid: `token-sampler
# bench` when this binary has it (its named sets, with the GPU grid's top-k 50
# and top-p 0.95, its resident rows, f16 host logits), and $BIN/gpu_bench (kernel and end-to-end times, back-to-back
# calls on device-resident logits, a per-dispatch profile, reads per row, the
# floor of a pass, the cost of one empty dependent dispatch, the FlashInfer
# top-p and streaming-read anchors).
set -uo pipefail
BIN="${BIN:-.devbin}"
OUT="${OUT:-./device_out}"
mkdir -p "$OUT"
export REQUIRE_GPU=1
export LD_LIBRARY_PATH="$BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
TS="$BIN/token-sampler"
start=$(date +%s)
summary="$OUT/summary.txt"
: >"$summary"
note() { echo "$*" >>"$summary"; echo "$*" >&2; }
elapsed() { echo $(($(date +%s) - start)); }

# The whole script ends within DEADLINE seconds: each step's timeout is its
# own cap or what is left, whichever is smaller.
DEADLINE="${DEADLINE:-340}"

# step NAME TIMEOUT_S OUTFILE CMD...: runs CMD, records rc and seconds.
step() {
  local name=$1 limit=$2 out=$3
  shift 3
  local t0 rc left
  left=$((DEADLINE - $(elapsed)))
  if [ "$left" -lt 10 ]; then
    note "$(printf '%-28s skipped: out of time' "$name")"
    return 124
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  t0=$(date +%s)
  timeout "$limit" "$@" >"$out" 2>"$out.stderr"
  rc=$?
  note "$(printf '%-28s rc=%-3s %4ss  %s' "$name" "$rc" "$(($(date +%s) - t0))" "$out")"
  return $rc
}

if [ ! -x "$TS" ]; then
  note "no $TS: build the binaries first (see the top of this script)"
  exit 2
fi

step info 30 "$OUT/info.txt" "$TS" info
step info_json 30 "$OUT/info.json" "$TS" info --json

tests_ok=0
tests_run=0
for t in "$BIN"/gpu_*; do
  [ -x "$t" ] && [ -f "$t" ] || continue
  name=$(basename "$t")
  [ "$name" = gpu_bench ] && continue
  tests_run=$((tests_run + 1))
  step "test $name" 150 "$OUT/test_$name.txt" "$t" --nocapture && tests_ok=$((tests_ok + 1))
done
note "tests: $tests_ok of $tests_run executables passed"

step validate 100 "$OUT/validate.txt" "$TS" validate --backend gpu --cases 4

if [ -x "$BIN/gpu_bench" ]; then
  # GPU_BENCH_ARGS="--quick --runs 2" for a smoke test on a software adapter.
  # --profile: one more call per point with every dispatch timed (profile_ms).
  # --resident: calls back to back on device-resident logits (GPU kept busy).
  # shellcheck disable=SC2086
  step gpu_bench 150 "$OUT/gpu_bench.json" "$BIN/gpu_bench" ${GPU_BENCH_ARGS:---runs 10 --profile --resident}
fi

if "$TS" bench --help >/dev/null 2>&1; then
  # The bench command's named sets; the GPU grid's top-k 50 and top-p 0.95
  # are flag overrides, so those sets run on their own.
  grid=(bench --backend gpu --batch 1,32,256 --vocab 32000,128256,200064 --json)
  step bench 40 "$OUT/bench.json" "$TS" "${grid[@]}" --set temperature,min_p,entropy_guided
  step bench_topk50_topp09 30 "$OUT/bench_topk50_topp09.json" "$TS" "${grid[@]}" --set top_k_top_p --top-k 50
  step bench_topp095 30 "$OUT/bench_topp095.json" "$TS" "${grid[@]}" --set top_p --top-p 0.95
  # Half-precision host logits (half the upload) at the largest point.
  step bench_f16 30 "$OUT/bench_f16.json" "$TS" bench --backend gpu --batch 256 --vocab 128256 --set top_p --logits-dtype f16 --json
else
  note "bench: this token-sampler has no bench command; gpu_bench covers the grid"
fi
{
  echo
  echo "== summary ($(elapsed) s)"
  grep -m1 -i "uses:" "$OUT/info.txt" 2>/dev/null
  tail -n 12 "$OUT/validate.txt" 2>/dev/null
  if [ -s "$OUT/gpu_bench.json" ] && command -v python3 >/dev/null; then
    python3 - "$OUT/gpu_bench.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["results"]
print(f"{'mode':>10} {'B':>4} {'V':>7} {'params':<20} {'median ms':>10} {'us/row':>9} {'GB/s':>8} {'bw frac':>7} {'reads':>5}")
for r in rows:
    bw = "" if r["bw_fraction"] is None else f"{r['bw_fraction']:.2f}"
    print(f"{r['mode']:>10} {r['batch']:>4} {r['vocab']:>7} {r['params']:<20} {r['median_ms']:>10.4f} "
          f"{r['us_per_row']:>9.2f} {r['gb_per_s']:>8.1f} {bw:>7} {r['reads_per_row'] or '':>5}")
print("anchors: FlashInfer top-p B=128 V=131072 ~139 us on an H100; one read of 256x128256 f32 ~39 us")
PY
  fi
} >>"$summary"
cat "$summary"
