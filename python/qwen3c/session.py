"""`qwen3c.Session`: one KV cache on a shared `Model` (C: a `qwen3c_context`), and the record of
the tokens it holds.

    m = qwen3c.Model("Qwen3-0.6B-Q8_0.gguf")          # the weights, read-only, shared
    a, b = m.session(n_ctx=4096), m.session()          # two independent conversations
    a.forward(ids)                                     # writes a's cache only
    for piece in b.generate("Once upon a time"): ...
    qwen3c.Chat(m)                                     # a chat owns its own session

A session is what transformers calls the model's `past_key_values` and llama.cpp a
`llama_context`. It knows which tokens sit at positions 0..n-1 of its cache (`tokens`): every
forward() updates that record, so whoever runs tokens on a session (a generation, a chat, the
server's scheduler) compares what it expects with the record and prefills only what differs
(`reusable_prefix`). Two generators interleaved on one session stay correct: the second one
finds its prefix overwritten and re-runs it instead of continuing on the other's cache.

`Model.forward`, `Model.generate`, ... run on the model's default session, `Model.default_session`.
A session has the model's tokenizer methods too (encode, decode, apply_chat_template, ...), so
it can go wherever a model goes. Each session has its own lock: one thread at a time computes
on it, while other sessions of the same model compute in parallel (the weights are read-only).
Closing the model closes its sessions; using one afterwards raises Qwen3cError.
"""
from __future__ import annotations

import dataclasses
import threading
import weakref
from typing import Sequence

import numpy as np

from . import _native
from .errors import ContextOverflowError, InvalidArgumentError, Qwen3cError


def common_prefix(a, b) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Session:
    """An independent KV cache on `model`; made by `Model.session(...)`.

    Attributes: model, config (the model's, with this session's n_ctx and n_threads), n_ctx,
    kv_cache ("f32" or "f16"), tokens (the tokens the cache holds at positions 0..n-1),
    n_tokens_forwarded (tokens run since creation), version (changes with every forward),
    lock (held while computing; hold it to run several steps without interleaving).
    """

    def __init__(self, model, n_ctx: int, n_threads: int, n_batch: int, kv_cache: str,
                 n_checkpoints: int = 0):
        self.model = model
        self.lock = threading.RLock()
        self._ctx = _native.context_create(model._ptr(), n_ctx, n_threads, n_batch,
                                           model.activations, kv_cache, n_checkpoints)
        self._finalizer = weakref.finalize(self, _native.context_free, self._ctx)
        self._closed_why = None
        real_ctx, real_threads = _native.context_info(self._ctx)
        base = model._base_config
        self.config = dataclasses.replace(base, n_ctx=real_ctx, n_threads=real_threads)
        self.n_ctx = real_ctx
        self.kv_cache = kv_cache
        self.n_tokens_forwarded = 0
        self.version = 0
        self._tokens: list = []

    # ---- lifetime ----------------------------------------------------------------------
    def close(self, why: str = "the session is closed") -> None:
        """Free the KV cache. Further use raises Qwen3cError; closing twice is fine."""
        with self.lock:
            if self._ctx is not None:
                self._finalizer()
                self._ctx = None
                self._closed_why = why
                self._tokens = []
                self.version += 1

    @property
    def closed(self) -> bool:
        return self._ctx is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self.closed else f"n_ctx={self.n_ctx}, {len(self._tokens)} tokens"
        return f"<qwen3c.Session {state}>"

    def _ctx_ptr(self):
        if self._ctx is None:
            raise Qwen3cError(self._closed_why or "the session is closed")
        return self._ctx

    # ---- what the cache holds ----------------------------------------------------------
    @property
    def tokens(self) -> list:
        """The tokens whose keys and values the cache holds, at positions 0..len-1."""
        return list(self._tokens)

    def reset(self) -> None:
        """Forget what the cache holds: the next prompt is prefilled from position 0."""
        with self.lock:
            self._tokens = []
            self.version += 1

    def rewind_point(self, pos: int) -> int:
        """Where this cache can continue from if only its first `pos` positions are kept.

        A KV cache keeps every prefix (returns pos); a recurrent state that cannot be cut
        back (Qwen3.5's Gated DeltaNet layers) answers n_past when pos >= n_past, else the
        latest checkpoint at or before pos, or 0: run everything again."""
        if isinstance(pos, bool) or not isinstance(pos, (int, np.integer)):
            raise TypeError(f"pos must be an int, not {type(pos).__name__}")
        return _native.context_rewind_point(self._ctx_ptr(), int(pos))

    @property
    def n_past(self) -> int:
        """How many leading positions the C context holds (pos + len(tokens) of the last
        forward); a recurrent state continues only from here, 0 or a checkpoint."""
        with self.lock:
            return _native.context_n_past(self._ctx_ptr())

    def checkpoint(self) -> None:
        """Save the recurrent state as it is now (at position n_past), so that a later forward
        at that position resumes there instead of from 0 (Qwen3.5; a no-op otherwise). The
        n_checkpoints slots are reused oldest first; a forward at pos drops those past pos."""
        with self.lock:
            _native.context_checkpoint(self._ctx_ptr())

    @property
    def checkpoints(self) -> list:
        """Positions of the saved checkpoints, ascending."""
        with self.lock:
            return _native.context_checkpoints(self._ctx_ptr())

    def reusable_prefix(self, tokens: Sequence[int]) -> int:
        """How many leading `tokens` need not be run again: the longest common prefix with
        the record, short of the last token (its logits are needed), at a point the cache can
        continue from (rewind_point). Run tokens[result:] at position result next."""
        with self.lock:
            n = min(common_prefix(self._tokens, tokens), len(tokens) - 1)
            n = max(n, 0)
            if n < len(self._tokens):
                n = self.rewind_point(n)
            return n

    def copy_prefix_from(self, other: "Session", n_tokens: int) -> None:
        """Make this session hold the first n_tokens of `other`'s record, their keys and
        values copied (a prompt prefix prefilled once serves several conversations). Both
        must be sessions of the same model with the same kv_cache."""
        if not isinstance(other, Session) or other.model is not self.model:
            raise ValueError("copy_prefix_from needs a session of the same model")
        if other is self:
            return
        first, second = sorted((self, other), key=id)   # one lock order: no deadlock
        with first.lock, second.lock:
            n = int(n_tokens)
            if not 0 <= n <= len(other._tokens):
                raise ValueError(f"n_tokens must be in [0, {len(other._tokens)}], got {n_tokens}")
            _native.context_copy_prefix(self._ctx_ptr(), other._ctx_ptr(), n)
            self._tokens = other._tokens[:n]
            self.version += 1

    # ---- the transformer ---------------------------------------------------------------
    def _check(self, tokens, pos):
        """(int32 array, pos) checked before anything changes (the C core checks again)."""
        toks = _native._int32_array(tokens)
        if toks.size == 0:
            raise ValueError("forward needs at least one token")
        if isinstance(pos, bool) or not isinstance(pos, (int, np.integer)):
            raise TypeError(f"pos must be an int, not {type(pos).__name__}")
        pos = int(pos)
        if pos < 0:
            raise ValueError(f"position {pos} is negative")
        n = int(toks.size)
        if pos + n > self.n_ctx:
            raise ContextOverflowError(
                f"{n} tokens at position {pos} do not fit in the context of {self.n_ctx} tokens",
                n_prompt_tokens=pos + n, n_ctx=self.n_ctx)
        vocab = self.config.vocab_size
        lo, hi = int(toks.min()), int(toks.max())
        if lo < 0 or hi >= vocab:
            bad = lo if lo < 0 else hi
            raise ValueError(f"token id {bad} is outside the vocabulary [0, {vocab})")
        if self.config.is_recurrent:
            at = _native.context_rewind_point(self._ctx_ptr(), pos)
            if at != pos:  # Qwen3.5: never continue a state that holds tokens at or past pos
                raise InvalidArgumentError(
                    f"cannot run at position {pos}: the recurrent state holds {self.n_past} tokens "
                    f"and there is no checkpoint at {pos} (continue from rewind_point = {at})")
        return toks, pos

    def _record(self, toks, pos: int) -> None:
        """Positions pos.. now hold toks: the record keeps 0..pos-1 and, when it reached pos,
        grows by toks (a gap before pos leaves those positions unknown)."""
        del self._tokens[pos:]
        if len(self._tokens) == pos:
            self._tokens.extend(int(t) for t in toks)
        self.n_tokens_forwarded += len(toks)
        self.version += 1

    def forward(self, tokens: Sequence[int], pos: int = 0, all_logits: bool = False) -> np.ndarray:
        """Run tokens at positions pos.. and return float32 logits.

        Writes the KV cache at positions pos .. pos+len(tokens)-1 and attends to every earlier
        position. Returns (vocab_size,) logits of the last token, or (len(tokens), vocab_size)
        with all_logits=True. Raises ContextOverflowError / ValueError before any compute."""
        with self.lock:
            ctx = self._ctx_ptr()
            toks, pos = self._check(tokens, pos)
            del self._tokens[pos:]  # (a Ctrl-C after the C call must not over-claim)
            out = _native.forward(ctx, toks, pos, self.config.vocab_size, all_logits, self.n_ctx)
            self._record(toks, pos)
            return out

    def forward_trace(self, tokens: Sequence[int], pos: int = 0):
        """Like forward(all_logits=True), and also return the residual stream of every layer:
        (logits (n, V), hidden (n_layers + 2, n, dim)) with hidden[0] = embeddings,
        hidden[1 + l] = output of layer l, hidden[-1] = after the final norm."""
        with self.lock:
            ctx = self._ctx_ptr()
            toks, pos = self._check(tokens, pos)
            c = self.config
            del self._tokens[pos:]
            out = _native.forward(ctx, toks, pos, c.vocab_size, True, self.n_ctx, c.n_layers,
                                  c.dim, trace=True)
            self._record(toks, pos)
            return out

    # ---- inspection: attention and the logit lens (Model.attention has the docs) ----------
    def attention(self, tokens: Sequence[int], pos: int = 0, max_bytes: int = 4 << 30) -> np.ndarray:
        """The attention probabilities (n_layers, n_heads, n, pos + n) of a forward over tokens
        at positions pos.. (see Model.attention)."""
        return self._forward_attention(tokens, pos, max_bytes, trace=False)

    def forward_attention(self, tokens: Sequence[int], pos: int = 0, max_bytes: int = 4 << 30):
        """(logits, hidden, attention) of one forward (see Model.forward_attention)."""
        attn, logits, hidden = self._forward_attention(tokens, pos, max_bytes, trace=True)
        return logits, hidden, attn

    def _forward_attention(self, tokens, pos, max_bytes, trace):
        with self.lock:
            ctx = self._ctx_ptr()
            toks, pos = self._check(tokens, pos)
            c = self.config
            del self._tokens[pos:]
            out = _native.forward_attention(ctx, toks, pos, self.n_ctx, c.n_layers, c.n_heads,
                                            c.dim, c.vocab_size, trace=trace, max_bytes=max_bytes)
            self._record(toks, pos)
            return out

    def lm_head(self, hidden) -> np.ndarray:
        """logits = lm_head(norm(hidden)) (see Model.lm_head); the KV cache is not touched."""
        with self.lock:
            c = self.config
            return _native.lm_head(self._ctx_ptr(), hidden, c.dim, c.vocab_size)

    # ---- the model's tokenizer and template, so a session goes wherever a model goes ---
    @property
    def special_tokens(self):
        return self.model.special_tokens

    @property
    def chat_template(self):
        return self.model.chat_template

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def encode(self, text: str, special: bool = False) -> list:
        return self.model.encode(text, special=special)

    def decode(self, ids) -> str:
        return self.model.decode(ids)

    def token_to_bytes(self, token_id: int) -> bytes:
        return self.model.token_to_bytes(token_id)

    def stream_decoder(self):
        return self.model.stream_decoder()

    def apply_chat_template(self, messages, enable_thinking=None,
                            add_generation_prompt: bool = True, **kw) -> str:
        return self.model.apply_chat_template(messages, enable_thinking=enable_thinking,
                                              add_generation_prompt=add_generation_prompt, **kw)

    # ---- generation and inspection on this session ---------------------------------------
    def generate(self, prompt_or_tokens, max_tokens: int = 256, sampler=None, stop=None, **kw):
        """Yield text pieces; see qwen3c.generate.generate."""
        from .generate import generate
        return generate(self, prompt_or_tokens, max_tokens=max_tokens, sampler=sampler,
                        stop=stop, **kw)

    def top_k(self, tokens_or_text, k: int = 10, **kw):
        """The k most likely next tokens as [(id, text, prob), ...]; see qwen3c.introspect."""
        from .introspect import top_k
        return top_k(self, tokens_or_text, k=k, **kw)
