"""A Qwen3-0.6B-shaped Q8_0 file (random weights, 28 layers, vocab 151936): it loads fast,
runs, and stays near the file size in memory (no dequantize-to-F32 at load).

The file (~634 MB) is generated once per module by bench/make_model.py into a temp dir.
"""
from __future__ import annotations

import gc
import importlib.util
import os
import pathlib
import time

import numpy as np
import pytest

import qwen3c

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")

ROOT = pathlib.Path(__file__).resolve().parent.parent
N_CTX = 256
MB = 1 << 20


def _import_make_model():
    spec = importlib.util.spec_from_file_location("qwen3c_bench_make_model",
                                                  ROOT / "bench" / "make_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _vm(field: str) -> int:
    """A /proc/self/status field (VmRSS, VmHWM, ...) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


@pytest.fixture(scope="module")
def big_q8(tmp_path_factory):
    mm = _import_make_model()
    path = tmp_path_factory.mktemp("big") / "qwen3-0.6b-random-q8_0.gguf"
    size = mm.make_model(path, "q8_0", seed=0)
    gc.collect()
    yield path, size, mm.QWEN3_0_6B
    path.unlink()


def test_big_model_info(big_q8, check_model_context):
    """info on a Qwen3-0.6B-shaped file (the 151,936-token vocabulary, 28 layers)."""
    from qwen3c.gguf_info import model_info
    path, size, cfg = big_q8
    info = check_model_context(model_info(path))
    assert info["safe_to_load"] and info["file_size"] == size
    assert info["hyperparameters"]["block_count"] == cfg["n_layers"] == 28
    assert info["tensor_types"][0]["type"] == "Q8_0"


def test_big_q8_0_loads_fast_runs_and_stays_small(big_q8):
    path, size, cfg = big_q8
    kv_bytes = 2 * cfg["n_layers"] * cfg["n_kv_heads"] * cfg["head_dim"] * N_CTX * 4  # f32 K+V
    rss0 = _vm("VmRSS")

    t0 = time.perf_counter()
    m = qwen3c.Model(str(path), n_ctx=N_CTX, n_threads=0)
    load_s = time.perf_counter() - t0
    try:
        rss_loaded = _vm("VmRSS")
        c = m.config
        assert (c.n_layers, c.dim, c.hidden_dim, c.vocab_size) == (28, 1024, 3072, 151936)
        assert (c.n_heads, c.n_kv_heads, c.head_dim) == (16, 8, 128)
        assert c.tied_embeddings

        t1 = time.perf_counter()
        logits = m.forward([1, 100, 2000, 151935], pos=0)
        fwd_s = time.perf_counter() - t1
        assert logits.shape == (151936,) and np.isfinite(logits).all()
        assert logits.std() > 0  # not a degenerate all-equal output
        rss_run = _vm("VmRSS")
    finally:
        m.close()

    growth = rss_run - rss0
    print(f"\n[big model] file {size / MB:.0f} MB, KV {kv_bytes / MB:.0f} MB, load {load_s * 1e3:.0f} ms, "
          f"forward(4 tokens) {fwd_s:.2f} s, RSS +{(rss_loaded - rss0) / MB:.0f} MB after load, "
          f"+{growth / MB:.0f} MB after forward")
    # The issue asks for < 1 s; 3 s keeps a loaded shared machine from making this flaky.
    assert load_s < 3.0, f"load took {load_s:.2f} s"
    # mmapped weights + KV cache + activations: no F32 copy of the weights (that is ~4x)
    assert growth < size + kv_bytes + 300 * MB, (
        f"RSS grew {growth / MB:.0f} MB for a {size / MB:.0f} MB file + {kv_bytes / MB:.0f} MB KV")
    assert growth < 2 * size, f"RSS grew {growth / MB:.0f} MB: weights dequantized at load?"
