"""Generation: prefill a prompt, then sample and decode token by token.

    g = generate(model, "<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n",
                 max_tokens=100, sampler=Sampler(seed=0))
    for piece in g:          # complete UTF-8 text pieces, as they are produced
        print(piece, end="")
    g.finish_reason          # "stop" (end-of-generation token or stop string), "length"
                             # (max_tokens), "context" (the KV cache is full)

The model has one KV cache. This module remembers, per model, which tokens it holds (positions
0..n-1), so a prompt that starts with what the cache already contains only prefills the rest
(multi-turn chat relies on it). Prefill runs in chunks of `chunk_size` tokens: a Ctrl-C
(KeyboardInterrupt) lands between two chunks within about a second, and the record only ever
claims positions whose forward pass completed, so the model stays usable.

Qwen3.5's Gated DeltaNet layers keep a recurrent state, which cannot be cut back to the common
prefix the way a KV cache can. Prefill resumes at model.restart_pos(prefix) instead -- a
checkpoint at or before it, or 0 -- and saves checkpoints where the next prompt is likely to
part from this one: before the last <|im_start|> (a chat template re-renders the last
assistant turn differently, e.g. without its thinking) and before the last prompt token
(the same prompt again).
"""
from __future__ import annotations

import numbers
import time
import weakref

import numpy as np

from .errors import ContextOverflowError
from .sampler import Sampler

FINISH_REASONS = ("stop", "length", "context")


# ---- what the KV cache holds ---------------------------------------------------------------

class _KVRecord:
    """The tokens whose keys/values sit in the cache. Valid while nobody else has run
    forward() on the model since (checked with model.n_tokens_forwarded)."""

    __slots__ = ("tokens", "stamp", "pending")

    def __init__(self):
        self.tokens: list = []
        self.stamp = 0            # model.n_tokens_forwarded when `tokens` was last right
        self.pending = None       # (tokens, stamp after) of a forward that may have completed


_records: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _record(model) -> _KVRecord:
    rec = _records.get(model)
    if rec is None:
        rec = _records[model] = _KVRecord()
        rec.stamp = model.n_tokens_forwarded
    now = model.n_tokens_forwarded
    if rec.pending is not None:
        # a forward of ours was interrupted (Ctrl-C) after C returned or before it started
        toks, after = rec.pending
        rec.pending = None
        if now == after:
            rec.tokens.extend(toks)
            rec.stamp = now
    if rec.stamp != now:  # someone else used the cache: trust nothing
        rec.tokens = []
        rec.stamp = now
    return rec


def cached_tokens(model) -> list:
    """The tokens the model's KV cache currently holds, as far as generation knows."""
    return list(_record(model).tokens)


def forget_cache(model) -> None:
    """Forget what the KV cache holds (the next prompt is prefilled from position 0)."""
    _record(model).tokens = []


def _forward(model, rec: _KVRecord, tokens: list, pos: int) -> np.ndarray:
    del rec.tokens[pos:]
    rec.pending = (tokens, model.n_tokens_forwarded + len(tokens))
    logits = model.forward(tokens, pos=pos)
    rec.pending = None
    rec.tokens.extend(tokens)
    rec.stamp = model.n_tokens_forwarded
    return logits


def _checkpoint_marks(model, prompt: list, start: int) -> set:
    """Positions in (start, len(prompt)) to checkpoint a recurrent state at while prefilling: the
    last <|im_start|> (the next turn re-renders what follows it) and len(prompt) - 1."""
    if not model.config.is_recurrent:
        return set()
    marks = {len(prompt) - 1}
    im_start = model.special_tokens.im_start
    if im_start is not None and im_start in prompt:
        marks.add(len(prompt) - 1 - prompt[::-1].index(im_start))
    return {m for m in marks if start < m < len(prompt)}


def common_prefix(a, b) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


# ---- argument checks -------------------------------------------------------------------------

def _prompt_tokens(model, prompt_or_tokens) -> list:
    if isinstance(prompt_or_tokens, str):
        if not prompt_or_tokens:
            raise ValueError("the prompt is empty")
        # a string prompt is usually a rendered chat template: its <|im_start|> are meant
        return list(model.encode(prompt_or_tokens, special=True))
    if isinstance(prompt_or_tokens, (bytes, bytearray)):
        raise TypeError("the prompt must be str or a sequence of token ids, not bytes")
    try:
        toks = [t for t in prompt_or_tokens]
    except TypeError:
        raise TypeError("the prompt must be str or a sequence of token ids, not "
                        f"{type(prompt_or_tokens).__name__}") from None
    vocab = model.config.vocab_size
    for t in toks:
        if isinstance(t, bool) or not isinstance(t, numbers.Integral):
            raise TypeError(f"token ids must be ints, got {type(t).__name__}")
        if not 0 <= t < vocab:
            raise ValueError(f"token id {t} outside the vocabulary [0, {vocab})")
    if not toks:
        raise ValueError("the prompt is empty")
    return [int(t) for t in toks]


def _stop_strings(stop) -> tuple:
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = (stop,)
    stop = tuple(stop)
    for s in stop:
        if not isinstance(s, str):
            raise TypeError(f"stop strings must be str, got {type(s).__name__}")
        if not s:
            raise ValueError("a stop string is empty")
    return stop


def _held_back(text: str, stops: tuple) -> int:
    """How many trailing characters of text could be the start of a stop string."""
    keep = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), keep, -1):
            if text.endswith(s[:n]):
                keep = n
                break
    return keep


# ---- the generation ----------------------------------------------------------------------------

class Generation:
    """An iterator of text pieces, with what happened recorded on it.

    Attributes (filled as it runs):
      prompt_tokens, tokens (generated ids, without the end-of-generation id), text,
      finish_reason ("stop" | "length" | "context"; "interrupted" after a KeyboardInterrupt;
      None while running), stop_token (the eog id that ended it, or None), n_cached (prompt
      tokens found in the KV cache), n_prefilled, and timings: t_prefill, t_decode,
      time_to_first_token (seconds).
    """

    def __init__(self, model, prompt_or_tokens, max_tokens=256, sampler=None, stop=None, *,
                 reuse_cache=True, chunk_size=64, on_token=None):
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, numbers.Integral):
            raise TypeError("max_tokens must be an int")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) \
                or chunk_size < 1:
            raise ValueError("chunk_size must be an int >= 1")
        if sampler is None:
            sampler = Sampler()
        elif not isinstance(sampler, Sampler):
            raise TypeError(f"sampler must be a qwen3c.Sampler, got {type(sampler).__name__}")
        if on_token is not None and not callable(on_token):
            raise TypeError("on_token must be callable")
        self.model = model
        self.prompt_tokens = _prompt_tokens(model, prompt_or_tokens)
        self.n_ctx = model.config.n_ctx
        if len(self.prompt_tokens) > self.n_ctx:
            raise ContextOverflowError(
                f"the prompt has {len(self.prompt_tokens)} tokens but the context holds "
                f"{self.n_ctx}", len(self.prompt_tokens), self.n_ctx)
        self.max_tokens = int(max_tokens)
        self.sampler = sampler
        self.stop = _stop_strings(stop)
        self.reuse_cache = bool(reuse_cache)
        self.chunk_size = int(chunk_size)
        self.on_token = on_token
        self.eog = frozenset(model.special_tokens.eog or ())
        self.tokens: list = []
        self.text = ""
        self.finish_reason = None
        self.stop_token = None
        self.n_cached = 0
        self.n_prefilled = 0
        self.t_prefill = 0.0
        self.t_decode = 0.0
        self.time_to_first_token = None
        self._it = self._run()

    def __iter__(self):
        return self

    def __next__(self) -> str:
        return next(self._it)

    def close(self) -> None:
        self._it.close()

    def __repr__(self):
        return (f"<Generation {len(self.tokens)} tokens, finish_reason="
                f"{self.finish_reason!r}>")

    @property
    def n_prompt_tokens(self) -> int:
        return len(self.prompt_tokens)

    def _run(self):
        try:
            yield from self._steps()
        except KeyboardInterrupt:
            self.finish_reason = "interrupted"
            raise

    def _steps(self):
        model, prompt = self.model, self.prompt_tokens
        rec = _record(model)
        t0 = time.perf_counter()

        # ---- prefill: only what the cache does not hold yet; always at least the last
        # token, whose logits we need. A recurrent state restarts at a checkpoint (or 0).
        pos = min(common_prefix(rec.tokens, prompt), len(prompt) - 1) if self.reuse_cache else 0
        if model.config.is_recurrent:
            pos = model.restart_pos(pos)
        self.n_cached = pos
        marks = _checkpoint_marks(model, prompt, pos)
        logits = None
        while pos < len(prompt):
            end = min([pos + self.chunk_size] + [m for m in marks if m > pos])
            chunk = prompt[pos:end]
            logits = _forward(model, rec, chunk, pos)
            pos += len(chunk)
            self.n_prefilled += len(chunk)
            if pos in marks:
                model.checkpoint()
        t1 = time.perf_counter()
        self.t_prefill = t1 - t0

        # ---- decode
        self.sampler.reset()
        decoder = model.stream_decoder()
        pending = ""  # decoded text not yet handed out (it may start a stop string)
        while True:
            tok = self.sampler.sample(logits)
            if self.time_to_first_token is None:
                self.time_to_first_token = time.perf_counter() - t0
            if self.on_token is not None:
                self.on_token(tok, logits)
            if tok in self.eog:
                self.finish_reason, self.stop_token = "stop", tok
                break
            self.tokens.append(tok)
            pending += decoder.feed(tok)
            if self.stop:
                hit = min((i for i in (pending.find(s) for s in self.stop) if i >= 0),
                          default=-1)
                if hit >= 0:
                    pending = pending[:hit]
                    self.finish_reason = "stop"
                    break
                out_n = len(pending) - _held_back(pending, self.stop)
            else:
                out_n = len(pending)
            if out_n > 0:
                piece, pending = pending[:out_n], pending[out_n:]
                self.text += piece
                yield piece
            if len(self.tokens) >= self.max_tokens:
                self.finish_reason = "length"
                break
            if pos >= self.n_ctx:
                self.finish_reason = "context"
                break
            logits = _forward(model, rec, [tok], pos)
            pos += 1
        self.t_decode = time.perf_counter() - t1
        if not (self.finish_reason == "stop" and self.stop_token is None):
            pending += decoder.flush()    # (after a stop string, what follows it is dropped)
        if pending:
            self.text += pending
            yield pending

    def stats(self) -> dict:
        """Counts and speeds, for --verbose and benchmarks."""
        n_gen = len(self.tokens) + (self.stop_token is not None)
        return dict(
            n_prompt_tokens=len(self.prompt_tokens), n_cached=self.n_cached,
            n_prefilled=self.n_prefilled, n_generated=n_gen,
            prefill_tok_s=self.n_prefilled / self.t_prefill if self.t_prefill > 0 else None,
            decode_tok_s=(n_gen - 1) / self.t_decode if self.t_decode > 0 and n_gen > 1 else None,
            time_to_first_token=self.time_to_first_token, finish_reason=self.finish_reason)


def generate(model, prompt_or_tokens, max_tokens=256, sampler=None, stop=None, **kw) -> Generation:
    """Generate text after a prompt (str, encoded with special tokens on, or token ids).

    Returns a Generation: iterate it for the text pieces; `.finish_reason` says why it ended.
    sampler: a qwen3c.Sampler (default: Qwen3's thinking-mode settings, random seed); its
    history is reset first, so penalties apply to the tokens generated here. stop: a string or
    strings that end the generation (not included in the text). Keywords: reuse_cache=True
    (skip the prompt prefix the KV cache already holds), chunk_size=64 (prefill chunk),
    on_token=f(token_id, logits) called for every sampled token.
    Raises ContextOverflowError (before any compute) when the prompt exceeds n_ctx.
    """
    return Generation(model, prompt_or_tokens, max_tokens=max_tokens, sampler=sampler,
                      stop=stop, **kw)
