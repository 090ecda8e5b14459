"""Micro-benchmark of the tensor-type kernels (csrc/kernels/): not a test.

    PYTHONPATH=python python bench/bench_kernels.py [--mb 100] [--types Q8_0,F32] [--threads 1,2]
                                                    [--path f32|q24] [--n-tok 64]

decode:  matvec (1 token) over a ~100 MB weight matrix -> GB/s of weights streamed
prefill: matmul of n_tok = 64 tokens against a Qwen3-0.6B-shaped 3072 x 1024 matrix -> GFLOP/s
--path q24 runs the forward pass's default path for Q8_0 / Q4_0 / Q4_1 / Q4_K / Q5_K / Q6_K
(qwen3c_matmul_q24: its time includes packing W, so compare it between builds or tiers, not
with f32). The tier is the CPU's best, or QWEN3C_CPU=avx2|avx2-novnni|... Single-threaded runs
use CPU time, which a shared machine disturbs much less than wall time.

    PYTHONPATH=python python bench/bench_kernels.py --delta-rule

--delta-rule: Qwen3.5's gated delta rule on one 128 x 128 head (csrc/kernels/deltanet_scalar.c as
         the selected tier compiles it), the recurrence the forward pass runs vs transformers'
         chunked prefill algorithm -> us per token and head
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from qwen3c import _native

SCALE_OFFSETS = {"Q8_0": (0,), "Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2),
                 "Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}


def random_matrix(tname: str, rows: int, n: int, rng) -> np.ndarray:
    if tname == "F32":
        return rng.standard_normal((rows, n), dtype=np.float32).view(np.uint8)
    if tname in ("F16", "BF16"):
        raw = rng.integers(0, 2**16, size=(rows, n), dtype=np.uint16)
        raw &= 0x3fff  # finite, moderate values in both encodings
        return raw.view(np.uint8)
    bs = _native.type_block_size(tname)
    ts = _native.type_row_size(tname, bs)
    raw = rng.integers(0, 256, size=(rows * (n // bs), ts), dtype=np.uint8)
    for off in SCALE_OFFSETS[tname]:
        raw[:, off:off + 2] = np.full((raw.shape[0],), 0.01, np.float16).view(np.uint8).reshape(-1, 2)
    return raw.reshape(rows, -1)


def best_time(fn, reps: int, nt: int) -> float:
    """Best of reps; single-threaded runs use CPU time (robust on a shared machine)."""
    clock = time.process_time if nt == 1 else time.perf_counter
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best


def delta_rule(lengths=(64, 512), hk=128, hv=128):
    """us per token and value head of both forms of the gated delta rule (one thread)."""
    rng = np.random.default_rng(0)
    print(f"{'tokens':>6} {'recurrent us':>13} {'chunked us':>11}  (per token and head, {hk} x {hv} state)")
    for n in lengths:
        q = rng.standard_normal((n, hk)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True) * np.sqrt(hk)
        k = rng.standard_normal((n, hk)).astype(np.float32)
        k /= np.linalg.norm(k, axis=1, keepdims=True)
        v = rng.standard_normal((n, hv)).astype(np.float32)
        g = -rng.uniform(0.01, 2, n).astype(np.float32)
        beta = rng.uniform(0.1, 0.9, n).astype(np.float32)
        S = np.zeros((hk, hv), np.float32)
        t = [best_time(lambda c=c: _native.gated_delta_rule(S, q, k, v, g, beta, c), 20, 1) for c in (0, 1)]
        print(f"{n:6d} {t[0] / n * 1e6:13.2f} {t[1] / n * 1e6:11.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--delta-rule", action="store_true",
                    help="time Qwen3.5's gated delta rule (recurrent vs chunked) instead")
    ap.add_argument("--mb", type=float, default=100.0, help="decode matrix size in MB")
    ap.add_argument("--types", default="Q8_0,F32,F16,BF16,Q4_0,Q4_1,Q5_0,Q4_K,Q5_K,Q6_K")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--n-tok", type=int, default=64)
    ap.add_argument("--path", choices=("f32", "q24"), default="f32")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    if args.delta_rule:
        delta_rule()
        return
    matmul = _native.matmul if args.path == "f32" else _native.matmul_q24
    rng = np.random.default_rng(0)
    threads = [int(t) for t in args.threads.split(",")]
    n = 4096
    print(f"{'type':6} {'threads':>7} {'decode GB/s':>12} {'prefill GFLOP/s':>16}")
    for tname in args.types.split(","):
        row_bytes = _native.type_row_size(tname, n)
        rows = int(args.mb * 1e6 // row_bytes) // 16 * 16
        w = random_matrix(tname, rows, n, rng)
        x = rng.standard_normal(n, dtype=np.float32)
        # prefill: Qwen3-0.6B ffn_up shape (3072 x 1024), n_tok tokens
        pd, pn = 3072, 1024
        wp = random_matrix(tname, pd, pn, rng)
        xp = rng.standard_normal((args.n_tok, pn), dtype=np.float32)
        for nt in threads:
            t = best_time(lambda: matmul(tname, w, x, rows, n_threads=nt), args.reps, nt)
            tp = best_time(lambda: matmul(tname, wp, xp, pd, n_threads=nt), args.reps, nt)
            gbs = w.nbytes / t / 1e9
            gflops = 2.0 * args.n_tok * pd * pn / tp / 1e9
            print(f"{tname:6} {nt:7d} {gbs:12.1f} {gflops:16.1f}")
        del w


if __name__ == "__main__":
    main()
