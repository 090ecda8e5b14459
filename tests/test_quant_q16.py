"""The q16 matmul path (csrc/quant_q16.c): opt-in (activations="q16") for Q8_0 / Q4_0 / Q4_1 weights.

The activations are quantized to 16-bit blocks of 32 (float32 d = max|x| / 32767,
q = rint(x * (1/d)), ties to even, plus the float32 sum of x per block for Q4_1's min term)
and multiplied with exact integer dot products. Checked against
  (1) a numpy reference doing the same quantization, exact integer block dot products and a
      float64 combination of the scales: equal up to float32 rounding of the scale products
      and of the accumulation;
  (2) the exact float path (_native.matmul): the 16-bit activations cost ~1e-5 of max |out|;
  (3) n_tok 1..9, 17, 64 (decode and every micro-kernel width), shapes crossing the 16-block
      groups, the repacked panels and the tile rows;
  (4) zero / tiny / huge blocks, extreme quants;
  (5) bad input.
"""
from __future__ import annotations

import numpy as np
import pytest

from qwen3c import _native
from test_quant import (QUANT_PATH_UNSUPPORTED, check_matmul_size_errors, check_relative_error,
                        check_unsupported_type, extreme_nibble_weights,
                        extreme_q8_weights, random_weights)
from test_quant_int8 import weight_parts

Q16 = list(_native.Q16_TYPES)
FLT_MIN = np.float32(np.finfo(np.float32).tiny)


def quantize_x(x: np.ndarray):
    """The C quantization, in float32: (q int (n_tok, nb, 32), d float32 (n_tok, nb),
    x float64 (n_tok, nb, 32))."""
    xb = x.astype(np.float32).reshape(x.shape[0], -1, 32)
    d = np.abs(xb).max(axis=-1) / np.float32(32767)
    d = np.where((d >= FLT_MIN) & np.isfinite(d), d, np.float32(0)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    q = np.rint(xb * inv[..., None]).astype(np.int64)
    assert np.abs(q).max() <= 32767
    return q, d, xb.astype(np.float64)


def reference_q16(tname: str, raw: np.ndarray, x: np.ndarray, n: int):
    """(out float64 (n_tok, rows), the float32 rounding scale (n_tok, rows)) of the q16 path's
    arithmetic: the kernels round partial sums of w * q (and Q4_1 sums of x), so the scale is
    sum |dw dx| sum |w q| + |m| sum |x| over the blocks."""
    w, dw, m = weight_parts(tname, raw, n)
    q, dx, xb = quantize_x(x)
    isum = np.einsum("tbk,rbk->trb", q, w)                  # exact integer block dot products
    sxf = xb.sum(axis=-1)                                    # (n_tok, nb): sum of the ORIGINAL x
    sxa = np.abs(xb).sum(axis=-1)                            # its float32 rounding scale
    dx64 = dx.astype(np.float64)
    iabs = np.einsum("tbk,rbk->trb", np.abs(q), np.abs(w))   # the kernels' partial sums' scale
    scale = dw[None] * dx64[:, None, :]
    terms = scale * isum + m[None] * sxf[:, None, :]
    mag = np.abs(scale) * iabs + np.abs(m[None]) * sxa[:, None, :]
    return terms.sum(-1), mag.sum(-1) + 1e-30


def check_same_arith(got, tname, raw, x, n, label, tol=2e-6):
    return check_relative_error(got, *reference_q16(tname, raw, x, n), label, tol)


# ---- (1) the same arithmetic as the numpy reference --------------------------------------------

@pytest.mark.parametrize("tname", Q16)
def test_matches_reference_arithmetic(tname):
    rng = np.random.default_rng(110 + Q16.index(tname))
    for d, n in [(1, 32), (5, 96), (7, 512), (9, 512 + 32), (17, 1024 + 32 * 5), (12, 3072)]:
        raw = random_weights(tname, d, n, rng)
        for n_tok in (1, 2, 5, 8):
            x = rng.standard_normal((n_tok, n)).astype(np.float32)
            got = _native.matmul_q16(tname, raw, x, d, n_threads=1 + n_tok % 2)
            assert got.shape == (n_tok, d)
            check_same_arith(got, tname, raw, x, n, f"{tname} d={d} n={n} n_tok={n_tok}")


@pytest.mark.parametrize("tname", Q16)
def test_batch_sizes_and_group_boundaries(tname):
    """n_tok 1..9, 17, 64 (decode + every micro-kernel width and remainder) on shapes whose
    block count is and is not a multiple of the 16-block groups and of the panels, with row
    counts that are not multiples of the tile / panel rows."""
    rng = np.random.default_rng(120 + Q16.index(tname))
    for d, n in [(13, 32 * 5), (6, 32 * 21), (21, 32 * 16 * 5 + 64)]:
        raw = random_weights(tname, d, n, rng)
        for n_tok in (*range(1, 10), 17, 64):
            x = rng.standard_normal((n_tok, n)).astype(np.float32)
            got = _native.matmul_q16(tname, raw, x, d, n_threads=1 + n_tok % 2)
            check_same_arith(got, tname, raw, x, n, f"{tname} d={d} n={n} n_tok={n_tok}")
            # each token of a batch equals that token alone (decode kernel), to float32 rounding
            one = _native.matmul_q16(tname, raw, x[-1], d)
            assert one.shape == (d,)
            np.testing.assert_allclose(got[-1], one, rtol=1e-5, atol=1e-5 * np.abs(one).max())


def test_thread_counts_agree():
    rng = np.random.default_rng(5)
    d, n = 37, 32 * 40
    raw = random_weights("Q8_0", d, n, rng)
    for n_tok in (1, 11):
        x = rng.standard_normal((n_tok, n)).astype(np.float32)
        base = _native.matmul_q16("Q8_0", raw, x, d, n_threads=1)
        for nt in (2, 3, 0):
            np.testing.assert_array_equal(_native.matmul_q16("Q8_0", raw, x, d, n_threads=nt), base)


# ---- (4) extremes --------------------------------------------------------------------------

def test_extreme_weights_exact():
    """Q8_0 quants -128 / 127 against activations quantized to +-32767: the largest |isum|."""
    n, d = 512, 4
    raw, q = extreme_q8_weights(n, d)
    x = np.ones((3, n), np.float32)
    x[1] = -1.0
    x[2, ::3] = -1.0
    for xs in (x, x[0]):
        got = _native.matmul_q16("Q8_0", raw, xs, d)
        # x quantizes to exactly +-32767 with d = 1/32767: out = sum(w * sign(x)) up to rounding
        ref = (q.reshape(d, n).astype(np.float64) @ np.sign(np.atleast_2d(xs)).T).T
        np.testing.assert_allclose(np.atleast_2d(got), ref, rtol=1e-6)
        check_same_arith(np.atleast_2d(got), "Q8_0", raw, np.atleast_2d(xs), n, "extremes")


@pytest.mark.parametrize("tname", ["Q4_0", "Q4_1"])
def test_extreme_nibbles(tname):
    n, d = 32 * 18, 3
    raw = extreme_nibble_weights(tname, n, d)
    x = np.ones((2, n), np.float32)
    x[1, 1::2] = -3.0
    for xs in (x, x[1]):
        got = np.atleast_2d(_native.matmul_q16(tname, raw, xs, d))
        check_same_arith(got, tname, raw, np.atleast_2d(xs), n, f"{tname} extremes")
        exact = np.atleast_2d(_native.matmul(tname, raw, xs, d))
        np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-5 * np.abs(exact).max())


@pytest.mark.parametrize("tname", Q16)
def test_zero_tiny_and_huge_blocks(tname):
    rng = np.random.default_rng(3 + Q16.index(tname))
    n, d = 32 * 20, 7
    raw = random_weights(tname, d, n, rng)
    x = rng.standard_normal((4, n)).astype(np.float32)
    x[0, :32] = 0.0                  # an all-zero block contributes nothing (not NaN)
    x[1, 32:64] = 1e-45              # too small to scale: quantizes to 0
    x[1, 64:96] = -3e-39             # subnormal amax / 32767 < FLT_MIN: quantizes to 0
    x[2, 96:128] *= 1e30             # huge: finite scales, finite output
    x[3] *= 1e-30                    # tiny but normal scales
    x[3, 200] = 0.0
    for n_tok in (1, 4):
        got = _native.matmul_q16(tname, raw, x[-n_tok:], d)
        assert np.all(np.isfinite(got))
        check_same_arith(got, tname, raw, x[-n_tok:], n, f"{tname} n_tok={n_tok}")
    zero = _native.matmul_q16(tname, raw, np.zeros((3, n), np.float32), d)
    assert np.array_equal(zero, np.zeros_like(zero))


# ---- (2) closeness to the exact float path ---------------------------------------------------------

@pytest.mark.parametrize("tname", Q16)
def test_close_to_exact_path(tname):
    """Random (Qwen3-shaped) data: the 16-bit activations cost <= 1e-4 of max |out|
    (measured ~1e-5; the int8 path: ~1e-2)."""
    rng = np.random.default_rng(130 + Q16.index(tname))
    d, n = 256, 1024
    raw = random_weights(tname, d, n, rng)
    for n_tok in (1, 7, 33):
        x = rng.standard_normal((n_tok, n)).astype(np.float32)
        x[:, ::97] *= 20.0           # a few outlier channels, as in real activations
        exact = _native.matmul(tname, raw, x, d, n_threads=2)
        fast = _native.matmul_q16(tname, raw, x, d, n_threads=2)
        rel = np.abs(fast - exact).max() / np.abs(exact).max()
        assert rel <= 1e-4, f"{tname} n_tok={n_tok}: {rel:.3g} of max |out|"


# ---- (5) bad input --------------------------------------------------------------------------------

def test_bad_sizes_raise():
    check_matmul_size_errors(_native.matmul_q16)


@pytest.mark.parametrize("tname", QUANT_PATH_UNSUPPORTED)
def test_unsupported_types_raise(tname):
    check_unsupported_type(_native.matmul_q16, tname, "q16")
