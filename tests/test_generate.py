"""Generation on a tiny random Qwen3 with the real tokenizer: token-exact against a plain
greedy loop that recomputes everything from scratch, the three finish reasons, stop strings,
chunked prefill, KV-cache reuse, and a model that stays consistent after Ctrl-C."""
import numpy as np
import pytest

from qwen3c.errors import ContextOverflowError
from qwen3c.generate import cached_tokens, forget_cache, generate
from qwen3c.model import Model
from qwen3c.sampler import Sampler

PROMPT = "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def model(tiny_chat_gguf):
    with Model(tiny_chat_gguf, n_ctx=128, n_threads=1) as m:
        yield m


def greedy_reference(model, prompt, n):
    """n greedy tokens, every step a fresh forward pass over the whole sequence."""
    toks = list(prompt)
    out = []
    for _ in range(n):
        logits = model.forward(toks, pos=0)
        t = int(np.argmax(logits))
        out.append(t)
        toks.append(t)
    forget_cache(model)
    return out


class Proxy:
    """A model or session with some attributes replaced (special tokens, a failing forward)."""

    def __init__(self, model, **overrides):
        self._m = model
        self.__dict__.update(overrides)

    def __getattr__(self, name):
        return getattr(self._m, name)


def test_greedy_matches_recomputing_reference(model):
    prompt = model.encode(PROMPT, special=True)
    ref = greedy_reference(model, prompt, 8)
    g = generate(model, PROMPT, max_tokens=8, sampler=Sampler.greedy())
    pieces = list(g)
    assert g.tokens == ref
    assert g.finish_reason == "length"
    assert "".join(pieces) == g.text == model.decode(ref)
    assert all(isinstance(p, str) and p for p in pieces)
    assert g.n_prompt_tokens == len(prompt)


def test_token_prompt_and_string_prompt_agree(model):
    a = generate(model, PROMPT, max_tokens=4, sampler=Sampler.greedy(), reuse_cache=False)
    list(a)
    b = generate(model, model.encode(PROMPT, special=True), max_tokens=4,
                 sampler=Sampler.greedy(), reuse_cache=False)
    list(b)
    assert a.tokens == b.tokens


def test_stops_at_end_of_generation_token(model):
    prompt = model.encode(PROMPT, special=True)
    ref = greedy_reference(model, prompt, 6)
    eog_id = ref[3]
    assert eog_id not in ref[:3]
    sp = model.special_tokens
    proxy = Proxy(model, special_tokens=type(sp)(**{**sp.__dict__, "eog": (eog_id,)}))
    g = generate(proxy, prompt, max_tokens=50, sampler=Sampler.greedy())
    text = "".join(g)
    assert g.tokens == ref[:3]
    assert g.finish_reason == "stop" and g.stop_token == eog_id
    assert text == model.decode(ref[:3])


def test_real_eog_ids_come_from_the_gguf(model):
    sp = model.special_tokens
    assert model.encode("<|im_end|>", special=True)[0] in sp.eog


def test_stop_string(model):
    g = generate(model, PROMPT, max_tokens=12, sampler=Sampler.greedy())
    full = "".join(g)
    assert len(full) >= 6
    stop = full[3:6]
    cut = full.find(stop)
    g2 = generate(model, PROMPT, max_tokens=12, sampler=Sampler.greedy(), stop=["\x00never", stop])
    pieces = list(g2)
    assert g2.finish_reason == "stop" and g2.stop_token is None
    assert "".join(pieces) == g2.text == full[:cut]


def test_context_full(tiny_chat_gguf):
    with Model(tiny_chat_gguf, n_ctx=16, n_threads=1) as m:
        prompt = list(range(100, 110))
        g = generate(m, prompt, max_tokens=100, sampler=Sampler.greedy())
        list(g)
        assert g.finish_reason == "context"
        assert len(g.tokens) == 16 - 10 + 1     # the last one is sampled but never forwarded
        assert m.n_tokens_forwarded == 16


def test_overflow_raises_before_any_compute(tiny_chat_gguf):
    with Model(tiny_chat_gguf, n_ctx=16, n_threads=1) as m:
        with pytest.raises(ContextOverflowError) as ei:
            generate(m, list(range(100, 117)))
        assert ei.value.n_prompt_tokens == 17 and ei.value.n_ctx == 16
        assert m.n_tokens_forwarded == 0


def test_chunked_prefill_is_exact(model):
    prompt = model.encode(PROMPT * 3, special=True)
    base = model.n_tokens_forwarded
    calls = []
    s = model.default_session
    proxy = Proxy(s, forward=lambda toks, pos=0: calls.append(len(toks)) or s.forward(toks, pos))
    a = generate(proxy, prompt, max_tokens=5, sampler=Sampler.greedy(), chunk_size=7,
                 reuse_cache=False)
    list(a)
    assert calls[:-4] == [7] * (len(prompt) // 7) + ([len(prompt) % 7] if len(prompt) % 7 else [])
    assert model.n_tokens_forwarded - base == len(prompt) + 4
    b = generate(model, prompt, max_tokens=5, sampler=Sampler.greedy(), chunk_size=64,
                 reuse_cache=False)
    list(b)
    assert a.tokens == b.tokens


def test_prefix_in_the_cache_is_not_recomputed(model):
    prompt = model.encode(PROMPT, special=True)
    g1 = generate(model, prompt, max_tokens=3, sampler=Sampler.greedy())
    list(g1)
    held = cached_tokens(model)
    assert held == prompt + g1.tokens[:-1]
    longer = prompt + g1.tokens + model.encode(" more", special=False)
    before = model.n_tokens_forwarded
    g2 = generate(model, longer, max_tokens=4, sampler=Sampler.greedy())
    list(g2)
    assert g2.n_cached == len(held)
    assert g2.n_prefilled == len(longer) - len(held)
    assert model.n_tokens_forwarded - before == g2.n_prefilled + 3
    fresh = generate(model, longer, max_tokens=4, sampler=Sampler.greedy(), reuse_cache=False)
    list(fresh)
    assert fresh.n_cached == 0 and fresh.tokens == g2.tokens


def test_same_prompt_twice_reuses_all_but_the_last_token(model):
    prompt = model.encode(PROMPT, special=True)
    list(generate(model, prompt, max_tokens=2, sampler=Sampler.greedy()))
    g = generate(model, prompt, max_tokens=2, sampler=Sampler.greedy())
    list(g)
    assert g.n_prefilled == 1 and g.n_cached == len(prompt) - 1


def test_foreign_forward_invalidates_the_record(model):
    prompt = model.encode(PROMPT, special=True)
    list(generate(model, prompt, max_tokens=2, sampler=Sampler.greedy()))
    model.forward([1, 2, 3], pos=0)        # someone else overwrote positions 0..2
    g = generate(model, prompt, max_tokens=2, sampler=Sampler.greedy())
    list(g)
    assert g.n_cached == 0


def test_interrupt_during_decode_leaves_a_consistent_model(model):
    prompt = model.encode(PROMPT, special=True)
    ref = generate(model, prompt, max_tokens=6, sampler=Sampler.greedy(), reuse_cache=False)
    list(ref)

    def boom(tok, logits):
        if boom.n == 3:
            raise KeyboardInterrupt
        boom.n += 1
    boom.n = 0
    g = generate(model, prompt, max_tokens=6, sampler=Sampler.greedy(), on_token=boom)
    with pytest.raises(KeyboardInterrupt):
        list(g)
    assert g.finish_reason == "interrupted"
    again = generate(model, prompt, max_tokens=6, sampler=Sampler.greedy())
    list(again)
    assert again.tokens == ref.tokens
    assert again.n_cached > 0


def test_interrupt_during_prefill_leaves_a_consistent_model(model):
    prompt = model.encode(PROMPT * 4, special=True)
    ref = generate(model, prompt, max_tokens=4, sampler=Sampler.greedy(), reuse_cache=False)
    list(ref)
    forget_cache(model)
    calls = []

    def forward(toks, pos=0):
        out = model.forward(toks, pos)   # the chunk completes in C ...
        calls.append(pos)
        if len(calls) == 2:
            raise KeyboardInterrupt      # ... and Ctrl-C lands right after it
        return out
    proxy = Proxy(model.default_session, forward=forward)
    g = generate(proxy, prompt, max_tokens=4, sampler=Sampler.greedy(), chunk_size=8)
    with pytest.raises(KeyboardInterrupt):
        list(g)
    # the second chunk finished in C before the interrupt: its positions count as filled
    assert cached_tokens(proxy) == prompt[:16]
    proxy.forward = model.forward
    again = generate(proxy, prompt, max_tokens=4, sampler=Sampler.greedy(), chunk_size=8)
    list(again)
    assert again.n_cached == 16 and again.tokens == ref.tokens


def test_interrupt_before_a_forward_leaves_a_consistent_model(model):
    prompt = model.encode(PROMPT * 4, special=True)
    ref = generate(model, prompt, max_tokens=4, sampler=Sampler.greedy(), reuse_cache=False)
    list(ref)

    def forward(toks, pos=0):
        if pos == 8:
            raise KeyboardInterrupt      # Ctrl-C before the second chunk reached C
        return model.forward(toks, pos)
    proxy = Proxy(model.default_session, forward=forward)
    forget_cache(proxy)
    g = generate(proxy, prompt, max_tokens=4, sampler=Sampler.greedy(), chunk_size=8)
    with pytest.raises(KeyboardInterrupt):
        list(g)
    assert cached_tokens(proxy) == prompt[:8]
    proxy.forward = model.forward
    again = generate(proxy, prompt, max_tokens=4, sampler=Sampler.greedy(), chunk_size=8)
    list(again)
    assert again.n_cached == 8 and again.tokens == ref.tokens


def test_seeded_sampling_is_reproducible(model):
    def run(seed):
        g = generate(model, PROMPT, max_tokens=10, sampler=Sampler(temperature=1.5, top_k=0,
                                                                   top_p=1.0, seed=seed))
        list(g)
        return g.tokens
    assert run(5) == run(5)
    assert run(5) != run(6)


def test_on_token_sees_every_sampled_token(model):
    seen = []
    g = generate(model, PROMPT, max_tokens=5, sampler=Sampler.greedy(),
                 on_token=lambda t, l: seen.append((t, l.shape, int(np.argmax(l)))))
    list(g)
    assert [s[0] for s in seen] == g.tokens
    assert all(shape == (model.config.vocab_size,) and t == am for t, shape, am in seen)


def test_stats(model):
    g = generate(model, PROMPT, max_tokens=5, sampler=Sampler.greedy(), reuse_cache=False)
    list(g)
    s = g.stats()
    assert s["n_prompt_tokens"] == len(g.prompt_tokens) and s["n_generated"] == 5
    assert s["finish_reason"] == "length"
    assert s["time_to_first_token"] is not None


@pytest.mark.parametrize("kw,exc", [
    (dict(prompt_or_tokens=""), ValueError),
    (dict(prompt_or_tokens=[]), ValueError),
    (dict(prompt_or_tokens=[10**7]), ValueError),
    (dict(prompt_or_tokens=[-1]), ValueError),
    (dict(prompt_or_tokens=[1.5]), TypeError),
    (dict(prompt_or_tokens=b"hi"), TypeError),
    (dict(prompt_or_tokens=42), TypeError),
    (dict(max_tokens=0), ValueError),
    (dict(max_tokens=2.0), TypeError),
    (dict(sampler="greedy"), TypeError),
    (dict(stop=""), ValueError),
    (dict(stop=[3]), TypeError),
    (dict(chunk_size=0), ValueError),
])
def test_bad_arguments(model, kw, exc):
    kw = {"prompt_or_tokens": PROMPT, **kw}
    with pytest.raises(exc):
        generate(model, **kw)


def test_model_generate_method(model):
    g = model.generate(PROMPT, max_tokens=3, sampler=Sampler.greedy(), stop=None)
    ref = generate(model, PROMPT, max_tokens=3, sampler=Sampler.greedy())
    assert "".join(g) == "".join(ref) and g.tokens == ref.tokens
    assert g.finish_reason == "length"
