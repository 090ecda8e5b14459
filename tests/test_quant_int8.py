"""The opt-in int8 matmul path (csrc/quant_int8.c).

The activations are quantized to 8-bit blocks of 32 (float32 d = max|x| / 127, q = rint(x * (1/d)),
ties to even) and multiplied with integer dot products. Checked against
  (1) a numpy reference doing the same quantization, exact integer block dot products and a
      float64 combination of the scales: equal up to float32 rounding of the scale products
      and of the accumulation;
  (2) the exact float path (_native.matmul): the error the 8-bit activations cost is small;
  (3) n_tok 1..9 (decode and every micro-kernel width), shapes crossing the 16-block groups;
  (4) bad input.
"""
from __future__ import annotations

import numpy as np
import pytest

from qwen3c import _native
from test_quant import (QUANT_PATH_UNSUPPORTED, check_matmul_size_errors, check_relative_error,
                        check_unsupported_type, extreme_q8_weights,
                        random_weights)

# type name -> (bytes per block, byte offsets of the f16 scale fields)
TYPES = {"Q8_0": (34, (0,)), "Q4_0": (18, (0,)), "Q4_1": (20, (0, 2))}
INT8 = list(TYPES)
FLT_MIN = np.float32(np.finfo(np.float32).tiny)


def weight_parts(tname: str, raw: np.ndarray, n: int):
    """(w int (rows, nb, 32), dw float64 (rows, nb), m float64 (rows, nb)): value = dw * w + m."""
    rows, nb = raw.shape[0], n // 32
    blk = raw.reshape(rows, nb, TYPES[tname][0])
    dw = blk[:, :, 0:2].copy().view(np.float16)[..., 0].astype(np.float64)
    m = np.zeros_like(dw)
    if tname == "Q8_0":
        w = blk[:, :, 2:].view(np.int8).astype(np.int64)
    else:
        qs = blk[:, :, 2:] if tname == "Q4_0" else blk[:, :, 4:]
        w = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int64)
        if tname == "Q4_0":
            w -= 8
        else:
            m = blk[:, :, 2:4].copy().view(np.float16)[..., 0].astype(np.float64)
    return w, dw, m


def quantize_x(x: np.ndarray):
    """The C quantization, in float32: (q int (n_tok, nb, 32), d float32 (n_tok, nb))."""
    xb = x.astype(np.float32).reshape(x.shape[0], -1, 32)
    d = np.abs(xb).max(axis=-1) / np.float32(127)
    d = np.where((d >= FLT_MIN) & np.isfinite(d), d, np.float32(0)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    q = np.rint(xb * inv[..., None]).astype(np.int64)
    assert np.abs(q).max() <= 127
    return q, d


def reference_int8(tname: str, raw: np.ndarray, x: np.ndarray, n: int):
    """(out float64 (n_tok, rows), sum of |terms| (n_tok, rows)) of the int8 path's arithmetic."""
    w, dw, m = weight_parts(tname, raw, n)
    q, dx = quantize_x(x)
    isum = np.einsum("tbk,rbk->trb", q, w)                  # exact integer block dot products
    sx = q.sum(axis=-1)                                      # (n_tok, nb)
    dx64 = dx.astype(np.float64)
    terms = dw[None] * dx64[:, None, :] * isum + m[None] * (dx64 * sx)[:, None, :]
    mag = np.abs(dw[None] * dx64[:, None, :] * isum) + np.abs(m[None] * (dx64 * sx)[:, None, :])
    return terms.sum(-1), mag.sum(-1) + 1e-30


def check_same_arith(got, tname, raw, x, n, label, tol=2e-6):
    return check_relative_error(got, *reference_int8(tname, raw, x, n), label, tol)


# ---- (1) the same arithmetic as the numpy reference --------------------------------------------

@pytest.mark.parametrize("tname", INT8)
def test_matches_reference_arithmetic(tname):
    rng = np.random.default_rng(10 + INT8.index(tname))
    for d, n in [(1, 32), (5, 96), (7, 512), (9, 512 + 32), (17, 1024 + 32 * 5), (12, 3072)]:
        raw = random_weights(tname, d, n, rng)
        for n_tok in (1, 2, 5, 8):
            x = rng.standard_normal((n_tok, n)).astype(np.float32)
            got = _native.matmul_int8(tname, raw, x, d, n_threads=1 + n_tok % 2)
            assert got.shape == (n_tok, d)
            check_same_arith(got, tname, raw, x, n, f"{tname} d={d} n={n} n_tok={n_tok}")


@pytest.mark.parametrize("tname", INT8)
def test_batch_sizes_and_group_boundaries(tname):
    """n_tok 1..9 (decode + every micro-kernel width and remainder) on shapes whose block count
    is and is not a multiple of the 16-block groups and of the 6-group panels."""
    rng = np.random.default_rng(20 + INT8.index(tname))
    for d, n in [(13, 32 * 3), (6, 32 * 17), (21, 32 * 16 * 7 + 64)]:
        raw = random_weights(tname, d, n, rng)
        for n_tok in range(1, 10):
            x = rng.standard_normal((n_tok, n)).astype(np.float32)
            got = _native.matmul_int8(tname, raw, x, d, n_threads=1 + n_tok % 2)
            check_same_arith(got, tname, raw, x, n, f"{tname} d={d} n={n} n_tok={n_tok}")
            # each token of a batch equals that token alone (decode kernel), to float32 rounding
            one = _native.matmul_int8(tname, raw, x[-1], d)
            assert one.shape == (d,)
            np.testing.assert_allclose(got[-1], one, rtol=1e-5, atol=1e-5 * np.abs(one).max())


def test_extreme_weights_exact():
    """Q8_0 quants -128 / 127 against activations +-127 (the unsigned-operand tricks)."""
    n, d = 512, 4
    raw, q = extreme_q8_weights(n, d)
    x = np.ones((3, n), np.float32)
    x[1] = -1.0
    x[2, ::3] = -1.0
    got = _native.matmul_int8("Q8_0", raw, x, d)
    # x quantizes to exactly +-127 with d = 1/127, so out = sum(w * sign(x)) up to float rounding
    ref = (q.reshape(d, n).astype(np.float64) @ np.sign(x).T).T
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    check_same_arith(got, "Q8_0", raw, x, n, "extremes")


def test_zero_and_tiny_blocks():
    rng = np.random.default_rng(3)
    n, d = 128, 5
    raw = random_weights("Q4_1", d, n, rng)
    x = rng.standard_normal((2, n)).astype(np.float32)
    x[0, :32] = 0.0                  # an all-zero block contributes nothing (not NaN)
    x[1, 32:64] = 1e-45              # too small to scale: quantizes to 0
    got = _native.matmul_int8("Q4_1", raw, x, d)
    check_same_arith(got, "Q4_1", raw, x, n, "zero blocks")


# ---- (2) closeness to the exact float path ---------------------------------------------------------

@pytest.mark.parametrize("tname", INT8)
def test_close_to_exact_path(tname):
    """Random (Qwen3-shaped) data: the 8-bit activations cost < 2e-2 of max |out|."""
    rng = np.random.default_rng(30 + INT8.index(tname))
    d, n = 256, 1024
    raw = random_weights(tname, d, n, rng)
    for n_tok in (1, 7):
        x = rng.standard_normal((n_tok, n)).astype(np.float32)
        exact = _native.matmul(tname, raw, x, d, n_threads=2)
        fast = _native.matmul_int8(tname, raw, x, d, n_threads=2)
        rel = np.abs(fast - exact).max() / np.abs(exact).max()
        assert rel < 2e-2, f"{tname} n_tok={n_tok}: {rel:.3g} of max |out|"


# ---- (4) bad input --------------------------------------------------------------------------------

def test_bad_sizes_raise():
    check_matmul_size_errors(_native.matmul_int8)


@pytest.mark.parametrize("tname", QUANT_PATH_UNSUPPORTED)
def test_unsupported_types_raise(tname):
    check_unsupported_type(_native.matmul_int8, tname, "int8")
