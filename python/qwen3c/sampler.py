"""Sampling: turn a row of logits into the next token.

`Sampler` wraps the C sampler (csrc/sampler.c). The pipeline is the one transformers applies
in `generate`: penalties over the token history -> top-k -> temperature -> top-p -> min-p ->
a draw from the sampler's own seeded RNG. temperature=0 is greedy (argmax).

    s = Sampler(temperature=0.6, top_k=20, top_p=0.95, seed=0)
    tok = s.sample(logits)        # also appended to the history the penalties look at
"""
from __future__ import annotations

import numbers
import os

import numpy as np

from . import _native

# Qwen3's recommended settings (generation_config.json and the model card).
THINKING = dict(temperature=0.6, top_k=20, top_p=0.95, min_p=0.0)
NON_THINKING = dict(temperature=0.7, top_k=20, top_p=0.8, min_p=0.0)
GREEDY = dict(temperature=0.0, top_k=0, top_p=1.0, min_p=0.0)

_FLOAT_ARGS = ("temperature", "top_p", "min_p", "presence_penalty", "frequency_penalty",
               "repetition_penalty")


def _as_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _as_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return int(value)


class Sampler:
    """Picks the next token from logits; owns its RNG and its token history.

    temperature: 0 = greedy. top_k: <= 0 disables. top_p: 1 disables. min_p: 0 disables.
    presence_penalty / frequency_penalty: subtracted from the logits of tokens in the history
    (once / once per occurrence). repetition_penalty: CTRL-style, 1 disables.
    penalty_last_n: how many recent tokens the penalties look at (0 = the whole history).
    seed: an int in [0, 2**64) for reproducible draws; None draws one from os.urandom.
    """

    def __init__(self, temperature=0.6, top_k=20, top_p=0.95, min_p=0.0,
                 presence_penalty=0.0, frequency_penalty=0.0, repetition_penalty=1.0,
                 seed=None, penalty_last_n=0):
        temperature = _as_float("temperature", temperature)
        top_p = _as_float("top_p", top_p)
        min_p = _as_float("min_p", min_p)
        presence_penalty = _as_float("presence_penalty", presence_penalty)
        frequency_penalty = _as_float("frequency_penalty", frequency_penalty)
        repetition_penalty = _as_float("repetition_penalty", repetition_penalty)
        top_k = _as_int("top_k", top_k)
        penalty_last_n = _as_int("penalty_last_n", penalty_last_n)
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if not 0.0 <= min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {min_p}")
        if repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {repetition_penalty}")
        if not -(2**31) <= top_k < 2**31 or not -(2**31) <= penalty_last_n < 2**31:
            raise ValueError("top_k and penalty_last_n must fit in a C int")
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little")
        seed = _as_int("seed", seed)
        if not 0 <= seed < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), got {seed}")
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.min_p = min_p
        self.presence_penalty = presence_penalty
        self.frequency_penalty = frequency_penalty
        self.repetition_penalty = repetition_penalty
        self.penalty_last_n = penalty_last_n
        self.seed = seed
        self._h = _native.sampler_create(temperature, top_k, top_p, min_p, presence_penalty,
                                         frequency_penalty, repetition_penalty, penalty_last_n,
                                         seed)

    # ---- presets ----------------------------------------------------------------------------
    @classmethod
    def thinking(cls, **overrides) -> "Sampler":
        """Qwen3's settings for thinking mode: temperature 0.6, top_k 20, top_p 0.95, min_p 0."""
        return cls(**{**THINKING, **overrides})

    @classmethod
    def non_thinking(cls, **overrides) -> "Sampler":
        """Qwen3's settings for non-thinking mode: temperature 0.7, top_k 20, top_p 0.8, min_p 0."""
        return cls(**{**NON_THINKING, **overrides})

    @classmethod
    def greedy(cls, **overrides) -> "Sampler":
        """Always the most likely token (after penalties)."""
        return cls(**{**GREEDY, "seed": 0, **overrides})

    # ---- use --------------------------------------------------------------------------------
    def _handle(self):
        if self._h is None:
            raise ValueError("the sampler is closed")
        return self._h

    def sample(self, logits, allowed=None) -> int:
        """The next token id for a 1-D row of logits (appended to the history).

        allowed: None, or a token bitmask (constrained decoding, e.g. from a grammar): int32 /
        uint32 words, bit i % 32 of word i // 32 set = token i may be picked (llguidance's
        layout); the others count as -inf."""
        h = self._handle()
        arr = np.asarray(logits)
        if arr.ndim != 1:
            raise ValueError(f"logits must be 1-D (vocab_size,), got shape {arr.shape}")
        if arr.size == 0:
            raise ValueError("logits is empty")
        if arr.size >= 2**31:
            raise ValueError("too many logits")
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise TypeError(f"logits must be numeric, got dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if allowed is None:
            return _native.sampler_sample(h, arr)
        words = np.ascontiguousarray(allowed).reshape(-1)
        if words.dtype not in (np.int32, np.uint32):
            raise TypeError(f"allowed must be int32 / uint32 bitmask words, got {words.dtype}")
        if words.size < (arr.size + 31) // 32:
            raise ValueError(f"allowed has {words.size} words, {(arr.size + 31) // 32} needed")
        return _native.sampler_sample_masked(h, arr, words)

    def accept(self, token) -> None:
        """Add a token (e.g. from the prompt) to the history the penalties look at."""
        token = _as_int("token", token)
        if not 0 <= token < 2**31:
            raise ValueError(f"token id must be in [0, 2**31), got {token}")
        _native.sampler_accept(self._handle(), token)

    def reset(self) -> None:
        """Forget the token history (the RNG stream continues)."""
        _native.sampler_reset(self._handle())

    def close(self) -> None:
        if self._h is not None:
            _native.sampler_free(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return (f"Sampler(temperature={self.temperature}, top_k={self.top_k}, "
                f"top_p={self.top_p}, min_p={self.min_p}, "
                f"presence_penalty={self.presence_penalty}, "
                f"frequency_penalty={self.frequency_penalty}, "
                f"repetition_penalty={self.repetition_penalty}, seed={self.seed})")
