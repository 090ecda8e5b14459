"""Sessions: several independent KV caches on one Model (issue #15 item 1), and two
conversations on one model that never corrupt each other (issue #14 item 2): interleaved greedy
generations equal the same generations run alone."""
import threading

import numpy as np
import pytest

import qwen3c
from qwen3c.chat import Chat
from qwen3c.generate import generate
from qwen3c.model import Model
from qwen3c.sampler import Sampler

P1 = "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n"
P2 = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def model(tiny_chat_gguf):
    with Model(tiny_chat_gguf, n_ctx=256, n_threads=1) as m:
        yield m


def solo(target, prompt, n=12):
    g = generate(target, prompt, max_tokens=n, sampler=Sampler.greedy(), reuse_cache=False)
    list(g)
    return g.tokens


def interleave(*gens):
    """next() on each generator in turn until all are done."""
    live = list(gens)
    while live:
        for g in list(live):
            try:
                next(g)
            except StopIteration:
                live.remove(g)


def test_interleaved_generators_on_one_model_equal_solo_runs(model):
    ref1, ref2 = solo(model, P1), solo(model, P2)
    assert ref1 != ref2
    g1 = generate(model, P1, max_tokens=12, sampler=Sampler.greedy())
    g2 = generate(model, P2, max_tokens=12, sampler=Sampler.greedy())
    interleave(g1, g2)
    assert g1.tokens == ref1 and g2.tokens == ref2
    # they shared one cache: each noticed the other's writes and re-ran its own prefix
    assert g1.n_forwarded > len(g1.prompt_tokens) + len(g1.tokens)


def test_interleaved_generators_sharing_a_prefix_reuse_it(model):
    """Two prompts with a common start on one session: each re-run keeps the shared part."""
    a = P1 + "Sure"
    b = P1 + "No"
    ref_a, ref_b = solo(model, a, 6), solo(model, b, 6)
    ga = generate(model, a, max_tokens=6, sampler=Sampler.greedy())
    gb = generate(model, b, max_tokens=6, sampler=Sampler.greedy())
    interleave(ga, gb)
    assert (ga.tokens, gb.tokens) == (ref_a, ref_b)
    n_shared = len(model.encode(P1, special=True))
    rerun = ga.n_forwarded - ga.n_prefilled - (len(ga.tokens) - 1)
    assert 0 < rerun < 6 * (len(ga.prompt_tokens) - n_shared + 6)


def test_interleaved_chats_on_one_model_equal_solo_chats(model):
    def run(chats_and_msgs, interleaved):
        streams = [c.stream(m) for c, m in chats_and_msgs]
        if interleaved:
            interleave(*streams)
        else:
            for s in streams:
                list(s)
        return [c.history[-1]["content"] for c, _ in chats_and_msgs]

    def chats():
        return [(Chat(model, thinking=False, max_tokens=8, temperature=0.0), "Hello there"),
                (Chat(model, thinking=False, max_tokens=8, temperature=0.0), "Name a colour")]

    alone = run(chats(), interleaved=False)
    pair = chats()
    together = run(pair, interleaved=True)
    assert together == alone
    # each chat has a session of its own: a second turn reuses its own first turn
    c, _ = pair[0]
    c.send("And again?")
    first_turn = model.encode("<|im_start|>user\nHello there<|im_end|>\n", special=True)
    assert c.last.n_cached >= len(first_turn)


def test_two_chats_on_one_session_stay_correct(model):
    s = model.session()
    a = Chat(s, thinking=False, max_tokens=6, temperature=0.0)
    b = Chat(s, thinking=False, max_tokens=6, temperature=0.0)
    ref = Chat(model, thinking=False, max_tokens=6, temperature=0.0)
    want = [ref.send("one"), ref.send("two")]
    sa, sb = a.stream("one"), b.stream("Name a colour")
    interleave(sa, sb)
    a.send("two")                  # b overwrote the cache in between: a re-runs what differs
    assert [m["content"] for m in a.history if m["role"] == "assistant"] == want
    assert a.session is s and b.session is s


def test_sessions_are_independent_caches(model):
    ids = model.encode(P1, special=True)
    a, b = model.session(), model.session(n_ctx=64)
    assert b.n_ctx == 64 and b.config.n_ctx == 64 and a.n_ctx == model.config.n_ctx
    la = a.forward(ids[:-1])
    b.forward(model.encode(P2, special=True))          # a's cache is untouched by b
    la2 = a.forward(ids[-1:], pos=len(ids) - 1)
    ref = model.forward(ids)        # (one call: float rounding may differ from token by token)
    np.testing.assert_allclose(la2, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    assert a.tokens == ids and b.tokens == model.encode(P2, special=True)
    assert la.shape == (model.config.vocab_size,)


def test_record_follows_forward_calls(model):
    s = model.session()
    assert s.tokens == [] and s.version == 0
    s.forward([1, 2, 3])
    assert s.tokens == [1, 2, 3] and s.n_tokens_forwarded == 3
    v = s.version
    s.forward([9], pos=1)                        # overwrite position 1: 2, 3 are gone
    assert s.tokens == [1, 9] and s.version > v
    s.forward([7, 7], pos=5)                     # a gap: positions 2..4 hold nothing known
    assert s.tokens == [1, 9]
    assert s.reusable_prefix([1, 9, 4]) == 2
    assert s.reusable_prefix([1, 9]) == 1        # the last token always runs (its logits)
    assert s.reusable_prefix([5]) == 0
    assert s.rewind_point(1) == 1                # a KV cache keeps every prefix
    with pytest.raises(ValueError):
        s.forward([10**7])
    assert s.tokens == [1, 9]                    # refused before anything changed
    s.reset()
    assert s.tokens == []


def test_session_generate_and_top_k(model):
    s = model.session()
    g = s.generate(P1, max_tokens=5, sampler=Sampler.greedy())
    assert "".join(g) == model.decode(solo(model, P1, 5))
    assert s.top_k("Hello", k=3) == model.top_k("Hello", k=3)
    assert s.encode("hi") == model.encode("hi") and s.special_tokens == model.special_tokens


def test_threads_on_separate_sessions(model):
    refs = [solo(model, P1, 10), solo(model, P2, 10)]
    out = [None, None]

    def run(i, prompt):
        out[i] = solo(model.session(), prompt, 10)

    ts = [threading.Thread(target=run, args=(i, p)) for i, p in enumerate((P1, P2))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert out == refs


def test_closing_the_model_closes_its_sessions(tiny_chat_gguf):
    m = Model(tiny_chat_gguf, n_ctx=32, n_threads=1)
    s = m.session()
    s.forward([1, 2])
    chat = Chat(m, max_tokens=2)
    m.close()
    for call in (lambda: s.forward([1]), lambda: m.forward([1]), lambda: chat.send("x"),
                 lambda: m.session()):
        with pytest.raises(qwen3c.Qwen3cError, match="closed"):
            call()
    assert s.closed and "closed" in repr(s)
    s.close()
    m.close()


def test_closing_a_session_leaves_the_model_usable(model):
    s = model.session()
    s.close()
    s.close()
    with pytest.raises(qwen3c.Qwen3cError, match="session is closed"):
        s.forward([1])
    with model.session() as t:
        t.forward([1])
    assert t.closed
    assert model.forward([1]).shape == (model.config.vocab_size,)


@pytest.mark.parametrize("kw,exc", [
    (dict(n_ctx=-1), ValueError), (dict(n_ctx=1.5), TypeError), (dict(kv_cache="f8"), ValueError),
    (dict(n_threads=-2), ValueError),
])
def test_session_argument_checks(model, kw, exc):
    with pytest.raises(exc):
        model.session(**kw)


def test_copy_prefix_continues_like_the_source(model):
    from qwen3c import _native
    ids = model.encode(P1 + "and more words here", special=True)
    a, b = model.session(), model.session()
    a.forward(ids[:-3])
    _native.context_copy_prefix(b._ctx_ptr(), a._ctx_ptr(), len(ids) - 3)
    la = a.forward(ids[-3:], pos=len(ids) - 3)
    lb = b.forward(ids[-3:], pos=len(ids) - 3)
    np.testing.assert_array_equal(la, lb)
    f16 = model.session(kv_cache="f16")
    with pytest.raises(qwen3c.InvalidArgumentError, match="KV cache types"):
        _native.context_copy_prefix(f16._ctx_ptr(), a._ctx_ptr(), 4)
