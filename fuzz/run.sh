#!/usr/bin/env bash
# Build one libFuzzer target and run it.
#   fuzz/run.sh TARGET SECONDS [libFuzzer options...]     TARGET: gguf | tokenizer
#   fuzz/run.sh ctests          the C tests (tests/c/test_*.c) built by clang with ASan + UBSan
# e.g. fuzz/run.sh gguf 60;  fuzz/run.sh tokenizer 600 -jobs=2
#
# Builds build/fuzz/fuzz_TARGET with clang -fsanitize=fuzzer,address,undefined (every csrc/*.c
# compiled in), generates the seed corpus next to the committed seeds (fuzz/seeds/TARGET) and
# runs for SECONDS, adding new inputs to build/fuzz/corpus/TARGET (kept between runs). Exit
# status 0: no finding; otherwise the crashing input is in build/fuzz/artifacts/ (libFuzzer
# prints how to reproduce it: build/fuzz/fuzz_TARGET FILE). The last line is a summary:
#   fuzz TARGET: N executions in S s (R/s), 0 findings
# Pass -runs=N to stop after N executions instead (a long campaign: see fuzz/README.md).
# `ctests` links the same instrumented core into each C test: clang's UBSan checks what gcc's
# does not (e.g. pointer arithmetic on NULL), so a fuzz finding's C regression test fails here.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
usage="usage: fuzz/run.sh gguf|tokenizer SECONDS [libFuzzer options]  or  fuzz/run.sh ctests"
target=${1:?$usage}
case "$target" in
  gguf|tokenizer) seconds=${2:?$usage}; shift 2; harness=("$root/fuzz/fuzz_$target.c");;
  ctests) shift; harness=("$root"/tests/c/test_*.c);;
  *) echo "fuzz/run.sh: unknown target '$target' (gguf, tokenizer, ctests)" >&2; exit 2;;
esac
PY=${PYTHON:-python3}
CC=${FUZZ_CC:-clang}
out=${FUZZ_OUT:-$root/build/fuzz}   # FUZZ_OUT: another directory for a separate campaign
mkdir -p "$out/corpus/$target" "$out/seeds/$target" "$out/artifacts"

# 1. the target: the whole C core plus the harness, instrumented. -O1 -g as libFuzzer
#    recommends. The core is built as CMake builds it (see CMakeLists.txt): csrc/*.c and the
#    scalar kernels at the baseline, and the kernel tier this CPU runs best (avx512, else avx2)
#    from csrc/kernels/<family>_<tier>.c with its own flags (-DKERNEL_TIER), so that the weight
#    packing the fuzzed loads do is the one that runs here. No -fopenmp: the core runs serially,
#    one core per fuzzer (fuzz/omp_serial.c answers its omp_* calls). The objects are shared by
#    both targets and rebuilt only when a source or header changed.
families=(matmul q24 q24k q16 int8 attention nn deltanet)   # CMakeLists.txt: QWEN3C_KERNEL_FAMILIES
tier=""; tier_flags=()
if grep -qw avx512_vnni /proc/cpuinfo 2>/dev/null; then
  tier=avx512; tier_flags=(-mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512vnni -mavx2 -mfma -mf16c)
elif grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
  tier=avx2; tier_flags=(-mavx2 -mfma -mf16c)
fi
base=(-O1 -g -Wno-unknown-pragmas -fno-omit-frame-pointer
      -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
      -I"$root/csrc" -I"$root/tests/c")
core_flags=("${base[@]}")
[ -n "$tier" ] && core_flags+=("-DQWEN3C_TIER_${tier^^}")
mkdir -p "$out/obj"
if [ "$(cat "$out/obj/build" 2>/dev/null)" != "$CC $tier" ]; then  # another compiler or tier
  rm -f "$out"/obj/*.o; echo "$CC $tier" > "$out/obj/build"
fi
newest_h=$(ls -t "$root"/csrc/*.h "$root"/csrc/kernels/*.h | head -n1)
# one line per object: object name, source, the flags set to use (core / tier)
units=()
for src in "$root"/csrc/*.c; do
  case "$src" in */os_windows.c) continue;; esac
  units+=("$(basename "$src" .c) $src core")
done
for fam in "${families[@]}"; do
  units+=("${fam}_scalar $root/csrc/kernels/${fam}_scalar.c core")
  if [ -n "$tier" ]; then
    src=$root/csrc/kernels/${fam}_$tier.c
    [ -f "$src" ] || src=$root/csrc/kernels/${fam}_scalar.c
    units+=("${fam}_tier_$tier $src tier")
  fi
done
units+=("omp_serial $root/fuzz/omp_serial.c core")
for src in "${harness[@]}"; do units+=("$(basename "$src" .c) $src core"); done
objs=()
for unit in "${units[@]}"; do
  read -r name src kind <<< "$unit"
  obj=$out/obj/$name.o
  case "$name" in fuzz_*|test_*) ;; *) objs+=("$obj");; esac
  if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ "$newest_h" -nt "$obj" ]; then
    if [ "$kind" = tier ]; then
      "$CC" "${base[@]}" "${tier_flags[@]}" -DKERNEL_TIER="$tier" -c "$src" -o "$obj.tmp" &
    else
      "$CC" "${core_flags[@]}" -c "$src" -o "$obj.tmp" &
    fi
    pending+=("$obj")
  fi
  if [ "$(jobs -rp | wc -l)" -ge "$(nproc)" ]; then wait -n; fi   # a failed compile stops here
done
for pid in $(jobs -p); do wait "$pid"; done                         # ... or here
for obj in "${pending[@]:-}"; do [ -z "$obj" ] || mv -f "$obj.tmp" "$obj"; done
if [ "$target" = ctests ]; then
  for src in "${harness[@]}"; do
    name=$(basename "$src" .c)
    "$CC" -fsanitize=address,undefined "${objs[@]}" "$out/obj/$name.o" -lm -o "$out/$name"
    (cd "$root" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
       "$out/$name")
  done
  exit 0
fi
bin=$out/fuzz_$target
"$CC" -fsanitize=fuzzer,address,undefined "${objs[@]}" "$out/obj/fuzz_$target.o" -lm -o "$bin.tmp"
mv -f "$bin.tmp" "$bin"

# 2. seeds (generated: small valid models / texts; the committed ones are in fuzz/seeds/)
"$PY" "$root/fuzz/make_seeds.py" "$target" "$out/seeds/$target"
env_vars=()
if [ "$target" = tokenizer ]; then
  tokenizers=$("$PY" "$root/fuzz/make_seeds.py" tokenizers "$out/tokenizers")
  env_vars=(QWEN3C_FUZZ_TOKENIZERS="$tokenizers")
fi

# 3. run: leaks checked, 2 GB RSS cap, 10 s per input at most
log=$out/$target.log
start=$(date +%s)
set +e
env "${env_vars[@]}" \
    ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
           -artifact_prefix="$out/artifacts/$target-" "$@" \
           "$out/corpus/$target" "$out/seeds/$target" "$root/fuzz/seeds/$target" > "$log" 2>&1
rc=$?
set -e
elapsed=$(( $(date +%s) - start ))
grep -E "^(INFO: +[0-9]+ files found|#[0-9]+ *(INITED|DONE)|==[0-9]+==|SUMMARY|MS:|Test unit written|stat::number_of_executed_units)" "$log" \
    | tail -n 40 || true
execs=$(awk '/^stat::number_of_executed_units:/ {print $2}' "$log" | tail -n1)
rate=$(awk '/^stat::average_exec_per_sec:/ {print $2}' "$log" | tail -n1)
findings=$([ "$rc" = 0 ] && echo 0 || echo 1)
echo "fuzz $target: ${execs:-?} executions in $elapsed s (${rate:-?}/s), $findings findings (log: $log)"
exit "$rc"
