#!/usr/bin/env bash
# arm64, emulated: cross-compile the C core and the C tests for aarch64 Linux with Debian's
# gcc-aarch64-linux-gnu (cmake/aarch64-linux-gnu.cmake; no Python needed) and run them under
# qemu-aarch64 on three emulated CPUs, one per arm64 kernel tier (csrc/kernels/kernels.h):
#   cortex-a72   NEON only              -> best tier neon-nodot
#   neoverse-n1  NEON + dotprod (sdot)  -> neon
#   max          + i8mm (smmla)         -> neon-i8mm (and neon, neon-nodot: every tier it runs)
# test_kernels compares every tier the emulated CPU runs with the scalar kernels (q24 bit for
# bit) and checks that the CPU detection (getauxval HWCAP / HWCAP2) picked the expected tier;
# the other C tests run once, on `max` (test_gguf's thousands of corrupt files are not
# arch-specific: it runs natively under ASan). Before: objdump shows sdot / smmla / fmla in the
# NEON kernels, and clang (the compiler of macOS) compiles them for each tier's -march too, and
# for Windows on arm64 (against mingw-w64's headers).
# Emulation says nothing about speed.
#   bash tools/arm64_tests.sh [BUILD_DIR]     (tools/cross_tests.sh aarch64 runs it, and so
#                                             tools/run_tests.sh; ~1 min of CPU time)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bdir=${1:-$root/build/arm64}
cd "$root"
for tool in aarch64-linux-gnu-gcc aarch64-linux-gnu-objdump qemu-aarch64; do
  command -v $tool >/dev/null || { echo "arm64 tests need $tool (Debian: gcc-aarch64-linux-gnu qemu-user)" >&2; exit 1; }
done

gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
mkdir -p "$(dirname "$bdir")"
cmake -S . -B "$bdir" "${gen[@]}" -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
      -DQWEN3C_PYTHON=OFF -DQWEN3C_BUILD_C_TESTS=ON -DCMAKE_BUILD_TYPE=Release > "$bdir.cmake.log" 2>&1 ||
  { cat "$bdir.cmake.log"; exit 1; }
cmake --build "$bdir" > "$bdir.build.log" 2>&1 || { cat "$bdir.build.log"; exit 1; }
if grep -q "warning:" "$bdir.build.log"; then grep -A3 "warning:" "$bdir.build.log"; exit 1; fi # warnings fail

# the instructions each tier's kernels are written for are really there
obj() { echo "$bdir/CMakeFiles/qwen3c_kernels_$1.dir/csrc/kernels/$2.c.o"; }
count() { aarch64-linux-gnu-objdump -d "$(obj "$1" "$2")" | grep -cw "$3" || true; }
fail=0
need() { # tier file instruction
  local n; n=$(count "$1" "$2" "$3")
  if [ "$n" -gt 0 ]; then echo "objdump: $2 ($1): $n x $3"; else echo "objdump: no $3 in $2 ($1)" >&2; fail=1; fi
}
need neon q24_neon sdot
need neon_i8mm q24_neon smmla
need neon q24k_neon sdot
need neon_i8mm q24k_neon sdot
for tier in neon_i8mm neon neon_nodot; do
  need $tier matmul_neon fmla
  need $tier attention_neon fmla
  need $tier nn_neon fmla
done
[ "$(count neon_nodot q24_neon sdot)" = 0 ] || { echo "objdump: sdot in the neon-nodot tier" >&2; fail=1; }
[ $fail = 0 ] || exit 1

# clang (Apple's compiler is clang) takes the same sources and -march flags
if command -v clang >/dev/null; then
  for march in armv8-a armv8.2-a+dotprod armv8.2-a+dotprod+i8mm; do
    for f in csrc/kernels/*_neon.c csrc/cpu.c csrc/quant.c csrc/quant_q24.c; do
      clang --target=aarch64-linux-gnu -isystem /usr/aarch64-linux-gnu/include -march=$march -O2 \
            -Wall -Wextra -Wno-unused-parameter -Werror -fopenmp-simd -Icsrc -DKERNEL_TIER=neon \
            -fsyntax-only "$f"
    done
  done
  echo "clang: the arm64 sources compile for every tier's -march"
  # Windows on arm64: the IsProcessorFeaturePresent detection and the kernels, against
  # mingw-w64's headers (compile only: nothing here runs Windows arm64 binaries)
  if [ -d /usr/share/mingw-w64/include ]; then
    for f in csrc/cpu.c csrc/quant.c csrc/kernels/*_neon.c; do
      clang --target=aarch64-w64-mingw32 -isystem /usr/share/mingw-w64/include -march=armv8.2-a+dotprod+i8mm \
            -Wall -Wextra -Wno-unused-parameter -Werror -Icsrc -DKERNEL_TIER=neon -fsyntax-only "$f"
    done
    echo "clang: cpu.c and the arm64 kernels compile for Windows on arm64 (aarch64-w64-mingw32)"
  fi
fi

# the tests, under qemu (ctest prefixes them with the toolchain file's emulator)
cd "$bdir"
for cpu_tier in cortex-a72:neon-nodot neoverse-n1:neon max:neon-i8mm; do
  cpu=${cpu_tier%%:*} tier=${cpu_tier##*:}
  echo "== qemu-aarch64 -cpu $cpu (best tier: $tier)"
  if [ "$cpu" = max ]; then tests='.*'; else tests='test_kernels|test_golden'; fi
  QEMU_CPU=$cpu QWEN3C_EXPECT_BEST=$tier ctest --output-on-failure -R "$tests" -E test_gguf
done
