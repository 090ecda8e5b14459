#!/usr/bin/env bash
# Cross-compiled builds of the C core and the C tests (tests/c, golden logits included), run
# under emulation on this x86-64 Linux machine:
#   mingw     Windows x86-64: mingw-w64 gcc (cmake/mingw-w64-x86_64.cmake, OpenMP from its
#             libgomp, linked statically), the tests run under wine (Debian: mingw-w64, wine64)
#   aarch64   Linux arm64: gcc-aarch64-linux-gnu (cmake/aarch64-linux-gnu.cmake), the tests run
#             under qemu-aarch64 on three CPU models, one per NEON tier, with objdump and clang
#             checks of the kernels (tools/arm64_tests.sh; Debian: gcc-aarch64-linux-gnu,
#             qemu-user, clang, mingw-w64)
#   tools/cross_tests.sh [mingw] [aarch64]      (default: both; tools/run_tests.sh runs them)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(mingw aarch64)

build() { # build DIR TOOLCHAIN
  cmake -S . -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE="$2" \
        -DQWEN3C_PYTHON=OFF -DQWEN3C_BUILD_C_TESTS=ON > "$1.cmake.log" 2>&1 || { cat "$1.cmake.log"; exit 1; }
  cmake --build "$1" > "$1.build.log" 2>&1 || { cat "$1.build.log"; exit 1; }
  if grep -q "warning:" "$1.build.log"; then grep -A3 "warning:" "$1.build.log"; exit 1; fi
}

run_all() { # run_all LABEL RUNNER... : every test program of the build dir $dir, from the source root
  local label=$1; shift
  mkdir -p "$dir/logs"
  for t in "$dir"/test_*"$exe"; do
    [ -f "$t" ] && [ -x "$t" ] || continue
    local log="$dir/logs/$(basename "$t").log" t0=$SECONDS
    if ! "$@" "$t" > "$log" 2>&1; then
      echo "$label: $(basename "$t") FAILED" >&2
      grep -v "TCG doesn't support\|wine32 is missing\|multiarch needs\|dpkg --add-arch\|apt-get install wine32" "$log" >&2
      exit 1
    fi
    echo "$label: $(basename "$t") ok ($((SECONDS - t0)) s): $(grep -v "^  \|TCG\|wine32\|multiarch\|dpkg\|apt-get" "$log" | tail -n 1)"
  done
}

for target in "${targets[@]}"; do
  case "$target" in
  mingw)
    dir=build/cross-mingw exe=.exe
    build "$dir" cmake/mingw-w64-x86_64.cmake
    export WINEPREFIX="$root/build/wineprefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
    mkdir -p "$WINEPREFIX"
    run_all "wine" wine
    wineserver -k 2> /dev/null || true  # this prefix's server only
    ;;
  aarch64)
    bash tools/arm64_tests.sh build/cross-aarch64
    ;;
  *) echo "unknown target $target (mingw, aarch64)" >&2; exit 2 ;;
  esac
done
