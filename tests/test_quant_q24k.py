"""The q24 path for K-quant weights (csrc/quant_q24k.c, kernels/q24k_*.c): Q4_K / Q5_K / Q6_K
super-blocks, repacked into 16-row groups, times q24's 24-bit activation blocks.

Per row and activation block of 32 (x quantized as in test_quant_q24.quantize_x: d, digits
h, m, l, v = 65536 h + 256 m + l), the weight integers q give exact int32 sums and
  Q4_K / Q5_K (one 32-element sub-block j):  f = fma(float(sum q h), 65536, float(sum q (256 m + l)))
                                             tot = fma(f, (d sc_j) dx, tot); tot = fma(-(dmin mn_j), sx, tot)
  Q6_K (two 16-element sub-blocks j per block): the same f over each half with q - 32 (the
                                             offset taken from the half's digit sums),
                                             tot = fma(f, (d sc_j) dx, tot) per half
sx summed as a[i] += a[i + w] for w = 16, 8, 4, 2, 1. Checked:
  (1) bit for bit against a float32 emulation of those steps (correctly rounded FMAs), on every
      tier this CPU runs (the same numbers as the scalar reference, in one process), and
      against the exact integer sums combined in float64 (<= 2e-6 of the terms' magnitude);
  (2) n_tok 1..9, 17, 64 (decode, the token tiles and their remainders) on row counts that are
      and are not multiples of 16; each token equals itself alone bit for bit; the padded last
      group; 1, 2, 3 or all threads give identical bits;
  (3) within 2e-6 of max |out| of the exact float path (_native.matmul), Qwen3-shaped, with
      outlier channels;
  (4) extremes (largest scales and quants of each type, negative Q6_K scales, zero super-block
      scales), zero / tiny / huge activation blocks, NaN / inf;
  (5) bad input: sizes that are not whole super-blocks.
"""
from __future__ import annotations

import numpy as np
import pytest

import qwen3c
from qwen3c import _native
from test_quant import TYPES, random_weights
from test_quant_q24 import F32, assert_bits_equal, dyadic_x, fma32, quantize_x

gguf = pytest.importorskip("gguf")

KTYPES = list(_native.Q24K_TYPES)
INFO = qwen3c.cpu_info()
RUNNABLE = INFO["tiers"][INFO["tiers"].index(INFO["best"]):]


# ---- the numpy reference -------------------------------------------------------------------------

def k_parts(tname: str, raw: np.ndarray, n: int):
    """The file's integers: q (rows, n) int64 (Q6_K: q in 0..63, the weight is q - 32),
    scale (rows, n / 32 or n / 16) float32 = d * sc per sub-block, and mins (the same shape)
    float32 = dmin * mn (zeros for Q6_K); all exact float32 products."""
    rows, ns = raw.shape[0], n // 256
    blk = raw.reshape(rows * ns, TYPES[tname][1])
    if tname == "Q6_K":
        ql, qh = blk[:, :128], blk[:, 128:192]
        sc = blk[:, 192:208].view(np.int8).astype(np.float32)
        d = blk[:, 208:210].copy().view(np.float16).astype(np.float32)
        q = np.zeros((blk.shape[0], 256), np.int64)
        for h in range(2):
            for i in range(128):
                lo = (ql[:, 64 * h + i % 64] >> (4 * (i // 64))) & 15
                hi = (qh[:, 32 * h + i % 32] >> (2 * (i // 32))) & 3
                q[:, 128 * h + i] = lo | (hi.astype(np.int64) << 4)
        scale = (d * sc).astype(F32)
        return q.reshape(rows, n), scale.reshape(rows, -1), np.zeros((rows, n // 16), F32)
    d = blk[:, 0:2].copy().view(np.float16).astype(np.float32)
    dmin = blk[:, 2:4].copy().view(np.float16).astype(np.float32)
    sc, mn = gguf.quants.Q4_K.get_scale_min(blk[:, 4:16])
    qs = blk[:, 16:144] if tname == "Q4_K" else blk[:, 48:176]
    q = np.zeros((blk.shape[0], 256), np.int64)
    for p in range(4):
        q[:, 64 * p:64 * p + 32] = qs[:, 32 * p:32 * p + 32] & 15
        q[:, 64 * p + 32:64 * p + 64] = qs[:, 32 * p:32 * p + 32] >> 4
    if tname == "Q5_K":
        qh = blk[:, 16:48]
        for j in range(8):
            q[:, 32 * j:32 * j + 32] |= ((qh >> j) & 1).astype(np.int64) << 4
    scale = (d * sc.astype(np.float32)).astype(F32)
    mins = (dmin * mn.astype(np.float32)).astype(F32)
    return q.reshape(rows, n), scale.reshape(rows, -1), mins.reshape(rows, -1)


def sum32(xb: np.ndarray) -> np.ndarray:
    """float32 sums over the last axis (32) in the kernels' halving order."""
    a = xb.astype(F32)
    with np.errstate(invalid="ignore", over="ignore"):
        while a.shape[-1] > 1:
            w = a.shape[-1] // 2
            a = (a[..., :w] + a[..., w:]).astype(F32)
    return a[..., 0]


def terms(tname, raw, x, n):
    """The exact integer sums per (token, row, sub-block): ih, iml (int64), and the float32
    parts: scale (d sc), mins (dmin mn), dx and sx per sub-block's activation block."""
    qx = quantize_x(x)
    q, scale, mins = k_parts(tname, raw, n)
    rows = q.shape[0]
    sub = 16 if tname == "Q6_K" else 32
    qs = q.reshape(rows, -1, sub) - (32 if tname == "Q6_K" else 0)
    h = qx["h"].reshape(x.shape[0], -1, sub)
    ml = (256 * qx["m"] + qx["l"]).reshape(x.shape[0], -1, sub)
    ih = np.einsum("tbk,rbk->trb", h, qs)
    iml = np.einsum("tbk,rbk->trb", ml, qs)
    assert np.abs(ih).max(initial=0) < 2**24 and np.abs(iml).max(initial=0) < 2**31
    per = 2 if tname == "Q6_K" else 1               # sub-blocks per activation block
    dx = np.repeat(qx["d"], per, axis=1)             # (n_tok, n_sub)
    sx = np.repeat(sum32(qx["x"]), per, axis=1)
    return ih, iml, scale, mins, dx, sx, qx


def emulate(tname, raw, x, n) -> np.ndarray:
    """float32 (n_tok, rows): the steps in the module docstring, every rounding as in C."""
    ih, iml, scale, mins, dx, sx, _ = terms(tname, raw, x, n)
    tot = np.zeros(ih.shape[:2], F32)
    k65536 = np.full(tot.shape, 65536, F32)
    with np.errstate(invalid="ignore", over="ignore"):
        for j in range(ih.shape[2]):
            f = fma32(ih[:, :, j].astype(np.float64).astype(F32), k65536,
                      iml[:, :, j].astype(np.float64).astype(F32))
            tot = fma32(f, (scale[None, :, j] * dx[:, None, j]).astype(F32), tot)
            if tname != "Q6_K":
                mb, sb = np.broadcast_arrays(-mins[None, :, j], sx[:, None, j])
                tot = fma32(mb.astype(F32), sb.astype(F32), tot)
    return tot


def check_arith(got, tname, raw, x, n, label, tol=2e-6):
    """got against the exact integer sums combined in float64, relative to the terms' size."""
    ih, iml, scale, mins, dx, sx, qx = terms(tname, raw, x, n)
    s = scale[None].astype(np.float64) * dx[:, None].astype(np.float64)
    xs = np.repeat(np.abs(qx["x"].astype(np.float64)).sum(-1), ih.shape[2] // qx["x"].shape[1], 1)
    ref = (s * (65536.0 * ih + iml)).sum(-1) - (mins[None] * sx[:, None]).sum(-1)
    q, _, _ = k_parts(tname, raw, n)
    sub = 16 if tname == "Q6_K" else 32
    qa = np.abs(q.reshape(q.shape[0], -1, sub) - (32 if tname == "Q6_K" else 0))
    va = np.abs(qx["v"]).reshape(x.shape[0], -1, sub)
    mag = (np.abs(s) * np.einsum("tbk,rbk->trb", va, qa)).sum(-1) + \
        (np.abs(mins[None]) * xs[:, None]).sum(-1) + 1e-30
    err = np.abs(got.astype(np.float64) - ref) / mag
    assert np.all(np.isfinite(got)), label
    assert err.max() <= tol, f"{label}: max relative error {err.max():.3g}"
    return err.max()


def q24(tname, raw, x, d, n_threads=1):
    got = _native.matmul_q24(tname, raw, x, d, n_threads=n_threads)
    assert got.dtype == np.float32 and got.shape == (*np.shape(x)[:-1], d)
    return got


# ---- (1) exact arithmetic, every tier -------------------------------------------------------------

@pytest.mark.parametrize("tname", KTYPES)
def test_bit_exact_float32_emulation(tname):
    rng = np.random.default_rng(400 + KTYPES.index(tname))
    worst = 0.0
    for d, n, n_tok in [(1, 256, 1), (17, 512, 5), (50, 256 * 5, 3), (16, 3072, 2), (33, 1024, 9)]:
        raw = random_weights(tname, d, n, rng)
        x = rng.standard_normal((n_tok, n)).astype(F32) * F32(10.0 ** rng.uniform(-3, 3))
        x[:, ::97] *= 16                      # outlier channels
        got = q24(tname, raw, x, d)
        assert_bits_equal(got, emulate(tname, raw, x, n), f"{tname} d={d} n={n} n_tok={n_tok}")
        worst = max(worst, check_arith(got, tname, raw, x, n, f"{tname} d={d}"))
    assert worst > 0                          # float32 rounding does happen


@pytest.mark.parametrize("tname", KTYPES)
def test_every_tier_is_bit_identical(tname, monkeypatch):
    """The scalar reference and every tier this CPU runs (avx512, avx2 with and without
    AVX-VNNI, sse) give the same bits, decode and batch sizes."""
    rng = np.random.default_rng(410 + KTYPES.index(tname))
    raw = random_weights(tname, 37, 1024, rng)
    x = rng.standard_normal((7, 1024)).astype(F32)
    outs = {}
    for tier in RUNNABLE:
        monkeypatch.setenv("QWEN3C_CPU", tier)
        outs[tier] = (q24(tname, raw, x, 37, n_threads=2), q24(tname, raw, x[3], 37))
    for tier, (batch, one) in outs.items():
        assert_bits_equal(batch, outs["scalar"][0], f"{tname} {tier} batch")
        assert_bits_equal(one, outs["scalar"][1], f"{tname} {tier} decode")


# ---- (2) batch sizes, row groups, threads -------------------------------------------------------

@pytest.mark.parametrize("tname", KTYPES)
def test_batch_sizes_and_row_groups(tname):
    rng = np.random.default_rng(420 + KTYPES.index(tname))
    probe = (0, 1, 2, 3, 4, 5, 8, 15, 16, 63)
    for d, n in [(1, 256), (15, 512), (16, 256), (17, 768), (33, 256), (50, 512)]:
        raw = random_weights(tname, d, n, rng)
        x = rng.standard_normal((64, n)).astype(F32)
        x[:, ::7] *= 8.0
        one = {t: q24(tname, raw, x[t], d) for t in probe}
        for n_tok in (*range(1, 10), 17, 64):
            got = q24(tname, raw, x[:n_tok], d)
            if n_tok in (1, 5, 9, 64):
                assert_bits_equal(got, emulate(tname, raw, x[:n_tok], n), f"{tname} d={d} n_tok={n_tok}")
            for t in probe:
                if t < n_tok:
                    assert_bits_equal(got[t], one[t], f"{tname} d={d} n_tok={n_tok} token {t}")


@pytest.mark.parametrize("tname", KTYPES)
def test_padded_last_group_and_threads(tname):
    rng = np.random.default_rng(430 + KTYPES.index(tname))
    n = 512
    raw = random_weights(tname, 50, n, rng)
    x = rng.standard_normal((6, n)).astype(F32)
    full = q24(tname, raw, x, 50)
    for k in (1, 7, 8, 9, 15, 16, 17, 31, 33, 49):
        assert_bits_equal(q24(tname, raw[:k], x, k), full[:, :k], f"{tname} rows {k}")
    for nt in (2, 3, 0, 64):
        assert_bits_equal(q24(tname, raw, x, 50, n_threads=nt), full, f"{tname} threads={nt}")
        assert_bits_equal(q24(tname, raw, x[0], 50, n_threads=nt), full[0], f"{tname} decode threads={nt}")


# ---- (3) closeness to the exact float path -------------------------------------------------------

@pytest.mark.parametrize("tname", KTYPES)
def test_close_to_exact_path(tname):
    """Qwen3-shaped (ffn_down of Qwen3-0.6B: 1024 x 3072) with outlier channels: the 24-bit
    activations cost <= 2e-6 of max |out| against the float path (measured ~1e-7)."""
    rng = np.random.default_rng(440 + KTYPES.index(tname))
    d, n = 256, 3072
    raw = random_weights(tname, d, n, rng)
    for n_tok in (1, 7, 33):
        x = rng.standard_normal((n_tok, n)).astype(F32)
        x[:, ::97] *= 20.0
        exact = _native.matmul(tname, raw, x, d, n_threads=2).astype(np.float64)
        rel = np.abs(q24(tname, raw, x, d, n_threads=2) - exact).max() / np.abs(exact).max()
        assert rel <= 2e-6, f"{tname} n_tok={n_tok}: {rel:.3g} of max |out|"


# ---- (4) extremes ------------------------------------------------------------------------------

def extreme_k_weights(tname: str, rows: int, n: int, rng) -> np.ndarray:
    """Rows of super-blocks at the type's extremes: largest quants, largest scales (Q6_K:
    -128 and 127), largest mins, zero super-block scales, mixed with random blocks."""
    raw = random_weights(tname, rows, n, rng).reshape(rows, n // 256, TYPES[tname][1])
    one = np.array([1.0], np.float16).view(np.uint8)
    if tname == "Q6_K":
        raw[0, :, :192] = 0xFF                          # every q = 63
        raw[0, :, 192:208] = np.int8(-128).view(np.uint8)
        raw[1, :, :192] = 0x00                          # every q = 0 (weight -32)
        raw[1, :, 192:208] = 127
        raw[:2, :, 208:210] = one
        raw[2, :, 208:210] = 0                          # d = 0
    else:
        raw[0, :, 4:16] = 0xFF                          # every scale and min = 63
        raw[0, :, 16:] = 0xFF                           # every q = 15 (31)
        raw[1, :, 4:16] = 0xFF
        raw[1, :, 16:] = 0x00                           # every q = 0: -dmin * 63
        raw[:2, :, 0:2] = one
        raw[:2, :, 2:4] = one
        raw[2, :, 0:4] = 0                              # d = dmin = 0
    return raw.reshape(rows, -1)


@pytest.mark.parametrize("tname", KTYPES)
def test_extreme_weights_and_activations(tname):
    rng = np.random.default_rng(450 + KTYPES.index(tname))
    n, d = 512, 5
    raw = extreme_k_weights(tname, d, n, rng)
    x = np.ones((5, n), F32)
    x[1] = -1.0
    x[2, ::3] = -1.0
    x[3] = rng.choice(np.array([-1.0, 1.0], F32), size=n)
    x[4] = rng.standard_normal(n).astype(F32)
    for xs in (x, x[0], x[3]):
        x2 = np.atleast_2d(xs)
        got = np.atleast_2d(q24(tname, raw, xs, d))
        assert_bits_equal(got, emulate(tname, raw, x2, n), f"{tname} extremes")
        exact = np.atleast_2d(_native.matmul(tname, raw, xs, d)).astype(np.float64)
        np.testing.assert_allclose(got, exact, rtol=1e-6, atol=1e-6 * np.abs(exact).max())


@pytest.mark.parametrize("tname", KTYPES)
def test_zero_tiny_and_huge_blocks(tname):
    rng = np.random.default_rng(460 + KTYPES.index(tname))
    n, d = 256 * 3, 19
    raw = random_weights(tname, d, n, rng)
    x = dyadic_x(rng, (4, n))
    x[0, :32] = 0.0                  # an all-zero block
    x[1, 32:64] = 1e-45              # too small to scale: quantizes to 0
    x[1, 96:128] *= F32(2.0**-96)    # tiny normal scale
    x[2, 96:128] *= F32(2.0**100)    # huge
    x[3] *= F32(2.0**-100)
    for n_tok in (1, 4):
        got = q24(tname, raw, x[-n_tok:], d)
        assert np.all(np.isfinite(got))
        assert_bits_equal(got, emulate(tname, raw, x[-n_tok:], n), f"{tname} n_tok={n_tok}")
    zero = q24(tname, raw, np.zeros((3, n), F32), d)
    assert np.array_equal(zero, np.zeros_like(zero)) and not np.signbit(zero).any()


@pytest.mark.parametrize("tname", KTYPES)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_blocks(tname, bad):
    """A NaN or inf in a token's row makes all its outputs NaN; the other tokens are unchanged."""
    rng = np.random.default_rng(470 + KTYPES.index(tname))
    n, d = 512, 21
    raw = random_weights(tname, d, n, rng)
    x = dyadic_x(rng, (6, n))
    clean = q24(tname, raw, x, d)
    x[1, 4 * 32 + 7] = bad
    x[4, 0] = bad
    x[5, n - 1] = -bad
    got = q24(tname, raw, x, d, n_threads=2)
    assert np.isnan(got[[1, 4, 5]]).all()
    assert_bits_equal(got[[0, 2, 3]], clean[[0, 2, 3]], f"{tname} {bad} other tokens")


# ---- (5) bad input -----------------------------------------------------------------------------

def test_bad_sizes_raise():
    raw = random_weights("Q4_K", 4, 512, np.random.default_rng(0))
    with pytest.raises(ValueError, match="block size 256"):
        _native.matmul_q24("Q4_K", raw, np.ones(288, np.float32), 4)
    with pytest.raises(ValueError, match="bytes"):
        _native.matmul_q24("Q4_K", raw, np.ones(512, np.float32), 5)
