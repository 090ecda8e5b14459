# Cross-compile qwen3c's C core and C tests for 64-bit Windows with mingw-w64 (Debian package
# mingw-w64), e.g.:
#   cmake -S . -B build/mingw -DCMAKE_TOOLCHAIN_FILE=cmake/mingw-w64-x86_64.cmake \
#         -DQWEN3C_PYTHON=OFF -DQWEN3C_BUILD_C_TESTS=ON
# tools/cross_tests.sh builds this and runs the tests under wine. The test programs are linked
# statically (libgcc, libgomp, winpthread), so they run without any mingw DLL next to them.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(_triple x86_64-w64-mingw32)
# the posix thread model's compiler: it ships libgomp (OpenMP); the win32 one has no threads
find_program(CMAKE_C_COMPILER NAMES ${_triple}-gcc-posix ${_triple}-gcc REQUIRED)
find_program(CMAKE_RC_COMPILER NAMES ${_triple}-windres)
set(CMAKE_FIND_ROOT_PATH /usr/${_triple})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
# FindOpenMP: the static libgomp.a, not the import library of libgomp-1.dll
execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=libgomp.a OUTPUT_VARIABLE _gomp
                OUTPUT_STRIP_TRAILING_WHITESPACE)
if(EXISTS "${_gomp}")
  set(OpenMP_gomp_LIBRARY "${_gomp}" CACHE FILEPATH "libgomp, static")
endif()
# run the built programs under wine when CMake / ctest needs to (try_run, add_test)
find_program(_wine NAMES wine64 wine)
if(_wine)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${_wine})
endif()
