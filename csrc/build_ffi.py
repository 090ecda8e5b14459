"""Emit the C source of the cffi extension module `qwen3c._qwen3c` (out-of-line API mode).

Run by CMake at build time: `python build_ffi.py OUT.c`. The cdef is the region of qwen3c.h
between the CDEF markers, so the header is the single source of truth for the binding.
"""
import pathlib
import sys

import cffi

HERE = pathlib.Path(__file__).resolve().parent


def make_ffi() -> cffi.FFI:
    header = (HERE / "qwen3c.h").read_text(encoding="utf-8")
    cdef = header.split("/* CDEF BEGIN */", 1)[1].split("/* CDEF END */", 1)[0]
    ffi = cffi.FFI()
    ffi.cdef(cdef)
    ffi.set_source("qwen3c._qwen3c", '#include "qwen3c.h"')
    return ffi


if __name__ == "__main__":
    make_ffi().emit_c_code(sys.argv[1])
