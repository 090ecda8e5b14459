# CMake toolchain file: cross-compile qwen3c's C core and C tests for arm64 Linux with Debian's
# gcc-aarch64-linux-gnu, and run the tests under qemu-aarch64 (Debian qemu-user):
#
#   cmake -S . -B build/arm64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
#         -DQWEN3C_PYTHON=OFF -DQWEN3C_BUILD_C_TESTS=ON
#   cmake --build build/arm64 && (cd build/arm64 && ctest)       # ctest runs them under qemu
#
# QWEN3C_PYTHON=OFF: the cffi module needs an arm64 Python to build against; the core and the C
# tests need none. ctest prefixes every test with CMAKE_CROSSCOMPILING_EMULATOR; QEMU_CPU picks
# the emulated CPU (qemu's default `max` has dotprod and i8mm; cortex-a72 has neither,
# neoverse-n1 has dotprod only), e.g. `QEMU_CPU=cortex-a72 ctest`.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(QWEN3C_CROSS_PREFIX aarch64-linux-gnu- CACHE STRING "prefix of the cross tools (gcc, objdump)")
set(CMAKE_C_COMPILER ${QWEN3C_CROSS_PREFIX}gcc)
set(QWEN3C_SYSROOT /usr/aarch64-linux-gnu CACHE PATH "the arm64 libraries qemu loads (-L)")

set(CMAKE_FIND_ROOT_PATH ${QWEN3C_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

find_program(QWEN3C_QEMU qemu-aarch64)
if(QWEN3C_QEMU)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${QWEN3C_QEMU} -L ${QWEN3C_SYSROOT})
endif()
