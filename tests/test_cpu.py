"""CPU kernel tiers and threads (csrc/cpu.c, csrc/kernels/): one build holds every tier.

  - qwen3c.cpu_info() reports the CPU's features, the tiers built in (best first, scalar last),
    the best tier, the tier a model gets, OpenMP and the thread count;
  - QWEN3C_CPU forces a tier for models and for the kernel test entries; an unknown tier, one
    the build lacks (neon on x86-64, avx512 on arm64) or one the CPU lacks is refused with UnsupportedCPUError,
    naming what it can run;
  - every tier this CPU runs computes the same logits as the scalar reference within float32
    rounding, q24 packs its weights only on tiers where it is the forward pass's path (avx512,
    avx2, avx2-novnni), and q24 is bit-identical across tiers (integer sums, and the same float
    steps in the same order);
  - without OpenMP, contexts run one thread and say why ("threads: 1 (built without OpenMP: ...)").
The kernel / parity / KV cache suites run again under each lower tier in tools/run_tests.sh.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import qwen3c
from qwen3c import _native, system
from test_quant import random_weights

PKG_PARENT = str(Path(qwen3c.__file__).resolve().parent.parent)  # the package under test
INFO = qwen3c.cpu_info()
RUNNABLE = INFO["tiers"][INFO["tiers"].index(INFO["best"]):]  # every tier from the best down
ARM64 = "neon-nodot" in INFO["tiers"]
OTHER_ARCH_TIER = "avx512" if ARM64 else "neon"  # a known tier this build has no kernels for
Q24_FAST_TIERS = {"avx512", "avx2", "avx2-novnni", "neon", "neon-i8mm"}  # q24 with SIMD integer dot products
LOWEST_SIMD = RUNNABLE[-2] if len(RUNNABLE) > 1 else "scalar"  # sse, neon-nodot


def test_cpu_info_shape():
    assert INFO["tiers"][-1] == "scalar"
    assert INFO["best"] in INFO["tiers"]
    assert INFO["tier"] == (INFO["requested"] or INFO["best"])
    assert INFO["error"] is None
    assert INFO["threads"] == (INFO["n_procs"] if INFO["openmp"] else 1) >= 1
    assert INFO["compiler"].split()[0] in ("gcc", "clang", "msvc")
    if {"avx512f", "avx512_vnni", "avx512bw", "avx512vl", "avx512dq"} <= set(INFO["features"]) \
            and "avx512" in INFO["tiers"]:
        assert INFO["best"] == "avx512"
    text = system.describe(INFO)
    assert f"kernel tier: {INFO['tier']}" in text and system.threads_text(info=INFO) in text


@pytest.mark.parametrize("value, words", [
    ("foo", "is not a CPU tier"),
    ("AVX2", "is not a CPU tier"),
    (OTHER_ARCH_TIER, f"this build has no {OTHER_ARCH_TIER} kernels"),
])
def test_refused_tiers(monkeypatch, tiny_gguf, value, words):
    monkeypatch.setenv("QWEN3C_CPU", value)
    info = qwen3c.cpu_info()
    assert info["tier"] is None and words in info["error"] and "this CPU runs: " in info["error"]
    with pytest.raises(qwen3c.UnsupportedCPUError, match=words):
        qwen3c.Model(tiny_gguf, n_ctx=32)
    with pytest.raises(qwen3c.UnsupportedCPUError, match=words):
        _native.matmul("F32", np.zeros((1, 32), np.float32), np.zeros(32, np.float32), 1)
    assert issubclass(qwen3c.UnsupportedCPUError, qwen3c.Qwen3cError)


def test_tier_the_cpu_lacks_is_refused(monkeypatch, tiny_gguf):
    lacking = [t for t in INFO["tiers"] if t not in RUNNABLE]
    if not lacking:
        pytest.skip(f"this CPU runs every tier of the build ({INFO['tiers']})")
    monkeypatch.setenv("QWEN3C_CPU", lacking[0])
    with pytest.raises(qwen3c.UnsupportedCPUError, match="this CPU lacks"):
        qwen3c.Model(tiny_gguf, n_ctx=32)


def _logits(path, tier, monkeypatch, **kw):
    monkeypatch.setenv("QWEN3C_CPU", tier)
    with qwen3c.Model(path, n_ctx=64, n_threads=2, **kw) as m:
        assert m.cpu_tier == tier
        toks = [int(t) for t in np.random.default_rng(3).integers(0, m.config.vocab_size, 20)]
        batched = m.forward(toks, pos=0, all_logits=True)
        step = m.forward(toks[:1], pos=20)  # decode kernels too
        return np.concatenate([batched, step[None]]), m.packed_bytes


@pytest.mark.parametrize("out_type", ["f32", "q8_0"])
def test_every_tier_computes_the_same_logits(make_tiny_model, monkeypatch, out_type):
    path = make_tiny_model(out_type=out_type, seed=11)[1]
    ref, _ = _logits(path, "scalar", monkeypatch)
    for tier in RUNNABLE:
        got, packed = _logits(path, tier, monkeypatch)
        rel = np.abs(got - ref).max() / np.abs(ref).max()
        assert rel < 2e-5, (tier, rel)  # float32 rounding (FMA or not, summation order)
        np.testing.assert_array_equal(got.argmax(-1), ref.argmax(-1))
        if out_type == "q8_0":  # q24 is the forward pass's path (and packs) only where it is fast
            assert (packed > 0) == (tier in Q24_FAST_TIERS), (tier, packed)


def test_q24_kernels_bit_identical_across_tiers(monkeypatch):
    rng = np.random.default_rng(5)
    for tname in ("Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q5_K", "Q6_K"):
        raw = random_weights(tname, 37, 256 * 2, rng)
        x = rng.standard_normal((5, 256 * 2)).astype(np.float32)
        outs = {}
        for tier in RUNNABLE:
            monkeypatch.setenv("QWEN3C_CPU", tier)
            outs[tier] = _native.matmul_q24(tname, raw, x, 37, n_threads=2)
        for tier in RUNNABLE:
            np.testing.assert_array_equal(outs[tier], outs["scalar"], err_msg=f"{tname} {tier}")


def test_threads_reported():
    if INFO["openmp"]:
        assert system.threads_text(2, INFO) == "threads: 2 (OpenMP)"
    else:
        assert system.threads_text(info=INFO) == \
            "threads: 1 (built without OpenMP: install libomp and reinstall)"


def test_one_thread_without_openmp(tiny_gguf):
    with qwen3c.Model(tiny_gguf, n_ctx=32, n_threads=2) as m:
        assert m.config.n_threads == (2 if INFO["openmp"] else 1)


def _cli(*args, **env):
    e = dict(os.environ, PYTHONPATH=PKG_PARENT, **env)
    return subprocess.run([sys.executable, "-m", "qwen3c", *args], capture_output=True, text=True,
                          env=e, timeout=120)


def test_info_command_reports_the_machine(tiny_gguf):
    r = _cli("info")
    assert r.returncode == 0, r.stderr
    assert f"kernel tier: {INFO['tier']}" in r.stdout
    assert system.threads_text(info=INFO) in r.stdout
    r = _cli("info", str(tiny_gguf))
    assert r.returncode == 0 and "this machine" in r.stdout and "kernel tier:" in r.stdout
    r = _cli("info", "--json", QWEN3C_CPU="scalar")
    assert r.returncode == 0 and '"tier": "scalar"' in r.stdout


def test_verbose_names_tier_and_threads(tiny_chat_gguf):
    r = _cli("--model", str(tiny_chat_gguf), "--prompt", "Hi", "--max-tokens", "2", "--temperature",
             "0", "--verbose", "--threads", "2", QWEN3C_CPU=LOWEST_SIMD)
    assert r.returncode == 0, r.stderr
    assert f"{LOWEST_SIMD} kernels" in r.stderr
    assert system.threads_text(2 if INFO["openmp"] else 1, INFO) in r.stderr


def test_cli_refuses_a_tier_with_one_line(tiny_gguf):
    r = _cli("--model", str(tiny_gguf), "--prompt", "Hi", QWEN3C_CPU="avx9000")
    assert r.returncode == 1
    assert "QWEN3C_CPU=avx9000 is not a CPU tier" in r.stderr and "Traceback" not in r.stderr
