"""The gated delta rule kernels of Qwen3.5's Gated DeltaNet (csrc/kernels/deltanet_scalar.c, as
the selected CPU tier compiles it) against a float64 numpy transcription of transformers'
torch_recurrent_gated_delta_rule, and against each other: the one-token-at-a-time form the
forward pass runs and transformers' chunked prefill algorithm (tokens in chunks of 64 through a
triangular solve) give the same outputs and state.
"""
from __future__ import annotations

import numpy as np
import pytest

from qwen3c import _native
from qwen3c.errors import InvalidArgumentError

pytestmark = pytest.mark.sanitize  # rerun under ASan + UBSan by tools/run_tests.sh


def reference(S, q, k, v, g, beta):
    """The recurrence in float64: S = S * exp(g_t); S += k_t ((v_t - S^T k_t) beta_t)^T;
    o_t = S^T q_t."""
    S = S.astype(np.float64).copy()
    out = np.empty((len(q), S.shape[1]))
    for t in range(len(q)):
        S *= np.exp(g[t])
        delta = (v[t] - S.T @ k[t]) * beta[t]
        S += np.outer(k[t], delta)
        out[t] = S.T @ q[t]
    return S, out


def inputs(n, hk, hv, seed, decay=(0.01, 16)):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, hk))
    k = q + 0.5 * rng.standard_normal((n, hk))  # queries that resemble keys, as a trained model's
    q /= np.linalg.norm(q, axis=1, keepdims=True) * np.sqrt(hk)
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    v = rng.standard_normal((n, hv))
    a = rng.uniform(*decay, n)
    g = -a * np.log1p(np.exp(rng.standard_normal(n)))   # -A * softplus(...)
    beta = 1 / (1 + np.exp(-rng.standard_normal(n)))
    S0 = 0.1 * rng.standard_normal((hk, hv))
    return [x.astype(np.float32) for x in (S0, q, k, v, g, beta)]


@pytest.mark.parametrize("n,hk,hv", [(1, 16, 16), (7, 16, 48), (64, 32, 32), (150, 128, 128),
                                     (65, 24, 40)])
@pytest.mark.parametrize("chunked", [False, True])
def test_matches_the_float64_recurrence(n, hk, hv, chunked):
    """float32 rounding only: the recurrence ~1e-7 of the largest value, the chunked form (its
    triangular solve adds rounding, as in transformers' float32 prefill) ~1e-5."""
    S0, q, k, v, g, beta = inputs(n, hk, hv, seed=n + hk)
    S_ref, o_ref = reference(S0, q, k, v, g, beta)
    S, o = _native.gated_delta_rule(S0, q, k, v, g, beta, chunked)
    tol = 5e-5 if chunked else 2e-6
    assert np.abs(o - o_ref).max() <= tol * np.abs(o_ref).max()
    assert np.abs(S - S_ref).max() <= tol * np.abs(S_ref).max()


def test_slow_decay_long_sequence():
    """Heads that barely forget (A = 0.01) carry the whole sequence in S."""
    S0, q, k, v, g, beta = inputs(300, 64, 64, seed=5, decay=(0.005, 0.02))
    S_ref, o_ref = reference(S0, q, k, v, g, beta)
    for chunked, tol in ((False, 1e-5), (True, 5e-5)):
        S, o = _native.gated_delta_rule(S0, q, k, v, g, beta, chunked)
        assert np.abs(o - o_ref).max() <= tol * np.abs(o_ref).max()
        assert np.abs(S - S_ref).max() <= tol * np.abs(S_ref).max()


def test_split_runs_continue_the_state():
    """The state after n tokens continues exactly like one run of n + m tokens."""
    S0, q, k, v, g, beta = inputs(90, 32, 32, seed=6)
    S_all, o_all = _native.gated_delta_rule(S0, q, k, v, g, beta, False)
    S1, o1 = _native.gated_delta_rule(S0, q[:37], k[:37], v[:37], g[:37], beta[:37], False)
    S2, o2 = _native.gated_delta_rule(S1, q[37:], k[37:], v[37:], g[37:], beta[37:], False)
    np.testing.assert_array_equal(np.concatenate([o1, o2]), o_all)
    np.testing.assert_array_equal(S2, S_all)


def test_bad_arguments():
    S0, q, k, v, g, beta = inputs(4, 8, 8, seed=7)
    with pytest.raises(InvalidArgumentError):
        _native.gated_delta_rule(S0, q[:0], k[:0], v[:0], g[:0], beta[:0], False)
