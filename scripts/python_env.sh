#!/usr/bin/env bash
# The Python side: creates .venv/ at the repository root (if missing), installs
# maturin, NumPy and pytest into it, builds the `token_sampler` wheel from
# crates/token-sampler-py with maturin (release, Cargo.lock as is) and installs
# it, so `.venv/bin/python -c 'import token_sampler'` works. Re-run it after
# changing Rust code; scripts/setup.sh and scripts/test.sh call it.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
py=.venv/bin/python
# pip's own version check is noise here.
export PIP_DISABLE_PIP_VERSION_CHECK=1
# mypy: its stubtest checks token_sampler.pyi against the built module.
"$py" -m pip install -q "maturin>=1.9.4,<2" "numpy>=1.21" "pytest>=7" "mypy>=1.10"

start=$(date +%s)
# maturin builds the cdylib with cargo into target/ and packs it with the
# type stubs (crates/token-sampler-py/token_sampler.pyi) into target/wheels/.
rm -f target/wheels/token_sampler-*.whl
.venv/bin/maturin build --release --locked --quiet -i "$py" \
  -m crates/token-sampler-py/Cargo.toml 2>&1 | tail -n 3 >&2
"$py" -m pip install -q --force-reinstall --no-deps target/wheels/token_sampler-*.whl
"$py" -c 'import token_sampler as ts; print(f"python: token_sampler {ts.__version__} installed in .venv/")' >&2
echo "python: wheel built and installed in $(( $(date +%s) - start )) s" >&2
