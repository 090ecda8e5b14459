"""The q24 matmul path (csrc/quant_q24.c): the default for Q8_0 / Q4_0 / Q4_1 weights.

The activations are quantized to 24-bit fixed point per block of 32 (float32 d = max|x| /
8355711, v = rint(float32(x * float32(1/d))) clamped to +-8355711, split into balanced signed
byte digits v = 65536 h + 256 m + l), the weights are repacked into 16-row groups, and each
block is f = fma(float(sum w h), 65536, float(sum w (256 m + l))) from exact int32 sums, then
tot = fma(f, dw * dx, tot) (+ fma(m_w, sum x, tot) for Q4_1). Checked:
  (1) against a numpy reference doing the same quantization (its digits round-trip, each fits
      a signed byte) and exact integer block sums, combined in float64: equal up to float32
      rounding (<= 2e-6 of sum |dw dx| |w| |v| + |m| |x|; measured <= 1.1e-7); and against a
      float32 emulation of the header's exact steps (correctly rounded FMAs): bit for bit (Q4_1
      when sum x is exact in any order), which every CPU tier (QWEN3C_CPU: avx512 VNNI ... scalar) must
      both meet;
  (2) n_tok 1..9, 17, 64 (decode, the 4-token prefill tile and its remainders 1-3) on row
      counts that are and are not multiples of the 16-row groups: every token of a batch equals
      that token alone bit for bit, the first k rows equal a k-row matrix (the padded last group),
      and 1, 2, 3 or all threads give identical results;
  (3) the exact float path (_native.matmul) on Qwen3-shaped data with outlier channels: within
      2e-6 of max |out| (measured 2e-7 .. 4.3e-7) and >= 10x closer than q16 (4e-5 .. 9e-5);
  (4) extremes: Q8_0 quants -128 / 127 against full-scale activations, Q4 nibbles 0 / 15, a
      product x / d that rounds past 8355711 (the clamp), zero / 1e-45 / subnormal / huge /
      tiny-normal blocks and the d >= FLT_MIN threshold, NaN / +-inf (the token's outputs are
      NaN, the other tokens' untouched), all-zero x (exact zeros);
  (5) bad input: sizes, unsupported types.
"""
from __future__ import annotations

import numpy as np
import pytest

from qwen3c import _native
from test_quant import (Q24_UNSUPPORTED, check_matmul_size_errors, check_relative_error,
                        check_unsupported_type, extreme_nibble_weights,
                        extreme_q8_weights, random_weights)
from test_quant_int8 import weight_parts

Q24 = list(_native.Q24_TYPES)
VMAX = 8355711                      # 0x7F7F7F: the largest |v| with three signed-byte digits
F32 = np.float32
FLT_MIN = F32(np.finfo(np.float32).tiny)


# ---- the numpy reference -------------------------------------------------------------------------

def quantize_x(x: np.ndarray) -> dict:
    """The C activation quantization, in float32, per block of 32 of each token row:
    v, h, m, l int64 (n_tok, nb, 32); d float32 (n_tok, nb) (NaN for a block with NaN / inf,
    0 when d < FLT_MIN); x float32 (n_tok, nb, 32); bad bool (n_tok, nb)."""
    xb = np.ascontiguousarray(x, dtype=F32).reshape(x.shape[0], -1, 32)
    fin = np.isfinite(xb)
    bad = ~fin.all(axis=-1)
    xf = np.where(fin, xb, F32(0))
    d = (np.abs(xf).max(axis=-1) / F32(VMAX)).astype(F32)
    ok = d >= FLT_MIN
    d = np.where(ok, d, F32(0)).astype(F32)
    inv = np.where(ok, F32(1) / np.where(ok, d, F32(1)), F32(0)).astype(F32)
    prod = (xf * inv[..., None]).astype(F32)                 # the float32 product x * (1/d)
    v = np.clip(np.rint(prod).astype(np.int64), -VMAX, VMAX)  # ties to even, then the clamp
    v[bad] = 0
    d = np.where(bad, F32(np.nan), d).astype(F32)
    # balanced base-256 digits, each a signed byte
    l = ((v & 0xFF) ^ 0x80) - 0x80
    v1 = (v - l) >> 8
    m = ((v1 & 0xFF) ^ 0x80) - 0x80
    h = (v1 - m) >> 8
    assert np.array_equal(65536 * h + 256 * m + l, v), "digits do not round-trip"
    assert np.abs(h).max() <= 127 and np.abs(m).max() <= 128 and np.abs(l).max() <= 128
    assert ((v1 - m) % 256 == 0).all() and ((v - l) % 256 == 0).all()
    return dict(v=v, h=h, m=m, l=l, d=d, x=xb, bad=bad)


def int_sums(tname: str, raw: np.ndarray, q: dict, n: int):
    """(w, dw, m) of the weights and the exact block sums ih = sum w h, iml = sum w (256 m + l)
    (n_tok, rows, nb), checked to be exact int32 values with 65536 ih + iml = sum w v."""
    w, dw, m = weight_parts(tname, raw, n)
    ih = np.einsum("tbk,rbk->trb", q["h"], w)
    iml = np.einsum("tbk,rbk->trb", 256 * q["m"] + q["l"], w)
    assert np.array_equal(65536 * ih + iml, np.einsum("tbk,rbk->trb", q["v"], w))
    assert np.abs(ih).max() < 2**24 and np.abs(iml).max() < 2**31  # float(ih) exact, iml in int32
    return w, dw, m, ih, iml


def reference_q24(tname: str, raw: np.ndarray, x: np.ndarray, n: int):
    """(out float64 (n_tok, rows), the float32 rounding scale (n_tok, rows)) of the q24 path's
    arithmetic, combined in float64: the kernels round float(iml), f, dw * dx, the accumulation
    (and Q4_1's float32 sum of x), so the scale is sum |dw dx| sum |w| |v| + |m| sum |x|."""
    q = quantize_x(x)
    w, dw, m, ih, iml = int_sums(tname, raw, q, n)
    dx = q["d"].astype(np.float64)
    xb = q["x"].astype(np.float64)
    scale = dw[None] * dx[:, None, :]
    terms = scale * (65536.0 * ih + iml) + m[None] * xb.sum(-1)[:, None, :]
    iabs = np.einsum("tbk,rbk->trb", np.abs(q["v"]), np.abs(w))
    mag = np.abs(scale) * iabs + np.abs(m[None]) * np.abs(xb).sum(-1)[:, None, :]
    return terms.sum(-1), mag.sum(-1) + 1e-30


def check_same_arith(got, tname, raw, x, n, label, tol=2e-6):
    return check_relative_error(got, *reference_q24(tname, raw, x, n), label, tol)


def fma32(a, b, c) -> np.ndarray:
    """Correctly rounded float32 fma(a, b, c) of float32 arrays: a * b is exact in float64, the
    TwoSum error e of s = a * b + c decides the one case float64 -> float32 rounds wrongly
    (s exactly halfway between two float32s, with the true sum s + e off that midpoint)."""
    p = a.astype(np.float64) * b.astype(np.float64)
    c = c.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        s = p + c
        bv = s - p
        e = (p - (s - bv)) + (c - bv)
        r = s.astype(F32)
        t = s - r.astype(np.float64)
        other = np.nextafter(r, np.where(t > 0, F32(np.inf), F32(-np.inf)).astype(F32))
        tie = (t != 0) & (2 * t == other.astype(np.float64) - r.astype(np.float64)) & (e * t > 0)
    return np.where(tie, other, r).astype(F32)


def emulate_q24(tname: str, raw: np.ndarray, x: np.ndarray, n: int) -> np.ndarray:
    """float32 (n_tok, rows): the header's steps block by block, every rounding as in C.
    Q4_1's sx is summed left to right (the VNNI build sums it in another order, so compare
    Q4_1 only where every order gives the same float32 sum)."""
    q = quantize_x(x)
    w, dw, m, ih, iml = int_sums(tname, raw, q, n)
    sx = np.zeros(q["x"].shape[:2], F32)
    with np.errstate(invalid="ignore", over="ignore"):
        for k in range(32):
            sx = (sx + q["x"][..., k]).astype(F32)
        dw32, m32 = dw.astype(F32), m.astype(F32)
        tot = np.zeros((x.shape[0], raw.shape[0]), F32)
        k65536 = np.full(tot.shape, 65536, F32)
        for b in range(n // 32):
            f = fma32(ih[:, :, b].astype(np.float64).astype(F32), k65536,
                      iml[:, :, b].astype(np.float64).astype(F32))
            tot = fma32(f, (dw32[None, :, b] * q["d"][:, None, b]).astype(F32), tot)
            if tname == "Q4_1":
                mb, sb = np.broadcast_arrays(m32[None, :, b], sx[:, None, b])
                tot = fma32(mb, sb, tot)
    return tot


def dyadic_x(rng, shape):
    """Normal-ish float32 x whose block sums are exact in float32 in any order (k / 1024,
    |k| < 2^13): Q4_1's sx then does not depend on the build's summation order."""
    k = np.clip(np.rint(rng.standard_normal(shape) * 1024), -8191, 8191)
    return (k / 1024).astype(F32)


def ulp_steps_above_1() -> np.ndarray:
    """float32 1 + k 2^-23, k < 4096, and for each the rounded x * (1/d) of a block maximum x."""
    c = (F32(1) + np.arange(4096, dtype=F32) * F32(2.0**-23)).astype(F32)
    d = (c / F32(VMAX)).astype(F32)
    return c, np.rint((c * (F32(1) / d).astype(F32)).astype(F32)).astype(np.int64)


def full_scale_value() -> np.float32:
    """A float32 near 1 that, as a block maximum, quantizes to exactly 8355711 (no clamp)."""
    c, p = ulp_steps_above_1()
    return c[p == VMAX][0]


def assert_bits_equal(got, want, label):
    g, w = np.asarray(got, F32), np.asarray(want, F32)
    same = (g.view(np.int32) == w.view(np.int32)) | (np.isnan(g) & np.isnan(w))
    assert same.all(), f"{label}: {np.sum(~same)} of {same.size} outputs differ, " \
                       f"max |diff| {np.nanmax(np.abs(g.astype(np.float64) - w)):.3g}"


def q24(tname, raw, x, d, n_threads=1):
    got = _native.matmul_q24(tname, raw, x, d, n_threads=n_threads)
    assert got.dtype == np.float32 and got.shape == (*np.shape(x)[:-1], d)
    return got


# ---- (1) the same arithmetic as the numpy reference ----------------------------------------------

def test_reference_quantization_is_24_bit():
    """The reference itself: digits fit signed bytes (asserted in quantize_x), the block's
    largest |x| maps to 8355711 (clamped when x * (1/d) rounds past it), and the rounding error
    is about d / 2 = max|x| / 16711422."""
    rng = np.random.default_rng(240)
    x = (rng.standard_normal((64, 32 * 16)) * np.exp(rng.uniform(-20, 20, (64, 1)))).astype(F32)
    q = quantize_x(x)
    v, d, xb = q["v"], q["d"].astype(np.float64), q["x"].astype(np.float64)
    top = np.abs(v).max(-1)                  # d rounds either way: max|x| maps to VMAX or VMAX - 1
    assert np.isin(top, [VMAX - 1, VMAX]).all() and (top == VMAX).mean() > 0.3
    err = np.abs(xb - d[..., None] * v) / d[..., None]
    assert 0.2 < err.mean() < 0.35 and err.max() <= 1.5, (err.mean(), err.max())
    # the clamp is needed: x * (1/d) rounds to 8355712 or more for a fair share of blocks
    xf = xb.astype(F32)
    inv = (F32(1) / q["d"]).astype(F32)
    unclamped = np.abs(np.rint((xf * inv[..., None]).astype(F32))).max(-1)
    assert (unclamped > VMAX).mean() > 0.05
    # the digits of +-8355711 are all +-127
    a = full_scale_value()
    q2 = quantize_x(np.array([[a] + [-a] * 31], F32))
    assert np.array_equal(np.abs(q2["v"]), np.full((1, 1, 32), VMAX))
    for digit in "hml":
        assert np.array_equal(q2[digit][0, 0], np.where(np.arange(32) == 0, 127, -127))


@pytest.mark.parametrize("tname", Q24)
def test_matches_reference_arithmetic(tname):
    rng = np.random.default_rng(240 + Q24.index(tname))
    worst = 0.0
    for d, n in [(1, 32), (5, 96), (15, 512), (17, 512 + 32), (33, 1024 + 32 * 5), (12, 3072)]:
        raw = random_weights(tname, d, n, rng)
        for n_tok in (1, 2, 5, 8):
            x = rng.standard_normal((n_tok, n)).astype(F32)
            got = q24(tname, raw, x, d, n_threads=1 + n_tok % 2)
            label = f"{tname} d={d} n={n} n_tok={n_tok}"
            worst = max(worst, check_same_arith(got, tname, raw, x, n, label))
    assert worst > 0  # float32 rounding does happen: the check is not vacuous


@pytest.mark.parametrize("tname", Q24)
def test_bit_exact_float32_emulation(tname):
    """Every float step as the header says (float(iml) rounded, fma, dw * dx in float32, fma):
    the output is the emulation's bit for bit, on whichever CPU tier runs (QWEN3C_CPU)."""
    rng = np.random.default_rng(250 + Q24.index(tname))
    for d, n, n_tok in [(1, 32, 1), (17, 512, 5), (50, 32 * 37, 3), (16, 3072, 2)]:
        raw = random_weights(tname, d, n, rng)
        x = dyadic_x(rng, (n_tok, n))
        x[:, ::97] *= 16                     # outlier channels (still exactly summable)
        assert_bits_equal(q24(tname, raw, x, d), emulate_q24(tname, raw, x, n), f"{tname} d={d}")
        if tname != "Q4_1":                  # no sum of x: any x is bit exact
            x = rng.standard_normal((n_tok, n)).astype(F32) * F32(10.0 ** rng.uniform(-3, 3))
            assert_bits_equal(q24(tname, raw, x, d), emulate_q24(tname, raw, x, n),
                              f"{tname} d={d} normal x")


# ---- (2) batch sizes, row groups, threads -------------------------------------------------------

@pytest.mark.parametrize("tname", Q24)
def test_batch_sizes_and_row_groups(tname):
    """n_tok 1..9, 17, 64 (decode, the 4-token tile, remainders 1-3) on row counts that are and
    are not multiples of 16: same arithmetic, and each token equals that token alone bit for bit
    (at every tile position: the batches are prefixes of one 64-token x)."""
    rng = np.random.default_rng(260 + Q24.index(tname))
    probe = (*range(9), 15, 16, 62, 63)      # tokens compared with their single-token result
    for d, n in [(1, 64), (5, 32 * 5), (15, 32 * 3), (16, 32 * 21), (17, 32 * 2), (33, 32 * 9),
                 (50, 32 * 4), (32, 32 * 3), (48, 32)]:
        raw = random_weights(tname, d, n, rng)
        x = rng.standard_normal((64, n)).astype(F32)
        x[:, ::7] *= 8.0
        one = {t: q24(tname, raw, x[t], d) for t in probe}
        for n_tok in (*range(1, 10), 17, 64):
            got = q24(tname, raw, x[:n_tok], d)
            check_same_arith(got, tname, raw, x[:n_tok], n, f"{tname} d={d} n={n} n_tok={n_tok}")
            for t in probe:
                if t < n_tok:
                    assert_bits_equal(got[t], one[t], f"{tname} d={d} n_tok={n_tok} token {t}")
        # a batch whose tokens sit at other tile positions than before gives the same bits
        perm = np.array([9, 2, 63, 0, 16, 5, 62, 1, 15, 3, 4])
        got = q24(tname, raw, x[perm], d)
        assert_bits_equal(got[[1, 2, 3, 4, 5, 6]], np.stack([one[t] for t in perm[1:7]]),
                          f"{tname} d={d} permuted")


@pytest.mark.parametrize("tname", Q24)
def test_padded_last_group(tname):
    """The first k rows of a matrix give the same outputs as a k-row matrix: the zero rows that
    pad a short last 16-row group never leak into the real rows (k = 1..17, 31..33, 49)."""
    rng = np.random.default_rng(270 + Q24.index(tname))
    n = 32 * 6
    raw = random_weights(tname, 50, n, rng)
    x = rng.standard_normal((7, n)).astype(F32)
    full = q24(tname, raw, x, 50)
    for k in (*range(1, 18), 31, 32, 33, 49):
        assert_bits_equal(q24(tname, raw[:k], x, k), full[:, :k], f"{tname} rows {k}")


@pytest.mark.parametrize("tname", Q24)
def test_thread_counts_agree(tname):
    """The rows are split in 16-row units: 1, 2, 3 or all threads compute the same bits."""
    rng = np.random.default_rng(280 + Q24.index(tname))
    for d, n in [(37, 32 * 40), (50, 32 * 8), (16 * 7, 32 * 3)]:
        raw = random_weights(tname, d, n, rng)
        for n_tok in (1, 7):
            x = rng.standard_normal((n_tok, n)).astype(F32)
            base = q24(tname, raw, x, d, n_threads=1)
            for nt in (2, 3, 0, 64):
                got = q24(tname, raw, x, d, n_threads=nt)
                assert_bits_equal(got, base, f"{tname} d={d} n_tok={n_tok} threads={nt}")


# ---- (3) closeness to the exact float path -------------------------------------------------------

@pytest.mark.parametrize("tname", Q24)
def test_close_to_exact_path(tname):
    """Qwen3-shaped random data with outlier channels: the 24-bit activations cost <= 2e-6 of
    max |out| (measured 2e-7 .. 4.3e-7) and are at least 10x closer to the float path than q16
    (measured 4e-5 .. 9e-5)."""
    rng = np.random.default_rng(290 + Q24.index(tname))
    d, n = 256, 1024
    raw = random_weights(tname, d, n, rng)
    for n_tok in (1, 7, 33):
        x = rng.standard_normal((n_tok, n)).astype(F32)
        x[:, ::97] *= 20.0                   # a few outlier channels, as in real activations
        exact = _native.matmul(tname, raw, x, d, n_threads=2).astype(np.float64)
        top = np.abs(exact).max()
        rel24 = np.abs(q24(tname, raw, x, d, n_threads=2) - exact).max() / top
        rel16 = np.abs(_native.matmul_q16(tname, raw, x, d, n_threads=2) - exact).max() / top
        assert rel24 <= 2e-6, f"{tname} n_tok={n_tok}: q24 {rel24:.3g} of max |out|"
        assert rel24 * 10 <= rel16, f"{tname} n_tok={n_tok}: q24 {rel24:.3g} vs q16 {rel16:.3g}"


# ---- (4) extremes --------------------------------------------------------------------------------

def test_extreme_q8_weights_full_scale():
    """Q8_0 quants -128 / 127 against activations at +-8355711 (all digits +-127): the largest
    |ih|, |iml| (float(iml) no longer exact for the mixed-sign rows)."""
    n, d = 512, 5
    raw, q = extreme_q8_weights(n, d)
    x = np.ones((4, n), F32)
    x[1] = -1.0
    x[2, ::3] = -1.0
    x[3] = np.random.default_rng(8).choice(np.array([-1.0, 1.0], F32), size=n)
    x *= full_scale_value()
    qx = quantize_x(x)
    assert (np.abs(qx["v"]) == VMAX).all()
    _, _, _, ih, iml = int_sums("Q8_0", raw, qx, n)
    assert np.abs(ih).max() == 32 * 128 * 127 and np.abs(iml).max() == 32 * 128 * 32639
    assert (iml.astype(F32).astype(np.int64) != iml).any()  # float(iml) rounds somewhere
    for xs in (x, x[0], x[3]):
        got = np.atleast_2d(q24("Q8_0", raw, xs, d))
        x2 = np.atleast_2d(xs)
        # x quantizes to +-8355711 with d = a / 8355711: out = sum(w * x) up to rounding
        want = x2.astype(np.float64) @ q.reshape(d, n).astype(np.float64).T
        np.testing.assert_allclose(got, want, rtol=1e-6)
        check_same_arith(got, "Q8_0", raw, x2, n, "Q8_0 extremes")
        assert_bits_equal(got, emulate_q24("Q8_0", raw, x2, n), "Q8_0 extremes")


@pytest.mark.parametrize("tname", ["Q4_0", "Q4_1"])
def test_extreme_nibbles(tname):
    n, d = 32 * 18, 4
    raw = extreme_nibble_weights(tname, n, d)
    x = np.ones((3, n), F32)
    x[1, 1::2] = -3.0
    x[2] = -1.0
    for xs in (x, x[1]):
        x2 = np.atleast_2d(xs)
        got = np.atleast_2d(q24(tname, raw, xs, d))
        check_same_arith(got, tname, raw, x2, n, f"{tname} extremes")
        assert_bits_equal(got, emulate_q24(tname, raw, x2, n), f"{tname} extremes")
        exact = np.atleast_2d(_native.matmul(tname, raw, xs, d)).astype(np.float64)
        np.testing.assert_allclose(got, exact, rtol=1e-6, atol=1e-6 * np.abs(exact).max())


def test_clamp_at_8355711():
    """A block maximum whose float32 x * (1/d) rounds to 8355712 or more is clamped to 8355711
    (unclamped, its top digit would be 128 and wrap to -128 in a signed byte)."""
    cand, p = ulp_steps_above_1()
    over = cand[p > VMAX]
    assert over.size > 100
    n, rows = 32 * 3, 2
    raw = np.zeros((rows, n // 32, 34), np.uint8)
    raw[:, :, 0:2] = np.array([1.0], np.float16).view(np.uint8)
    raw[0, :, 2] = 1                      # row 0: w = 1 on the first column of each block
    raw[1, :, 2:] = 1                     # row 1: w = 1 everywhere
    raw = raw.reshape(rows, -1)
    x = np.zeros((len(over[:50]), n), F32)
    x[:, 0] = over[:50]                   # the block maximum, which overflows 8355711
    x[:, 1] = -over[:50] * F32(0.5)
    x[:, 32:64] = np.linspace(-2, 2, 32, dtype=F32)
    x[:, 64] = -over[:50]
    got = q24("Q8_0", raw, x, rows)
    assert_bits_equal(got, emulate_q24("Q8_0", raw, x, n), "clamp")
    # row 0 = x0 + x32 + x64 = x0 - 2 - x0: the clamped maximum costs < 1e-7, a wrapped digit ~2 x0
    want = x[:, [0, 32, 64]].astype(np.float64).sum(1)
    np.testing.assert_allclose(got[:, 0], want, rtol=0, atol=1e-6)
    check_same_arith(got, "Q8_0", raw, x, n, "clamp")


@pytest.mark.parametrize("tname", Q24)
def test_zero_tiny_and_huge_blocks(tname):
    rng = np.random.default_rng(300 + Q24.index(tname))
    n, d = 32 * 20, 19
    raw = random_weights(tname, d, n, rng)
    x = dyadic_x(rng, (5, n))
    x[0, :32] = 0.0                  # an all-zero block contributes nothing (not NaN)
    x[1, 32:64] = 1e-45              # too small to scale: quantizes to 0
    x[1, 64:96] = -3e-39             # subnormal amax / 8355711 < FLT_MIN: quantizes to 0
    x[1, 96:128] *= F32(2.0**-96)    # amax ~ 4e-29: quantized, d ~ 5e-36 a tiny normal
    x[2, 96:128] *= F32(2.0**100)    # huge (~1e30): finite scales, finite output
    x[3] *= F32(2.0**-100)           # tiny but normal scales everywhere (~1e-30)
    x[3, 200] = 0.0
    edge = (F32(VMAX) * FLT_MIN).astype(F32)   # the smallest amax with d >= FLT_MIN (9.8e-32)
    assert (edge / F32(VMAX)).astype(F32) >= FLT_MIN
    below = np.nextafter(edge, F32(0))
    x[4, 128:160] = (np.linspace(-1, 1, 32, dtype=F32) * below).astype(F32)  # d < FLT_MIN: 0
    x[4, 160:192] = (np.linspace(-1, 1, 32, dtype=F32) * edge).astype(F32)   # d = FLT_MIN-ish
    q = quantize_x(x)
    assert (q["d"][1, 1:3] == 0).all() and q["d"][4, 4] == 0 and q["d"][4, 5] >= FLT_MIN
    assert q["d"][1, 3] >= FLT_MIN and (q["d"][3] >= FLT_MIN).all()
    for n_tok in (1, 5):
        got = q24(tname, raw, x[-n_tok:], d)
        assert np.all(np.isfinite(got))
        check_same_arith(got, tname, raw, x[-n_tok:], n, f"{tname} n_tok={n_tok}")
        assert_bits_equal(got, emulate_q24(tname, raw, x[-n_tok:], n), f"{tname} n_tok={n_tok}")
    # blocks that quantize to 0 contribute exactly 0 (Q4_1: still m * sum x)
    y = np.zeros((3, n), F32)
    y[0, :] = 1e-45
    y[1, :] = -3e-39
    y[2, ::2] = 2.0**-104           # < 9.8e-32 (a power of two: sum x exact in any order)
    got = q24(tname, raw, y, d)
    if tname == "Q4_1":
        assert_bits_equal(got, emulate_q24(tname, raw, y, n), f"{tname} zero blocks")
    else:
        assert np.array_equal(got, np.zeros_like(got))
    zero = q24(tname, raw, np.zeros((3, n), F32), d)
    assert np.array_equal(zero, np.zeros_like(zero)) and not np.signbit(zero).any()


@pytest.mark.parametrize("tname", Q24)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_blocks(tname, bad):
    """A NaN or +-inf anywhere in a token's row makes all its outputs NaN (not inf, even where
    the weight scale is 0); the other tokens of the batch are exactly as without it."""
    rng = np.random.default_rng(310 + Q24.index(tname))
    n, d = 32 * 10, 21
    raw = random_weights(tname, d, n, rng)
    blk = raw.reshape(d, n // 32, -1)
    blk[3, 4, 0:2] = 0                     # a zero weight scale in the poisoned block
    raw = blk.reshape(d, -1)
    x = dyadic_x(rng, (6, n))
    clean = q24(tname, raw, x, d)
    x[1, 4 * 32 + 7] = bad                 # block 4 of token 1
    x[4, 0] = bad                          # block 0 of token 4 (in the second 4-token tile)
    x[5, n - 1] = bad                      # the last element of the last token
    for nt in (1, 3):
        got = q24(tname, raw, x, d, n_threads=nt)
        assert np.isnan(got[[1, 4, 5]]).all()
        assert_bits_equal(got[[0, 2, 3]], clean[[0, 2, 3]], f"{tname} {bad} other tokens")
        assert np.isnan(q24(tname, raw, x[1], d)).all()
    assert_bits_equal(q24(tname, raw, x, d), emulate_q24(tname, raw, x, n), f"{tname} {bad} emul.")


# ---- (5) bad input -----------------------------------------------------------------------------

def test_bad_sizes_raise():
    check_matmul_size_errors(_native.matmul_q24)


@pytest.mark.parametrize("tname", Q24_UNSUPPORTED)
def test_unsupported_types_raise(tname):
    check_unsupported_type(_native.matmul_q24, tname, "q24")
