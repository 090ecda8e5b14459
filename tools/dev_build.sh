#!/usr/bin/env bash
# Developer build: compile the extension into BUILD_DIR (default build/dev) and drop it into
# python/qwen3c/ so that `PYTHONPATH=python pytest` runs against the working tree.
#   tools/dev_build.sh [BUILD_DIR] [extra cmake -D args...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bdir=${1:-$root/build/dev}; shift || true
mkdir -p "$(dirname "$bdir")"
cmake -S "$root" -B "$bdir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DPython_EXECUTABLE="$(command -v python3)" "$@" > "$bdir.cmake.log" 2>&1 || { cat "$bdir.cmake.log"; exit 1; }
cmake --build "$bdir" 2>&1 | grep -v '^\[' || true
so=$(ls "$bdir"/_qwen3c*.so 2>/dev/null | head -n1)
[ -n "$so" ] || { echo "build failed" >&2; exit 1; }
tmp="$root/python/qwen3c/.$(basename "$so").$$"
cp "$so" "$tmp" && mv -f "$tmp" "$root/python/qwen3c/$(basename "$so")"
echo "built $(basename "$so")"
