# Cross-compile qwen3c's C core and C tests for Linux arm64 with gcc-aarch64-linux-gnu, e.g.:
#   cmake -S . -B build/aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
#         -DQWEN3C_PYTHON=OFF -DQWEN3C_BUILD_C_TESTS=ON
# tools/cross_tests.sh builds this and runs the tests under qemu-aarch64 (Debian: qemu-user),
# through tools/arm64_tests.sh. QWEN3C_PYTHON=OFF: the cffi module needs an arm64 Python; the
# core and the C tests need none. ctest runs each test through CMAKE_CROSSCOMPILING_EMULATOR;
# QEMU_CPU picks the emulated CPU (qemu's default `max` has dotprod and i8mm; cortex-a72 has
# neither, neoverse-n1 dotprod only), e.g. `QEMU_CPU=cortex-a72 ctest`.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(_triple aarch64-linux-gnu)
find_program(CMAKE_C_COMPILER NAMES ${_triple}-gcc REQUIRED)
set(CMAKE_FIND_ROOT_PATH /usr/${_triple})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
find_program(_qemu qemu-aarch64)
if(_qemu)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${_qemu} -L /usr/${_triple})
endif()
