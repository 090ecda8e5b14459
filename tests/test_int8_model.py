"""Model(int8_activations=True): the opt-in fast path, wired through the forward pass.

It must stay close to the exact path on quantized files, leave float files untouched (their
matmuls have no int8 kernel), and keep token-by-token == batched.
"""
from __future__ import annotations

import numpy as np
import pytest

import qwen3c

TOKENS = [(7 * i + 3) % 256 for i in range(48)]


@pytest.fixture(scope="module")
def q8_path(make_tiny_model):
    return make_tiny_model(out_type="q8_0", seed=3)[1]


def test_int8_close_to_exact_on_q8_0(q8_path):
    with qwen3c.Model(q8_path, n_ctx=64) as exact, \
            qwen3c.Model(q8_path, n_ctx=64, int8_activations=True) as fast:
        assert fast.int8_activations and not exact.int8_activations
        a = exact.forward(TOKENS, all_logits=True)
        b = fast.forward(TOKENS, all_logits=True)
    rel = np.abs(a - b).max() / np.abs(a).max()
    assert 0 < rel < 5e-2, rel          # it is a different (rounded) computation ...
    assert (a.argmax(-1) == b.argmax(-1)).mean() >= 0.9  # ... that mostly agrees


def test_int8_token_by_token_equals_batched(q8_path):
    with qwen3c.Model(q8_path, n_ctx=64, int8_activations=True) as m:
        batched = m.forward(TOKENS[:16], all_logits=True)
    with qwen3c.Model(q8_path, n_ctx=64, int8_activations=True) as m:
        steps = np.stack([m.forward([t], pos=i) for i, t in enumerate(TOKENS[:16])])
    assert np.abs(steps - batched).max() / np.abs(batched).max() < 1e-5


def test_int8_flag_leaves_float_files_exact(tiny_gguf):
    with qwen3c.Model(tiny_gguf, n_ctx=64) as exact, \
            qwen3c.Model(tiny_gguf, n_ctx=64, int8_activations=True) as fast:
        np.testing.assert_array_equal(exact.forward(TOKENS, all_logits=True),
                                      fast.forward(TOKENS, all_logits=True))
