"""The last layer only for the rows that feed logits (C: output_rows in forward.c).

A forward that wants the last token's logits only (not all_logits, no trace, no attention
capture) finishes its last layer -- attention, o_proj, the MLP -- and the final norm for that
row alone, padded with more last tokens up to Q24_FLOAT_MIN_TOKENS (12) rows so that the
matmuls take the kernels the whole batch takes. A row's numbers never depend on the rows
computed beside it, so the logits keep their bits: they equal lm_head() of the last layer's
output that a full trace computes, for every type, activation path, chunk size and model.
The keys and values of the last layer are still stored for every token (the next forward
reads them), and a batch of sessions keeps each one's logits."""
import numpy as np
import pytest

import qwen3c
from qwen3c.model import Model

from kquants import requantize_gguf

SHAPE = dict(hidden_size=256, intermediate_size=512, num_attention_heads=4, num_key_value_heads=2,
             head_dim=64, vocab_size=512)
Q4_K_M = lambda n: "Q6_K" if ("attn_v" in n or "ffn_down" in n or n == "token_embd.weight") else "Q4_K"


def tokens(n, seed, vocab=512):
    return np.random.default_rng(seed).integers(0, vocab, size=n).tolist()


@pytest.fixture(scope="module", params=["f32", "q8_0", "q4_k_m"])
def path(request, make_tiny_model):
    if request.param == "q4_k_m":
        _, f32 = make_tiny_model("f32", seed=5, **SHAPE)
        out = str(f32).replace("_f32.gguf", "_q4km_rows.gguf")
        requantize_gguf(str(f32), out, Q4_K_M)
        return out
    return str(make_tiny_model(request.param, seed=5, **SHAPE)[1])


def last_layer_logits(session, toks, pos):
    """lm_head(norm(output of the last layer)) of the last token, from a full forward (a trace
    computes every row of every layer)."""
    _, hidden = session.forward_trace(toks, pos=pos)
    return session.lm_head(hidden[-2][-1:])[0]


@pytest.mark.sanitize
@pytest.mark.parametrize("activations", ["q24", "f32", "q16", "q8"])
@pytest.mark.parametrize("n_batch", [0, 16, 5])
def test_logits_keep_their_bits(path, activations, n_batch):
    with Model(path, n_ctx=128, n_threads=2, activations=activations, n_batch=n_batch) as m:
        fast, full = m.session(), m.session()
        # prompts of every kind of chunk: fewer and more rows than the 12 kept
        for n, pos in ((40, 0), (13, 40), (12, 53), (3, 65), (1, 68), (20, 69)):
            toks = tokens(n, seed=pos)
            got = fast.forward(toks, pos=pos)
            want = last_layer_logits(full, toks, pos)
            np.testing.assert_array_equal(got, want, err_msg=f"{n} tokens at {pos}")
        # the caches hold the same keys and values: the next step agrees too
        np.testing.assert_array_equal(fast.forward([7], pos=89), full.forward([7], pos=89))


@pytest.mark.sanitize
def test_batch_logits_keep_their_bits(path):
    """Sessions of 12 tokens or more take the same kernels batched and solo, so a batch where
    some want no logits gives the solo bits. F32 weights: the LM head of several sequences is
    one matrix-matrix product, of one a matrix-vector product that sums in another order
    (measured up to 1.04e-6 relative; bound 1e-5)."""
    with Model(path, n_ctx=128, n_threads=2) as m:
        lens, wants = (30, 12, 17, 25), (True, False, True, True)
        prompts = [tokens(n, seed=100 + i) for i, n in enumerate(lens)]
        solo = [m.session().forward(p) for p in prompts]
        sessions = [m.session() for _ in prompts]
        got = m.forward_batch([(s, p, 0, w) for s, p, w in zip(sessions, prompts, wants)])
        exact = not path.endswith("_f32.gguf")
        for g, s, w in zip(got, solo, wants):
            if not w:
                assert g is None
            elif exact:
                np.testing.assert_array_equal(g, s)
            else:
                assert np.abs(g - s).max() <= 1e-5 * np.abs(s).max()
        # every session's cache is whole: its next token's logits are the solo session's
        nxt = m.forward_batch([(s, [3], n) for s, n in zip(sessions, lens)])
        for g, p, n in zip(nxt, prompts, lens):
            ref = m.session()
            ref.forward(p)
            want = ref.forward([3], pos=n)
            if exact:
                np.testing.assert_array_equal(g, want)
            else:
                assert np.abs(g - want).max() <= 1e-5 * np.abs(want).max()


def test_qwen35_logits_keep_their_bits(make_tiny_qwen35):
    """Qwen3.5: its last layer is gated attention ("gqa") or a Gated DeltaNet layer
    ("mixed_untied" ends with one): either way only the rows that feed logits go on."""
    from test_qwen35 import _make
    for shape in ("gqa", "mixed_untied"):
        p = str(_make(make_tiny_qwen35, shape)[1])
        with Model(p, n_ctx=128, n_threads=2) as m:
            fast, full = m.session(), m.session()
            for n, pos in ((40, 0), (5, 40), (14, 45)):
                toks = tokens(n, seed=pos, vocab=m.config.vocab_size)
                np.testing.assert_array_equal(fast.forward(toks, pos=pos),
                                              last_layer_logits(full, toks, pos), err_msg=shape)


@pytest.mark.sanitize
def test_a_batch_without_logits_stops_at_the_last_keys(path):
    """No sequence wants logits (as every prompt chunk before the last): the last layer stops
    once its keys and values are stored, and the sessions go on as if it had run through."""
    with Model(path, n_ctx=128, n_threads=2) as m:
        prompts = [tokens(30, seed=7), tokens(20, seed=8), tokens(12, seed=9)]  # >= 12: the solo kernels
        sessions = [m.session() for _ in prompts]
        assert m.forward_batch([(s, p, 0, False) for s, p in zip(sessions, prompts)]) == [None] * 3
        for s, p in zip(sessions, prompts):
            ref = m.session()
            ref.forward(p)
            np.testing.assert_array_equal(s.forward([3], pos=len(p)), ref.forward([3], pos=len(p)))
