"""The sampler (csrc/sampler.c through qwen3c.sampler.Sampler).

Each knob is checked on crafted logits where the surviving candidate set is known exactly,
then the empirical distribution of many fixed-seed draws is compared with the exact
probabilities a numpy reference of the same pipeline computes.
"""
import math

import numpy as np
import pytest

import qwen3c

from qwen3c.sampler import GREEDY, NON_THINKING, THINKING, Sampler

# the bad-input tests also run against an ASan + UBSan build (tools/run_tests.sh)
sanitize = pytest.mark.sanitize


def draws(sampler, logits, n):
    """n samples from the same logits, with the history cleared before each draw."""
    counts = np.zeros(len(logits), dtype=np.int64)
    for _ in range(n):
        sampler.reset()
        counts[sampler.sample(logits)] += 1
    return counts


def reference_probs(logits, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
                    presence_penalty=0.0, frequency_penalty=0.0, repetition_penalty=1.0,
                    history=()):
    """The distribution the sampler should draw from, computed in float64 numpy."""
    l = np.asarray(logits, dtype=np.float64).copy()
    ids, counts = np.unique(np.asarray(history, dtype=np.int64), return_counts=True)
    for t, c in zip(ids, counts):
        if repetition_penalty != 1.0:
            l[t] = l[t] / repetition_penalty if l[t] > 0 else l[t] * repetition_penalty
        l[t] -= presence_penalty + frequency_penalty * c
    order = np.lexsort((np.arange(len(l)), -l))  # by logit desc, then id asc
    keep = np.zeros(len(l), dtype=bool)
    k = top_k if 0 < top_k < len(l) else len(l)
    keep[order[:k]] = True
    w = np.where(keep, np.exp((l - l.max()) / temperature), 0.0)
    if top_p < 1.0:
        cum = np.cumsum(w[order]) / w.sum()
        cut = int(np.searchsorted(cum, top_p)) + 1  # smallest prefix with mass >= top_p
        keep[:] = False
        keep[order[:cut]] = True
        w = np.where(keep, w, 0.0)
    if min_p > 0:
        w = np.where(w >= min_p * w.max(), w, 0.0)
    return w / w.sum()


def assert_matches(counts, probs, n):
    """Empirical frequencies within 5 standard errors of the exact probabilities, and a zero
    count wherever the probability is zero."""
    assert np.all(counts[probs == 0] == 0), np.nonzero(counts * (probs == 0))
    freq = counts / n
    se = np.sqrt(np.maximum(probs * (1 - probs), 1e-12) / n)
    assert np.all(np.abs(freq - probs) <= 5 * se + 1e-9), (freq, probs)


# ---- greedy -------------------------------------------------------------------------------

def test_temperature_zero_is_argmax():
    s = Sampler(temperature=0.0, seed=1)
    logits = np.array([0.1, 3.0, -2.0, 2.9], dtype=np.float32)
    assert [s.sample(logits) for _ in range(5)] == [1] * 5


def test_greedy_ties_pick_the_lower_id():
    s = Sampler.greedy()
    assert s.sample(np.array([1.0, 5.0, 5.0, 5.0], dtype=np.float32)) == 1


def test_top_k_one_is_argmax_at_any_temperature():
    s = Sampler(temperature=5.0, top_k=1, top_p=1.0, seed=3)
    logits = np.array([0.0, 0.1, 0.2, 0.15], dtype=np.float32)
    assert all(s.sample(logits) == 2 for _ in range(50))


def test_tiny_temperature_is_greedy_without_overflow():
    s = Sampler(temperature=1e-30, top_k=0, top_p=1.0, seed=3)
    logits = np.array([1.0, 1.0 + 1e-6, -1e30, 0.5], dtype=np.float32)
    assert all(s.sample(logits) == 1 for _ in range(20))


def test_accepts_lists_and_float64():
    s = Sampler.greedy()
    assert s.sample([0.0, 2.0, 1.0]) == 1
    assert s.sample(np.array([3.0, 2.0], dtype=np.float64)) == 0


# ---- each knob on crafted logits ------------------------------------------------------------

P4 = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float64)).astype(np.float32)


def test_temperature_reshapes_exactly():
    # logits [0, ln 4] at T=2 -> weights [1, 2] -> probabilities [1/3, 2/3]
    logits = np.array([0.0, math.log(4.0)], dtype=np.float32)
    s = Sampler(temperature=2.0, top_k=0, top_p=1.0, seed=11)
    n = 6000
    c = draws(s, logits, n)
    assert_matches(c, np.array([1 / 3, 2 / 3]), n)


@pytest.mark.parametrize("k,support", [(1, {0}), (2, {0, 1}), (3, {0, 1, 2})])
def test_top_k_support(k, support):
    s = Sampler(temperature=1.0, top_k=k, top_p=1.0, seed=5)
    c = draws(s, P4, 3000)
    assert set(np.nonzero(c)[0]) == support


def test_top_k_distribution():
    s = Sampler(temperature=1.0, top_k=2, top_p=1.0, seed=7)
    n = 6000
    c = draws(s, P4, n)
    assert_matches(c, np.array([0.625, 0.375, 0.0, 0.0]), n)


@pytest.mark.parametrize("p,support", [(0.4, {0}), (0.75, {0, 1}), (0.85, {0, 1, 2}),
                                       (0.99, {0, 1, 2, 3})])
def test_top_p_support(p, support):
    s = Sampler(temperature=1.0, top_k=0, top_p=p, seed=5)
    c = draws(s, P4, 4000)
    assert set(np.nonzero(c)[0]) == support


def test_top_p_distribution():
    s = Sampler(temperature=1.0, top_k=0, top_p=0.85, seed=8)
    n = 6000
    c = draws(s, P4, n)
    assert_matches(c, np.array([0.5, 0.3, 0.15, 0.0]) / 0.95, n)


@pytest.mark.parametrize("m,support", [(0.9, {0}), (0.5, {0, 1}), (0.2, {0, 1, 2}),
                                       (0.05, {0, 1, 2, 3})])
def test_min_p_support(m, support):
    # p_max = 0.5: min_p 0.5 keeps p >= 0.25, min_p 0.2 keeps p >= 0.1, ...
    s = Sampler(temperature=1.0, top_k=0, top_p=1.0, min_p=m, seed=5)
    c = draws(s, P4, 4000)
    assert set(np.nonzero(c)[0]) == support


def test_negative_infinity_is_never_drawn():
    logits = np.array([0.0, -np.inf, 0.0, -np.inf], dtype=np.float32)
    s = Sampler(temperature=1.0, top_k=0, top_p=1.0, seed=2)
    n = 4000
    c = draws(s, logits, n)
    assert_matches(c, np.array([0.5, 0.0, 0.5, 0.0]), n)


def test_presence_penalty():
    logits = np.array([1.0, 0.9], dtype=np.float32)
    s = Sampler(temperature=0.0, presence_penalty=0.5, seed=0)
    s.accept(0)
    assert s.sample(logits) == 1        # 1.0 - 0.5 < 0.9
    # now both are in the history: 0.5 vs 0.4
    assert s.sample(logits) == 0


def test_presence_penalty_counts_once():
    logits = np.array([1.0, 0.7], dtype=np.float32)
    s = Sampler(temperature=0.0, presence_penalty=0.2, seed=0)
    for _ in range(5):
        s.accept(0)
    assert s.sample(logits) == 0        # 1.0 - 0.2 = 0.8 > 0.7, however often 0 was seen


def test_frequency_penalty_counts_every_occurrence():
    logits = np.array([1.0, 0.9], dtype=np.float32)
    s = Sampler(temperature=0.0, frequency_penalty=0.06, seed=0)
    s.accept(0)
    assert s.sample(logits) == 0        # 1.0 - 0.06 = 0.94 > 0.9
    s.reset()
    s.accept(0)
    s.accept(0)
    assert s.sample(logits) == 1        # 1.0 - 0.12 = 0.88 < 0.9


def test_repetition_penalty_divides_positive_and_multiplies_negative():
    s = Sampler(temperature=0.0, repetition_penalty=1.5, seed=0)
    s.accept(0)
    assert s.sample(np.array([2.0, 1.5], dtype=np.float32)) == 1    # 2.0 / 1.5 = 1.33
    s.reset()
    s.accept(0)
    assert s.sample(np.array([-1.0, -1.2], dtype=np.float32)) == 1  # -1.0 * 1.5 = -1.5
    s.reset()
    s.accept(0)
    assert s.sample(np.array([1.2, 0.81], dtype=np.float32)) == 1   # 1.2 / 1.5 = 0.8 < 0.81
    s.reset()
    s.accept(0)
    assert s.sample(np.array([1.2, 0.79], dtype=np.float32)) == 0   # 0.8 > 0.79


def test_penalty_window():
    logits = np.array([1.0, 0.9, 0.0], dtype=np.float32)
    s = Sampler(temperature=0.0, presence_penalty=0.5, penalty_last_n=2, seed=0)
    s.accept(0)
    s.accept(2)
    s.accept(2)           # token 0 fell out of the 2-token window
    assert s.sample(logits) == 0
    s2 = Sampler(temperature=0.0, presence_penalty=0.5, penalty_last_n=3, seed=0)
    for t in (0, 2, 2):
        s2.accept(t)
    assert s2.sample(logits) == 1


@sanitize
def test_long_history_with_window_stays_correct():
    logits = np.array([1.0, 0.9, 0.0], dtype=np.float32)
    s = Sampler(temperature=0.0, presence_penalty=0.5, penalty_last_n=4, seed=0)
    for _ in range(1000):
        s.accept(0)
    for _ in range(4):
        s.accept(2)
    assert s.sample(logits) == 0
    s.accept(0)
    assert s.sample(logits) == 1


def test_sample_appends_to_history_and_reset_forgets():
    logits = np.array([1.0, 0.9], dtype=np.float32)
    s = Sampler(temperature=0.0, presence_penalty=0.5, seed=0)
    assert [s.sample(logits) for _ in range(3)] == [0, 1, 0]
    s.reset()
    assert s.sample(logits) == 0


@sanitize
def test_penalties_in_the_full_pipeline():
    logits = np.array([2.0, 1.8, 1.0, 0.5, -1.0], dtype=np.float32)
    hist = [0, 0, 1, 4]
    kw = dict(temperature=0.8, top_k=4, top_p=0.9, min_p=0.05, presence_penalty=0.3,
              frequency_penalty=0.2, repetition_penalty=1.3)
    probs = reference_probs(logits, history=hist, **kw)
    s = Sampler(seed=21, **kw)
    n = 6000
    counts = np.zeros(5, dtype=np.int64)
    for _ in range(n):
        s.reset()
        for t in hist:
            s.accept(t)
        counts[s.sample(logits)] += 1
    assert_matches(counts, probs, n)


# ---- a real vocabulary size -----------------------------------------------------------------

V = 151936


def make_logits(n, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, size=n).astype(np.float32)
    logits[rng.choice(n, 12, replace=False)] += 9.0   # a few plausible next tokens
    return logits


@pytest.fixture(scope="module")
def big_logits():
    return make_logits(V)


@pytest.fixture(scope="module")
def mid_logits():
    # big enough for the top-p prefix to grow several times, small enough for many draws
    return make_logits(V // 8, seed=1)


def test_big_vocab_top_k_distribution(big_logits):
    kw = dict(temperature=0.6, top_k=20, top_p=0.95, min_p=0.0)
    probs = reference_probs(big_logits, **kw)
    s = Sampler(seed=1234, **kw)
    n = 2000
    assert_matches(draws(s, big_logits, n), probs, n)


@pytest.mark.parametrize("kw", [
    dict(temperature=0.7, top_k=0, top_p=0.8, min_p=0.0),      # top-p alone: the prefix grows
    dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.02),     # min-p alone: no sort at all
])
def test_mid_vocab_distribution(mid_logits, kw):
    probs = reference_probs(mid_logits, **kw)
    s = Sampler(seed=1234, **kw)
    n = 2000
    assert_matches(draws(s, mid_logits, n), probs, n)


def test_pure_temperature_draws_the_tail(mid_logits):
    # no truncation at all: the mass outside the 12 boosted tokens is real and must be drawn
    probs = reference_probs(mid_logits, temperature=1.5)
    s = Sampler(temperature=1.5, top_k=0, top_p=1.0, seed=99)
    n = 2000
    c = draws(s, mid_logits, n)
    top = np.argsort(-probs)[:12]
    rest_p = 1 - probs[top].sum()
    rest_c = n - c[top].sum()
    assert 0.05 < rest_p < 0.95
    assert abs(rest_c / n - rest_p) <= 5 * math.sqrt(rest_p * (1 - rest_p) / n)


# ---- reproducibility --------------------------------------------------------------------

@sanitize
def test_same_seed_same_tokens(big_logits):
    a = Sampler(seed=42)
    b = Sampler(seed=42)
    c = Sampler(seed=43)
    ta = [a.sample(big_logits) for _ in range(200)]
    tb = [b.sample(big_logits) for _ in range(200)]
    tc = [c.sample(big_logits) for _ in range(200)]
    assert ta == tb
    assert ta != tc


def test_seed_none_is_random():
    seeds = {Sampler().seed for _ in range(4)}
    assert len(seeds) == 4
    assert all(0 <= x < 2**64 for x in seeds)


def test_presets():
    assert THINKING == dict(temperature=0.6, top_k=20, top_p=0.95, min_p=0.0)
    assert NON_THINKING == dict(temperature=0.7, top_k=20, top_p=0.8, min_p=0.0)
    s = Sampler.non_thinking(seed=1)
    assert (s.temperature, s.top_k, s.top_p, s.min_p) == (0.7, 20, 0.8, 0.0)
    d = Sampler(seed=1)
    assert (d.temperature, d.top_k, d.top_p, d.min_p) == (0.6, 20, 0.95, 0.0)
    assert Sampler.greedy().temperature == GREEDY["temperature"] == 0.0
    assert "top_k=20" in repr(Sampler.thinking(seed=0))


# ---- bad input: clear exceptions, never a crash -----------------------------------------

@sanitize
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_logits_rejected(bad):
    s = Sampler(seed=0)
    logits = np.zeros(10, dtype=np.float32)
    logits[7] = bad
    with pytest.raises(ValueError, match="logit 7"):
        s.sample(logits)


@sanitize
def test_all_minus_inf_rejected():
    with pytest.raises(ValueError, match="-inf"):
        Sampler(seed=0).sample(np.full(4, -np.inf, dtype=np.float32))


@sanitize
@pytest.mark.parametrize("logits,exc", [
    (np.zeros((2, 3), dtype=np.float32), ValueError),
    (np.zeros(0, dtype=np.float32), ValueError),
    (np.array(["a", "b"]), TypeError),
])
def test_bad_logits_shapes(logits, exc):
    with pytest.raises(exc):
        Sampler(seed=0).sample(logits)


@sanitize
@pytest.mark.parametrize("kw,exc", [
    (dict(temperature=-0.1), ValueError),
    (dict(temperature=float("nan")), ValueError),
    (dict(temperature="hot"), TypeError),
    (dict(top_p=0.0), ValueError),
    (dict(top_p=1.5), ValueError),
    (dict(min_p=-0.1), ValueError),
    (dict(min_p=1.1), ValueError),
    (dict(repetition_penalty=0.0), ValueError),
    (dict(top_k=2.5), TypeError),
    (dict(top_k=True), TypeError),
    (dict(seed=-1), ValueError),
    (dict(seed=2**64), ValueError),
    (dict(seed="x"), TypeError),
    (dict(presence_penalty=float("inf")), ValueError),
    (dict(top_k=-5), ValueError),
    (dict(top_k=-1), ValueError),
    (dict(top_k=2**31), ValueError),
    (dict(penalty_last_n=-1), ValueError),
])
def test_bad_params(kw, exc):
    with pytest.raises(exc):
        Sampler(**kw)


GOOD = dict(temperature=0.6, top_k=20, top_p=0.95, min_p=0.0, presence_penalty=0.0,
            frequency_penalty=0.0, repetition_penalty=1.0, penalty_last_n=0, seed=0)


@sanitize
@pytest.mark.parametrize("name,value", [
    ("temperature", -0.1), ("temperature", float("inf")), ("top_k", -5), ("top_p", 0.0),
    ("top_p", 1.5), ("min_p", -0.1), ("min_p", 1.1), ("repetition_penalty", 0.0),
    ("presence_penalty", float("nan")), ("frequency_penalty", float("inf")),
    ("penalty_last_n", -1),
])
def test_c_and_python_refuse_the_same_values(name, value):
    """Sampler(...) checks in Python first; the C sampler refuses the same values itself."""
    from qwen3c import _native
    with pytest.raises(ValueError, match=name):
        Sampler(**{**GOOD, name: value})
    with pytest.raises(qwen3c.InvalidArgumentError, match=name):
        _native.sampler_create(**{**GOOD, name: value})


@pytest.mark.parametrize("name,value", [("top_k", 0), ("top_p", 1.0), ("min_p", 1.0),
                                        ("temperature", 0.0), ("penalty_last_n", 0)])
def test_edge_values_are_accepted_by_both(name, value):
    from qwen3c import _native
    Sampler(**{**GOOD, name: value})
    _native.sampler_create(**{**GOOD, name: value})


@sanitize
def test_bad_accept_and_closed_sampler():
    s = Sampler(seed=0)
    with pytest.raises(ValueError):
        s.accept(-1)
    with pytest.raises(TypeError):
        s.accept(1.5)
    s.close()
    s.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        s.sample([0.0, 1.0])
    with Sampler(seed=0) as s2:
        assert s2.sample([0.0, 1.0]) in (0, 1)
