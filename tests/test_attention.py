"""The attention capture (C qwen3c_forward_attention, Model.attention) and the LM head on
hidden states (qwen3c_lm_head, Model.lm_head), against transformers' eager attention.

`output_attentions=True` with attn_implementation="eager" returns, per layer, the softmax
probabilities (batch, heads, queries, keys) with zeros at the masked positions: our capture must
be the same array to 1e-5, for Qwen3 and for the llama architecture.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import qwen3c  # noqa: E402

sanitize = pytest.mark.sanitize  # rerun under ASan + UBSan by tools/run_tests.sh

# config overrides of conftest.TINY_CONFIG (hidden 64, 2 layers, 4 heads / 2 kv heads, head_dim 32)
SHAPES = {
    "gqa": {},
    # plain multi-head attention, head_dim 16
    "mha": dict(num_attention_heads=4, num_key_value_heads=4, head_dim=16, seed=1),
    # 8 query heads on 2 kv heads (a group of 4: score blocks span tokens), 3 layers
    "group4": dict(num_hidden_layers=3, num_attention_heads=8, num_key_value_heads=2, head_dim=16,
                   seed=2),
    # head_dim 24 is no multiple of 16: the scalar (plain C) score and sum loops
    "hd24": dict(num_attention_heads=4, num_key_value_heads=2, head_dim=24, seed=3),
}
N = 40


def _tokens(vocab, n=N, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, size=n).tolist()


def _eager(hf_dir):
    return transformers.AutoModelForCausalLM.from_pretrained(
        str(hf_dir), dtype=torch.float32, attn_implementation="eager").eval()


def _hf_attentions(hf_model, tokens) -> np.ndarray:
    """transformers' output_attentions as one (layers, heads, n, n) array."""
    with torch.no_grad():
        out = hf_model(torch.tensor([tokens]), output_attentions=True, use_cache=False)
    return np.stack([a[0].numpy() for a in out.attentions])


@pytest.fixture(scope="module", params=sorted(SHAPES))
def shape_model(request, make_tiny_model):
    hf_dir, gguf_path = make_tiny_model(**SHAPES[request.param])
    return request.param, gguf_path, _eager(hf_dir)


def test_attention_matches_transformers_eager(shape_model):
    name, gguf_path, hf_model = shape_model
    toks = _tokens(hf_model.config.vocab_size)
    ref = _hf_attentions(hf_model, toks)
    with qwen3c.Model(gguf_path, n_ctx=64) as m:
        got = m.attention(toks)
        c = m.config
    assert got.dtype == np.float32
    assert got.shape == ref.shape == (c.n_layers, c.n_heads, N, N)
    assert np.abs(got - ref).max() < 1e-5, (name, np.abs(got - ref).max())  # measured 4e-7 .. 8e-7
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)
    assert not np.triu(got, 1).any(), "masked (future) positions are exactly 0"
    assert got[..., 0, 0].min() == 1.0  # the first token can only look at itself
    assert ref.std() > 0.05  # the reference is not a trivial uniform pattern


@sanitize
def test_attention_in_chunks_and_from_the_cache(make_tiny_model):
    """n_batch chunks, a start position > 0 (keys from the KV cache) and a decode step give the
    matching rows of one full capture."""
    _, gguf_path = make_tiny_model(**SHAPES["group4"])
    toks = _tokens(256, 50, seed=1)
    with qwen3c.Model(gguf_path, n_ctx=64) as m:
        full = m.attention(toks)
    with qwen3c.Model(gguf_path, n_ctx=64, n_batch=16) as m:
        chunked = m.attention(toks)  # 16 + 16 + 16 + 2 tokens
        np.testing.assert_array_equal(chunked, full)
        m.forward(toks[:30])
        tail = m.attention(toks[30:], pos=30)
        assert tail.shape == (3, 8, 20, 50)
        # (a chunk of < 8 tokens takes the decode matmuls: float32 rounding apart)
        np.testing.assert_allclose(tail, full[:, :, 30:, :], rtol=0, atol=1e-6)
        step = m.attention(toks[49:], pos=49)
        np.testing.assert_allclose(step[:, :, 0, :], full[:, :, 49, :], rtol=0, atol=1e-6)
        # the capture changes nothing else: the forward's logits are the same with or without it
        logits, hidden, attn = m.forward_attention(toks)
        np.testing.assert_array_equal(attn, full)
        np.testing.assert_array_equal(logits, m.forward(toks, all_logits=True))
        np.testing.assert_array_equal(hidden, m.forward_trace(toks)[1])


@pytest.mark.parametrize("options", [dict(kv_cache="f16"), dict(activations="q8")])
def test_attention_follows_the_numerics(make_tiny_model, options):
    """The capture shows what the configured arithmetic attends to: close to the exact
    probabilities, not bit-equal."""
    _, gguf_path = make_tiny_model(out_type="q8_0")
    toks = _tokens(256)
    with qwen3c.Model(gguf_path, n_ctx=64, activations="f32") as m:
        exact = m.attention(toks)
    with qwen3c.Model(gguf_path, n_ctx=64, **options) as m:
        got = m.attention(toks)
    d = np.abs(got - exact).max()
    assert 0 < d < 2e-2, d
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)


def test_attention_llama_architecture(tmp_path):
    from test_llama_arch import random_llama, write_llama_gguf  # that test's model and writer

    model, cfg = random_llama(
        4, scale=0.2, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, vocab_size=300, max_position_embeddings=128,
        rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False)
    path = tmp_path / "llama.gguf"
    write_llama_gguf(path, model, cfg, tied=False)
    toks = _tokens(cfg.vocab_size, 36, seed=5)
    ref = _hf_attentions(model, toks)
    with qwen3c.Model(path, n_ctx=64) as m:
        assert m.config.arch == "llama"
        got = m.attention(toks)
    assert got.shape == ref.shape == (2, 4, 36, 36)
    assert np.abs(got - ref).max() < 1e-5, np.abs(got - ref).max()
    assert ref.std() > 0.05


@sanitize
def test_attention_bad_arguments(tiny_gguf):
    with qwen3c.Model(tiny_gguf, n_ctx=32) as m:
        m.forward([1, 2, 3])
        before = m.forward([4], pos=3)
        with pytest.raises(qwen3c.ContextOverflowError):
            m.attention(list(range(20)), pos=20)
        with pytest.raises(ValueError, match="vocabulary"):
            m.attention([1, 999])
        with pytest.raises(ValueError, match="at least one token"):
            m.attention([])
        with pytest.raises(ValueError, match="max_bytes"):
            m.attention(list(range(32)), max_bytes=1000)
        # refused before any compute: the cache still holds tokens 1, 2, 3
        np.testing.assert_array_equal(m.forward([4], pos=3), before)
    with pytest.raises(qwen3c.Qwen3cError, match="closed"):
        m.attention([1])


# ---- the LM head on hidden states: the logit lens's arithmetic ----------------------------------

@sanitize
@pytest.mark.parametrize("out_type", ["f32", "q8_0"])
def test_lm_head_of_the_last_layer_is_the_forward(make_tiny_model, out_type):
    _, gguf_path = make_tiny_model(out_type=out_type, tie_word_embeddings=False, seed=5)
    toks = _tokens(256, 300, seed=2)  # > n_batch: lm_head runs in chunks too
    with qwen3c.Model(gguf_path, n_ctx=512) as m:
        logits, hidden = m.forward_trace(toks)
        L = m.config.n_layers
        lens = m.lm_head(hidden[L])
        assert lens.shape == logits.shape == (300, 256)
        assert np.abs(lens - logits).max() <= 1e-6 * np.abs(logits).max()
        one = m.lm_head(hidden[L, -1])
        assert one.shape == (256,)
        assert np.abs(one - logits[-1]).max() <= 1e-6 * np.abs(logits).max()
        with pytest.raises(ValueError, match="shape"):
            m.lm_head(np.zeros((2, 3), np.float32))
        with pytest.raises(ValueError, match="at least one"):
            m.lm_head(np.zeros((0, m.config.dim), np.float32))


@sanitize
def test_lm_head_leaves_the_kv_cache_alone(tiny_gguf):
    with qwen3c.Model(tiny_gguf, n_ctx=32) as m:
        m.forward([5, 6, 7])
        want = m.forward([8], pos=3)
        m.forward([5, 6, 7])
        m.lm_head(np.random.default_rng(0).normal(size=(40, m.config.dim)).astype(np.float32))
        np.testing.assert_array_equal(m.forward([8], pos=3), want)
