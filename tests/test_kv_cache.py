"""Model(kv_cache=...): the float32 KV cache (default) and the opt-in float16 one.

  "f32" (default)  keys and values kept as computed: unchanged, bit for bit
  "f16" (opt-in)   keys (after k_norm and RoPE) and values rounded to IEEE float16, round to
                   nearest even, when they are stored; attention widens them back to float32

The f16 engine must compute "the float32 model with K and V rounded to float16": it is compared
with transformers running exactly that (its eager attention on key and value states rounded to
float16), and with the f32 cache, where the f16 rounding shows (measured numbers printed with
-s, quoted in docs/precision.md). The conversion itself (qwen3c_float_to_half) is checked
against numpy. tools/run_tests.sh reruns this file under the lower CPU tiers (QWEN3C_CPU), so
its scalar conversions are exercised too; the tests marked `sanitize` run again under ASan +
UBSan.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import qwen3c
from qwen3c import _native

N_TOKENS = 40
sanitize = pytest.mark.sanitize  # rerun under ASan + UBSan by tools/run_tests.sh

# tiny Qwen3 shapes: the default (GQA, head_dim 32: the AVX-512 kernels) and head_dim 24 (not a
# multiple of 16: the scalar attention loops, also on the avx512 tier)
SHAPES = {"hd32": {}, "hd24": dict(head_dim=24, seed=5)}


def tokens_for(vocab_size: int, n: int = N_TOKENS) -> list:
    return [int(t) for t in np.random.default_rng(7).integers(0, vocab_size, size=n)]


def rel(a, b) -> float:
    """max |a - b| relative to max |b|."""
    return float(np.abs(a.astype(np.float64) - b).max() / np.abs(b).max())


def logits(path, kv_cache=None, tokens=None, n_ctx=64, **kw) -> np.ndarray:
    opts = {} if kv_cache is None else {"kv_cache": kv_cache}
    with qwen3c.Model(path, n_ctx=n_ctx, n_threads=2, **opts, **kw) as m:
        assert m.kv_cache == (kv_cache or "f32")
        toks = tokens if tokens is not None else tokens_for(m.config.vocab_size)
        return m.forward(toks, all_logits=True)


@pytest.fixture(scope="module", params=sorted(SHAPES))
def tiny(request, make_tiny_model):
    """(hf_dir, f32 gguf path) of a tiny random Qwen3."""
    return make_tiny_model(**SHAPES[request.param])


# ---- the default is float32 and unchanged ------------------------------------------------------

def test_default_is_f32(tiny_gguf):
    from qwen3c._native import lib

    assert lib.qwen3c_context_default_params().kv_type == lib.QWEN3C_KV_F32
    default = logits(tiny_gguf)
    np.testing.assert_array_equal(default, logits(tiny_gguf, "f32"))
    assert not np.array_equal(default, logits(tiny_gguf, "f16"))  # the option does something


# ---- f16: what it computes -----------------------------------------------------------------------

def test_f16_is_close_to_f32(tiny):
    _, path = tiny
    f32, f16 = logits(path, "f32"), logits(path, "f16")
    r = rel(f16, f32)
    print(f"\nf16 vs f32 KV cache, tiny Qwen3 ({path.name}), {N_TOKENS} positions: "
          f"max|dlogit|/max|logit| = {r:.2e}")
    assert 1e-5 < r < 2e-3, r  # measured 4.7e-4 (hd32), 6.6e-4 (hd24): K/V rounded by <= 4.9e-4
    np.testing.assert_array_equal(f16.argmax(-1), f32.argmax(-1))


def test_f16_with_quantized_weights(make_tiny_model):
    """With Q8_0 weights, f16 adds its own rounding to each activations path. (Under "q8" the
    8-bit activation blocks amplify it to ~2.6e-2, the size of q8's own error.)"""
    path = make_tiny_model(out_type="q8_0", seed=3)[1]
    for act in ("q24", "f32", "q16"):
        f32, f16 = logits(path, "f32", activations=act), logits(path, "f16", activations=act)
        assert 1e-5 < rel(f16, f32) < 2e-3, act  # measured 4.2e-4 (q24, f32), 5.8e-4 (q16)
        np.testing.assert_array_equal(f16.argmax(-1), f32.argmax(-1))


def test_f16_matches_a_float16_rounded_reference(tiny, monkeypatch):
    """transformers with its key states (after k_norm and RoPE) and value states rounded to
    float16 is the model a float16 cache computes. The f16 engine is ~14x closer to it than to
    the f32 engine (mean |dlogit|; 5-12x in the max). Not float32-close: the two engines'
    float32 keys and values differ in their last bits, so a few of them round to the
    neighbouring half, and later layers carry that on. The f32 engine shows the reference
    itself is sound."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.models.qwen3 import modeling_qwen3

    eager = modeling_qwen3.eager_attention_forward

    def eager_on_f16_kv(module, query, key, value, attention_mask, **kw):
        key = key.to(torch.float16).to(torch.float32)
        value = value.to(torch.float16).to(torch.float32)
        return eager(module, query, key, value, attention_mask, **kw)

    hf_dir, path = tiny
    model = transformers.Qwen3ForCausalLM.from_pretrained(
        str(hf_dir), attn_implementation="eager", dtype=torch.float32).eval()
    toks = tokens_for(model.config.vocab_size)
    with torch.no_grad():
        ref32 = model(input_ids=torch.tensor([toks])).logits[0].double().numpy()
        # Qwen3Attention looks the eager function up in its module at every call
        monkeypatch.setattr(modeling_qwen3, "eager_attention_forward", eager_on_f16_kv)
        ref16 = model(input_ids=torch.tensor([toks])).logits[0].double().numpy()
    f16, f32 = logits(path, "f16", toks), logits(path, "f32", toks)
    scale = np.abs(ref32).max()

    def mean_rel(a, b):
        return float(np.abs(a.astype(np.float64) - b).mean() / scale)

    print(f"\nf16 KV cache vs transformers with K/V rounded to float16 ({path.name}): "
          f"max {rel(f16, ref16):.2e}, mean {mean_rel(f16, ref16):.2e}; "
          f"vs the f32 cache: max {rel(f16, f32):.2e}, mean {mean_rel(f16, f32):.2e}")
    assert rel(f32, ref32) < 1e-5  # measured 7e-7, 1e-6: float32 parity
    assert mean_rel(f16, ref16) < mean_rel(f16, f32) / 5  # measured 1/13 (hd32), 1/15 (hd24)
    assert rel(f16, ref16) < rel(f16, f32) / 2  # measured 1/12, 1/5.6
    np.testing.assert_array_equal(f16.argmax(-1), ref16.argmax(-1))


def _batched_and_steps(path, kv_cache, toks, **kw):
    with qwen3c.Model(path, n_ctx=64, n_threads=2, kv_cache=kv_cache, **kw) as m:
        batched = m.forward(toks, all_logits=True)
    with qwen3c.Model(path, n_ctx=64, n_threads=1, kv_cache=kv_cache, **kw) as m:
        steps = np.stack([m.forward([t], pos=i) for i, t in enumerate(toks)])
    return batched, steps


def test_f16_token_by_token_equals_batched(tiny):
    """Prefill and decode round keys and values the same way. Their float32 keys and values
    differ in the last bits (matmuls sum in another order), so now and then one rounds to the
    neighbouring half: they agree to ~1e-5, 20x closer than f16 is to f32."""
    _, path = tiny
    toks = tokens_for(256)
    batched, steps = _batched_and_steps(path, "f16", toks)
    r = rel(steps, batched)
    assert r < 1.5e-4, r  # measured 1.7e-5 (hd24), 2.5e-5 (hd32); f32: ~5e-7
    np.testing.assert_array_equal(steps.argmax(-1), batched.argmax(-1))
    with qwen3c.Model(path, n_ctx=64, n_threads=2, kv_cache="f16") as m:
        head = m.forward(toks[:21], pos=0, all_logits=True)  # a prefill ending mid-tile,
        rest = m.forward(toks[21:], pos=21, all_logits=True)  # then the rest
    assert rel(np.concatenate([head, rest]), batched) < 1.5e-4


def test_f16_prefill_and_decode_round_identically(make_tiny_model):
    """Where prefill and decode compute bit-identical keys and values (Q8_0 weights in chunks
    of fewer than 12 tokens: the exact integer q24 kernels, or the scalar tier's f32 ones; longer
    prompts take the float32 GEMM on AVX-512 / AVX2), f16 keeps them identical."""
    path = make_tiny_model(out_type="q8_0", seed=3)[1]
    toks = tokens_for(256)
    b32, s32 = _batched_and_steps(path, "f32", toks, activations="q24", n_batch=8)
    b16, s16 = _batched_and_steps(path, "f16", toks, activations="q24", n_batch=8)
    if not np.array_equal(b32, s32):
        pytest.skip("prefill and decode differ in float32 already in this build")
    np.testing.assert_array_equal(s16, b16)


@sanitize
def test_f16_context_not_a_multiple_of_16(tiny):
    """n_ctx = 37: the cache is padded to whole tiles of 16 positions; filling it to the last
    position gives the logits of a larger cache, bit for bit; one more token overflows."""
    _, path = tiny
    toks = tokens_for(256, 37)
    res = []
    for n_ctx in (37, 64):
        with qwen3c.Model(path, n_ctx=n_ctx, n_threads=2, kv_cache="f16") as m:
            assert m.config.n_ctx == n_ctx
            out = [m.forward(toks[:30], all_logits=True)]
            out += [m.forward([t], pos=30 + i)[None] for i, t in enumerate(toks[30:])]
            res.append(np.concatenate(out))
            if n_ctx == 37:
                with pytest.raises(qwen3c.ContextOverflowError):
                    m.forward([1], pos=37)
    np.testing.assert_array_equal(res[0], res[1])


# ---- the conversion: qwen3c_float_to_half against numpy ----------------------------------------

def _numpy_half_bits(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return x.astype(np.float16).view(np.uint16)


def test_float_to_half_rounds_to_nearest_even():
    # every half, the midpoints between neighbours (ties: to even) and one float32 ulp either side
    halves = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)
    finite = halves[np.isfinite(halves)].astype(np.float32)
    pos = np.sort(finite[finite >= 0])
    mids = ((pos[:-1].astype(np.float64) + pos[1:]) / 2).astype(np.float32)  # exact in float32
    mids = np.concatenate([mids, -mids])
    ulp_off = np.concatenate([np.nextafter(mids, np.float32(np.inf)),
                              np.nextafter(mids, np.float32(-np.inf))])
    rng = np.random.default_rng(0)
    random_bits = rng.integers(0, 2**32, size=1 << 20, dtype=np.uint64).astype(np.uint32)
    special = np.array([0.0, -0.0, 65504.0, 65519.996, 65520.0, -65520.0, 1e6, np.inf, -np.inf,
                        2.0**-24, 2.0**-25, np.nextafter(2.0**-25, 1.0), 3 * 2.0**-25,
                        2.0**-14, 2.0**-14 - 2.0**-25, 1e-45, -1e-45, 1.0 + 2.0**-11],
                       dtype=np.float32)
    x = np.concatenate([finite, mids, ulp_off, random_bits.view(np.float32), special])
    x = x[~np.isnan(x)]
    np.testing.assert_array_equal(_native.float_to_half(x), _numpy_half_bits(x))
    # the spots named in qwen3c.h, spelled out
    got = _native.float_to_half(np.array([65519.996, 65520.0, 2.0**-25, 3 * 2.0**-25,
                                          1.0 + 2.0**-11], dtype=np.float32))
    assert list(got) == [0x7bff, 0x7c00, 0x0000, 0x0002, 0x3c00]


@sanitize
def test_float_to_half_nan_and_lengths():
    # NaN: a quiet NaN with the sign and the top payload bits (as F16C's vcvtps2ph)
    nan_bits = np.array([0x7fc00000, 0xffc00000, 0x7f800001, 0x7fbfe000, 0xff912345],
                        dtype=np.uint32)
    got = _native.float_to_half(nan_bits.view(np.float32))
    want = ((nan_bits >> 16) & 0x8000) | 0x7e00 | ((nan_bits >> 13) & 0x3ff)
    np.testing.assert_array_equal(got, want.astype(np.uint16))
    # every length around the vector widths (16, 8) gives the element-wise result
    x = np.random.default_rng(1).standard_normal(70).astype(np.float32) * 1000
    for n in range(0, 70):
        np.testing.assert_array_equal(_native.float_to_half(x[:n]), _numpy_half_bits(x[:n]))


# ---- parameters ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["f8", "F16", "float16", "", None, 1, ["f16"]])
def test_bad_kv_cache_value(tiny_gguf, bad):
    with pytest.raises(ValueError, match=r"kv_cache must be one of \['f16', 'f32'\]"):
        qwen3c.Model(tiny_gguf, n_ctx=64, kv_cache=bad)


@sanitize
@pytest.mark.parametrize("kv_type", [2, -1, 100])
def test_context_params_kv_type_is_validated(tiny_gguf, kv_type):
    from qwen3c._native import ERR_SIZE, ffi, lib

    model = _native.model_load(str(tiny_gguf))
    try:
        params = ffi.new("qwen3c_context_params *", lib.qwen3c_context_default_params())
        params.n_ctx = 32
        params.kv_type = kv_type
        out = ffi.new("qwen3c_context **")
        err = ffi.new("char[]", ERR_SIZE)
        rc = lib.qwen3c_context_create(model, params, out, err, ERR_SIZE)
        assert rc == lib.QWEN3C_ERR_INVALID_ARG
        msg = ffi.string(err).decode()
        assert f"kv_type {kv_type} is not one of QWEN3C_KV_F32 (0), QWEN3C_KV_F16 (1)" in msg
        for good in (lib.QWEN3C_KV_F32, lib.QWEN3C_KV_F16):
            params.kv_type = good
            assert lib.qwen3c_context_create(model, params, out, err, ERR_SIZE) == lib.QWEN3C_OK
            lib.qwen3c_context_free(out[0])
    finally:
        _native.model_free(model)


@sanitize
def test_float_to_half_argument_checks():
    from qwen3c._native import ERR_SIZE, ffi, lib

    err = ffi.new("char[]", ERR_SIZE)
    buf = ffi.new("float[]", 4)
    out = ffi.new("uint16_t[]", 4)
    assert lib.qwen3c_float_to_half(ffi.NULL, 4, out, err, ERR_SIZE) == lib.QWEN3C_ERR_INVALID_ARG
    assert lib.qwen3c_float_to_half(buf, -1, out, err, ERR_SIZE) == lib.QWEN3C_ERR_INVALID_ARG
    assert b"float_to_half" in ffi.string(err)
    assert lib.qwen3c_float_to_half(buf, 0, out, err, ERR_SIZE) == lib.QWEN3C_OK


# ---- plumbing: chat() and the command line -------------------------------------------------------

def test_chat_function_passes_kv_cache(tiny_chat_gguf, monkeypatch, capsys):
    from qwen3c.chat import Chat, chat

    monkeypatch.setattr("sys.stdin", io.StringIO("hello\n\n"))
    chat(str(tiny_chat_gguf), thinking=False, temperature=0.0, max_tokens=3, n_ctx=128,
         n_threads=1, kv_cache="f16")
    out = capsys.readouterr().out
    with qwen3c.Model(tiny_chat_gguf, n_ctx=128, n_threads=1, kv_cache="f16") as m:
        want = Chat(m, thinking=False, temperature=0.0, max_tokens=3).send("hello")
    assert out == want + "\n"
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\n\n"))
    with pytest.raises(ValueError, match="kv_cache must be one of"):
        chat(str(tiny_chat_gguf), n_ctx=128, kv_cache="f8")


def _cli(args):
    pkg_parent = str(Path(qwen3c.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=pkg_parent)
    return subprocess.run([sys.executable, "-m", "qwen3c", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def test_cli_kv_cache(tiny_chat_gguf):
    from qwen3c.__main__ import build_parser
    from qwen3c.chat import Chat

    assert build_parser().parse_args([]).kv_cache == "f32"
    assert "--kv-cache {f32,f16}" in build_parser().format_help()
    r = _cli(["--model", str(tiny_chat_gguf), "--prompt", "Hi there", "--max-tokens", "5",
              "--thinking", "off", "--temperature", "0", "--threads", "1", "--ctx", "128",
              "--kv-cache", "f16", "--verbose"])
    assert r.returncode == 0, r.stderr
    assert "(f16 KV cache)" in r.stderr
    with qwen3c.Model(tiny_chat_gguf, n_ctx=128, n_threads=1, kv_cache="f16") as m:
        want = Chat(m, thinking=False, temperature=0.0, max_tokens=5).send("Hi there")
    assert r.stdout == want + "\n"
    r = _cli(["--model", str(tiny_chat_gguf), "--prompt", "Hi", "--kv-cache", "f8"])
    assert r.returncode == 2 and "--kv-cache" in r.stderr and "Traceback" not in r.stderr
