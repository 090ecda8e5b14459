"""This machine and this build: CPU features, kernel tiers, threads (`qwen3c info`, --verbose).

    >>> qwen3c.cpu_info()["tier"]      # the kernel tier a model loaded now computes with
    'avx512'

QWEN3C_CPU=avx512|avx2|avx2-novnni|sse|neon-i8mm|neon|neon-nodot|scalar forces a tier; a tier this
build or CPU lacks is refused (qwen3c.UnsupportedCPUError when a model is loaded; cpu_info()
reports it under "error"). The avx2 tier uses AVX-VNNI (vpdpbusd on 256-bit registers) where the
CPU has it; avx2-novnni is the same tier without it (what CPUs before Alder Lake run), for
testing. arm64: docs/arm64.md.
"""
from __future__ import annotations

from . import _native

NO_OPENMP = "built without OpenMP: install libomp and reinstall"


def cpu_info() -> dict:
    """A dict: features (list), tiers (list, best first), best, tier (None if QWEN3C_CPU is
    refused), requested (QWEN3C_CPU or None), error, openmp (bool), threads (the default thread
    count: all processors, 1 without OpenMP), threads_note, compiler."""
    info = _native.cpu_info()
    info["threads"] = info["n_procs"] if info["openmp"] else 1
    info["threads_note"] = "OpenMP" if info["openmp"] else NO_OPENMP
    return info


def threads_text(n_threads: int | None = None, info: dict | None = None) -> str:
    """'threads: 2 (OpenMP)', or 'threads: 1 (built without OpenMP: install libomp and
    reinstall)'; n_threads: a context's count (default: the default count)."""
    info = info or cpu_info()
    n = info["threads"] if n_threads is None else n_threads
    return f"threads: {n} ({info['threads_note']})"


def describe(info: dict | None = None) -> str:
    """The machine section of `qwen3c info`: kernel tier, features, threads, compiler."""
    info = info or cpu_info()
    if info["tier"]:
        why = f"QWEN3C_CPU={info['requested']}" if info["requested"] else "the best this CPU runs"
        if info["tier"] == "avx2" and "avx_vnni" in info["features"]:
            why = "with AVX-VNNI; " + why
        tier = f"{info['tier']} ({why}; this build has {' '.join(info['tiers'])})"
    else:
        tier = f"none: {info['error']}"
    return "\n".join(["this machine",
                      f"  kernel tier: {tier}",
                      f"  cpu features: {' '.join(info['features']) or '-'}",
                      f"  {threads_text(info=info)}",
                      f"  compiler: {info['compiler'] or '?'}"])
