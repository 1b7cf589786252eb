#!/usr/bin/env bash
# The test suite of the whole workspace (the library and the CLI crate): unit,
# golden, differential (reference, cpu, gpu on lavapipe), CLI and doc tests,
# then every criterion benchmark once in test mode.
# REQUIRE_GPU=1 (the default here) makes a missing GPU adapter a failure,
# never a silent skip.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
export REQUIRE_GPU="${REQUIRE_GPU:-1}"
cargo test --release --locked --workspace
cargo test --release --locked --workspace --benches
