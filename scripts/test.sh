#!/usr/bin/env bash
# The test suite of the whole workspace: unit, golden, differential (reference,
# cpu, gpu on lavapipe), CLI and doc tests of the library and the CLI crate, the
# C ABI (its header regenerated and compared, a C program compiled with cc),
# every criterion benchmark once in test mode; then the Python module's pytest
# suite and the real-model test (SmolLM2 through llama.cpp, token-sampler
# sampling; its extras installed or taken from the cache by
# scripts/setup_example.sh).
# REQUIRE_GPU=1 (the default here) makes a missing GPU adapter a failure,
# never a silent skip; REQUIRE_MODEL=1 does the same for the model.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
export REQUIRE_GPU="${REQUIRE_GPU:-1}"
export REQUIRE_MODEL="${REQUIRE_MODEL:-1}"
cargo test --release --locked --workspace
cargo test --release --locked --workspace --benches
# The wheel of the code as it is now, then the Python tests against it.
scripts/python_env.sh
scripts/setup_example.sh
.venv/bin/python -m pytest -q -s crates/token-sampler-py/tests
