"""Generation: prefill a prompt, then sample and decode token by token.

    g = generate(model, "<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n",
                 max_tokens=100, sampler=Sampler(seed=0))
    for piece in g:          # complete UTF-8 text pieces, as they are produced
        print(piece, end="")
    g.finish_reason          # "stop" (end-of-generation token or stop string), "length"
                             # (max_tokens), "context" (the KV cache is full)

A generation runs on a session (qwen3c.Session: one KV cache; a Model means its default
session) and keeps the list of tokens it expects the cache to hold. A prompt that starts with
what the cache already contains only prefills the rest (multi-turn chat relies on it), and if
someone else ran tokens on the same session in between (another generator, a forward call),
the generation notices it from the session's record and re-runs what differs instead of
continuing on someone else's cache. Prefill runs in chunks of `chunk_size` tokens: a Ctrl-C
(KeyboardInterrupt) lands between two chunks within about a second, and the session's record
only ever claims positions whose forward pass completed, so the model stays usable.

Qwen3.5's Gated DeltaNet layers keep a recurrent state, which cannot be cut back to the common
prefix the way a KV cache can: the session's reusable_prefix resumes at a checkpoint at or
before it (Session.rewind_point), or 0. So prefill saves checkpoints where the next prompt is
likely to part from this one: before the last <|im_start|> (a chat template re-renders the last
assistant turn differently, e.g. without its thinking) and before the last prompt token (the
same prompt again).
"""
from __future__ import annotations

import numbers
import time

from .errors import ContextOverflowError
from .sampler import Sampler
from .session import common_prefix  # noqa: F401  (re-exported: qwen3c.generate.common_prefix)

FINISH_REASONS = ("stop", "length", "context")


# ---- which KV cache ----------------------------------------------------------------------------

def session_of(target):
    """The session a generation runs on: a Session itself, or a Model's default session."""
    return getattr(target, "default_session", target)


def cached_tokens(target) -> list:
    """The tokens the KV cache of a session (or a model's default session) holds."""
    return session_of(target).tokens


def forget_cache(target) -> None:
    """Forget what the KV cache holds (the next prompt is prefilled from position 0)."""
    session_of(target).reset()


def checkpoint_marks(session, prompt: list, start: int) -> set:
    """Positions in (start, len(prompt)) to checkpoint a recurrent state at while prefilling: the
    last <|im_start|> (the next turn re-renders what follows it) and len(prompt) - 1."""
    if not session.config.is_recurrent:
        return set()
    marks = {len(prompt) - 1}
    im_start = session.special_tokens.im_start
    if im_start is not None and im_start in prompt:
        marks.add(len(prompt) - 1 - prompt[::-1].index(im_start))
    return {m for m in marks if start < m < len(prompt)}


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


class TextAssembler:
    """Generated token ids -> complete UTF-8 text pieces, cut at the first stop string.

    feed(tok) returns the text that can be handed out now ("" while a multi-byte character
    or a possible start of a stop string is held back); .stopped turns True when a stop
    string appeared (the text ends before it). flush() returns what is left at the end.
    Shared by Generation and the server's scheduler."""

    def __init__(self, model, stop=()):
        self.decoder = model.stream_decoder()
        self.stop = tuple(stop)
        self.pending = ""       # decoded text not yet handed out (it may start a stop string)
        self.stopped = False

    def feed(self, tok: int) -> str:
        if self.stopped:
            return ""
        self.pending += self.decoder.feed(tok)
        if self.stop:
            hit = min((i for i in (self.pending.find(s) for s in self.stop) if i >= 0),
                      default=-1)
            if hit >= 0:
                self.pending, self.stopped = self.pending[:hit], True
                out, self.pending = self.pending, ""
                return out
            n = len(self.pending) - _held_back(self.pending, self.stop)
        else:
            n = len(self.pending)
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def flush(self) -> str:
        """The rest (after a stop string, what followed it is dropped)."""
        if not self.stopped:
            self.pending += self.decoder.flush()
        out, self.pending = self.pending, ""
        return out


# ---- the generation ----------------------------------------------------------------------------

class Generation:
    """An iterator of text pieces, with what happened recorded on it.

    Attributes (filled as it runs):
      prompt_tokens, tokens (generated ids, without the end-of-generation id), text,
      finish_reason ("stop" | "length" | "context"; "interrupted" after a KeyboardInterrupt;
      None while running), stop_token (the eog id that ended it, or None), n_cached (prompt
      tokens found in the KV cache), n_prefilled, n_forwarded (all tokens it ran, including
      re-runs after another user of the session overwrote its cache), session, and timings:
      t_prefill, t_decode, time_to_first_token (seconds).
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
        self.session = session_of(model)
        self.prompt_tokens = _prompt_tokens(model, prompt_or_tokens)
        self.n_ctx = self.session.config.n_ctx
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
        self.n_forwarded = 0      # tokens this generation ran (prefill, re-runs, decode)
        self._version = None      # the session's version after our last forward
        self._marks = set()       # prompt positions to checkpoint a recurrent state at
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

    def _run_tokens(self, want: list, pos: int):
        """Make the session hold want[:len(want)] by running want[pos:] (in chunks), and
        return the last token's logits. If someone else ran tokens on the session since our
        last forward, first fall back to what of `want` its cache still holds."""
        s = self.session
        with s.lock:
            if s.version != self._version:
                pos = min(pos, s.reusable_prefix(want))
            logits = None
            while pos < len(want):
                end = min([pos + self.chunk_size] + [m for m in self._marks if m > pos])
                chunk = want[pos:end]
                logits = s.forward(chunk, pos=pos)
                pos += len(chunk)
                self.n_forwarded += len(chunk)
                if pos in self._marks:
                    s.checkpoint()
            self._version = s.version
        return logits

    def _steps(self):
        s, prompt = self.session, self.prompt_tokens
        t0 = time.perf_counter()

        # ---- prefill: only what the cache does not hold yet; always at least the last
        # token, whose logits we need
        with s.lock:
            pos = s.reusable_prefix(prompt) if self.reuse_cache else 0
            self._version = s.version
            self.n_cached = pos
            want = list(prompt)   # what the cache must hold: the prompt, then each fed token
            self._marks = checkpoint_marks(s, prompt, pos)
            logits = self._run_tokens(want, pos)
            self._marks = set()
            self.n_prefilled = self.n_forwarded
        t1 = time.perf_counter()
        self.t_prefill = t1 - t0

        # ---- decode
        self.sampler.reset()
        text = TextAssembler(self.model, self.stop)
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
            piece = text.feed(tok)
            if piece:
                self.text += piece
                yield piece
            if text.stopped:
                self.finish_reason = "stop"
                break
            if len(self.tokens) >= self.max_tokens:
                self.finish_reason = "length"
                break
            if len(want) >= self.n_ctx:
                self.finish_reason = "context"
                break
            want.append(tok)
            logits = self._run_tokens(want, len(want) - 1)
        self.t_decode = time.perf_counter() - t1
        rest = text.flush()
        if rest:
            self.text += rest
            yield rest

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
    """Generate text after a prompt (str, encoded with special tokens on, or token ids), on
    `model`'s default session or on a qwen3c.Session.

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
