"""The KV cache in chunks of positions (csrc/forward.c: kv_block).

A context keeps its keys and values chunk-major: positions 0..P-1 of every layer and kv head,
then P..2P-1, ... (P = the context's kv_chunk: up to 16 MB of one cache per chunk, at most
1024 positions). So the memory a context touches grows with its positions, and can sit in
huge pages without committing the length it has not reached. Attention runs its kernels once
per chunk, the weighted sum going on from one chunk to the next: the logits must keep their
bits whatever the chunk length. The environment variable QWEN3C_KV_CHUNK (read when a context
is created) sets P, so that these tiny models, whose whole cache fits one default chunk, cross
chunk boundaries everywhere: in one prompt call, between calls, in decode, in a batch of
sessions, in copy_prefix_from between contexts of different chunk lengths, with the float16
cache, for Qwen3.5's attention layers. tools/run_tests.sh reruns this file under the lower CPU
tiers; the tests marked `sanitize` run again under ASan + UBSan.
"""
from __future__ import annotations

import numpy as np
import pytest

import qwen3c
from qwen3c import Model

sanitize = pytest.mark.sanitize

# positions per chunk: the default (one chunk for these models), a tile, odd multiples of a tile
CHUNKS = (None, "16", "48", "80")


def tokens(n: int, vocab: int, seed: int = 0) -> list:
    return [int(t) for t in np.random.default_rng(seed).integers(0, vocab, size=n)]


def run(path, chunk, monkeypatch, kv_cache="f32", n_batch=0, n_ctx=256):
    """Prompt logits (all of them) of 150 tokens, then 12 decode steps' logits."""
    if chunk is None:
        monkeypatch.delenv("QWEN3C_KV_CHUNK", raising=False)
    else:
        monkeypatch.setenv("QWEN3C_KV_CHUNK", chunk)
    with Model(path, n_ctx=n_ctx, n_threads=2, n_batch=n_batch, kv_cache=kv_cache) as m:
        toks = tokens(150, m.config.vocab_size)
        out = [m.forward(toks, all_logits=True)]
        tok = int(np.argmax(out[0][-1]))
        for i in range(12):
            out.append(m.forward([tok], pos=150 + i))
            tok = int(np.argmax(out[-1]))
        return out


@pytest.fixture(scope="module", params=["hd32", "hd24"])
def tiny(request, make_tiny_model):
    """f32 GGUF of a tiny Qwen3: head_dim 32 (the SIMD attention kernels) or 24 (the scalar
    loops, on every tier)."""
    kw = {} if request.param == "hd32" else dict(head_dim=24, seed=5)
    return str(make_tiny_model(**kw)[1])


@sanitize
@pytest.mark.parametrize("kv_cache", ["f32", "f16"])
@pytest.mark.parametrize("n_batch", [0, 7])
def test_logits_keep_their_bits(tiny, kv_cache, n_batch, monkeypatch):
    """Chunks of 16, 48 and 80 positions give the bits of the default single chunk: a prompt
    of 150 tokens in one call (n_batch 0) or in calls of 7 (starting mid-chunk), then decode
    steps across further boundaries."""
    want = run(tiny, None, monkeypatch, kv_cache, n_batch)
    for chunk in CHUNKS[1:]:
        got = run(tiny, chunk, monkeypatch, kv_cache, n_batch)
        for i, (g, w) in enumerate(zip(got, want)):
            np.testing.assert_array_equal(g, w, err_msg=f"chunk {chunk}, step {i}")


@sanitize
def test_batch_of_sessions(tiny, monkeypatch):
    """forward_batch over sessions at different positions (some mid-chunk, one crossing a
    boundary in its call) equals each session's own forward with the default chunking."""
    def go(chunk):
        if chunk is None:
            monkeypatch.delenv("QWEN3C_KV_CHUNK", raising=False)
        else:
            monkeypatch.setenv("QWEN3C_KV_CHUNK", chunk)
        with Model(tiny, n_ctx=256, n_threads=2) as m:
            v = m.config.vocab_size
            ss = [m.session() for _ in range(3)]
            for s, n in zip(ss, (10, 45, 90)):
                s.forward(tokens(n, v, seed=n))
            outs = m.forward_batch([(ss[0], tokens(1, v, 1), 10), (ss[1], tokens(30, v, 2), 45),
                                    (ss[2], tokens(1, v, 3), 90)])
            outs += m.forward_batch([(s, [5], s.n_past) for s in ss])
            return outs
    want = go(None)
    for chunk in ("16", "48"):
        for g, w in zip(go(chunk), want):
            np.testing.assert_array_equal(g, w, err_msg=f"chunk {chunk}")


@sanitize
@pytest.mark.parametrize("kv_cache", ["f32", "f16"])
def test_copy_prefix_between_chunk_lengths(tiny, kv_cache, monkeypatch):
    """copy_prefix_from between contexts with different chunk lengths (16 -> 48, 48 -> 16,
    and a prefix ending mid-tile): the copy goes on exactly like the source."""
    for src_chunk, dst_chunk, n_copy in (("16", "48", 50), ("48", "16", 67), ("80", "80", 96)):
        monkeypatch.setenv("QWEN3C_KV_CHUNK", src_chunk)
        with Model(tiny, n_ctx=256, n_threads=2, kv_cache=kv_cache) as m:
            v = m.config.vocab_size
            toks = tokens(120, v, seed=4)
            src = m.session()
            want = src.forward(toks, all_logits=True)
            monkeypatch.setenv("QWEN3C_KV_CHUNK", dst_chunk)
            dst = m.session()
            dst.copy_prefix_from(src, n_copy)
            got = dst.forward(toks[n_copy:], pos=n_copy, all_logits=True)
            np.testing.assert_array_equal(got, want[n_copy:],
                                          err_msg=f"{src_chunk} -> {dst_chunk}, {n_copy} tokens")


def test_attention_weights_keep_their_bits(tiny, monkeypatch):
    """The captured attention weights (softmax over all chunks' scores) are the same."""
    def weights(chunk):
        monkeypatch.setenv("QWEN3C_KV_CHUNK", chunk)
        with Model(tiny, n_ctx=128, n_threads=2) as m:
            return m.attention(tokens(70, m.config.vocab_size, seed=9))
    np.testing.assert_array_equal(weights("16"), weights("128"))


def test_qwen35_attention_layers(make_tiny_qwen35, monkeypatch):
    """Qwen3.5's gated attention layers keep their caches in chunks too (only those layers
    count in a chunk); the Gated DeltaNet layers have no cache."""
    from test_qwen35 import _make
    for shape in ("gqa", "mixed_untied"):
        p = str(_make(make_tiny_qwen35, shape)[1])
        want = run(p, None, monkeypatch)
        got = run(p, "32", monkeypatch)
        for i, (g, w) in enumerate(zip(got, want)):
            np.testing.assert_array_equal(g, w, err_msg=f"{shape}, step {i}")


@pytest.mark.parametrize("bad", ["0", "8", "24", "-16", "16x", "99999999"])
def test_bad_chunk_is_refused(tiny, bad, monkeypatch):
    monkeypatch.setenv("QWEN3C_KV_CHUNK", bad)
    with pytest.raises(qwen3c.Qwen3cError, match="QWEN3C_KV_CHUNK"):
        Model(tiny, n_ctx=64, n_threads=1)


def test_chunk_longer_than_the_context(tiny, monkeypatch):
    """A chunk longer than the context is cut to the context (one chunk), and a context of
    less than a tile still works."""
    monkeypatch.setenv("QWEN3C_KV_CHUNK", "1024")
    for n_ctx in (40, 9):
        with Model(tiny, n_ctx=n_ctx, n_threads=2) as m:
            toks = tokens(n_ctx, m.config.vocab_size, seed=n_ctx)
            got = m.forward(toks, all_logits=True)
        monkeypatch.delenv("QWEN3C_KV_CHUNK")
        with Model(tiny, n_ctx=n_ctx, n_threads=2) as m:
            np.testing.assert_array_equal(got, m.forward(toks, all_logits=True))
        monkeypatch.setenv("QWEN3C_KV_CHUNK", "1024")
