"""Chat: a conversation with a model, rendered with its chat template, streamed.

    chat = Chat(model, system="Be brief.", thinking=True, seed=0)
    chat.send("What is the capital of France?")        # -> "Paris."
    for piece in chat.stream("And of Japan?"):
        print(piece, end="")                            # piece.kind: "thinking" | "answer"
    chat.history                                        # [{"role": ..., "content": ...}, ...]

A Chat owns a session of its own (an independent KV cache, qwen3c.Session) unless it is given
one, so several chats on one model never disturb each other. Every turn re-renders the whole
conversation with the template and tokenizes it (scaffolding with special tokens, message text
without, see chat_template.encode_chat), then prefills only what the session's KV cache does
not already hold: everything up to the last assistant turn is reused.
(That turn itself is re-read: the template stores earlier answers without their thinking.)

Thinking (Qwen3): with thinking=True the model opens its answer with <think>...</think>; the
pieces inside are kind "thinking". thinking=False renders the empty think block the template
uses to switch thinking off. Inside a thinking conversation the soft switches of the model
card work: end a message with /no_think (or /think) and the model follows the latest one.
thinking=None (the default) leaves it to the template (Qwen3: on; Qwen3.5-0.8B / -2B: off).
Qwen3.5's template opens the <think> block itself, so the model's text starts inside it.
"""
from __future__ import annotations

import os
import sys

from .chat_template import encode_chat
from .errors import ContextOverflowError
from .generate import Generation
from .sampler import NON_THINKING, THINKING, Sampler

SAMPLING_KEYS = ("temperature", "top_k", "top_p", "min_p", "presence_penalty",
                 "frequency_penalty", "repetition_penalty", "penalty_last_n", "seed")
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


class Piece(str):
    """A piece of streamed text; .kind is "thinking" or "answer"."""

    kind: str

    def __new__(cls, text: str, kind: str):
        self = super().__new__(cls, text)
        self.kind = kind
        return self

    def __repr__(self):
        return f"Piece({str.__repr__(self)}, kind={self.kind!r})"


def split_thinking(raw: str):
    """(reasoning, answer) the way Qwen3's template reads an assistant message."""
    if THINK_CLOSE not in raw:
        return None, raw
    answer = raw.split(THINK_CLOSE)[-1].lstrip("\n")
    reasoning = raw.split(THINK_CLOSE)[0].rstrip("\n").split(THINK_OPEN)[-1].lstrip("\n")
    return reasoning, answer


class ThinkSplitter:
    """Labels streamed text: a leading <think>...</think> block is "thinking", the rest
    "answer". The tags are dropped, and so are the newlines that pad the block."""

    def __init__(self, in_think: bool = False):
        # in_think: the prompt already opened the block (Qwen3.5's template does)
        self.state = "thinking" if in_think else "start"   # start -> thinking -> after -> answer
        self.buf = ""
        self.fresh = True      # nothing of the thinking shown yet (skip its leading newlines)
        self.out = []

    def _think(self, text):
        if self.fresh:
            text = text.lstrip("\n")
            self.fresh = not text
        if text:
            self.out.append(Piece(text, "thinking"))

    def feed(self, text: str, final: bool = False) -> list:
        self.buf += text
        self.out = []
        while True:
            if self.state == "start":
                s = self.buf.lstrip()
                if s.startswith(THINK_OPEN):
                    self.buf, self.state = s[len(THINK_OPEN):], "thinking"
                elif THINK_OPEN.startswith(s) and not final:
                    break                       # could still become <think>
                else:
                    self.state = "answer"
            elif self.state == "thinking":
                i = self.buf.find(THINK_CLOSE)
                if i >= 0:
                    self._think(self.buf[:i].rstrip("\n"))
                    self.buf, self.state = self.buf[i + len(THINK_CLOSE):], "after"
                    continue
                if final:
                    self._think(self.buf)
                    self.buf = ""
                    break
                # hold back a possible start of </think>, and trailing newlines
                keep = next((n for n in range(min(len(THINK_CLOSE) - 1, len(self.buf)), 0, -1)
                             if self.buf.endswith(THINK_CLOSE[:n])), 0)
                body = self.buf[:len(self.buf) - keep].rstrip("\n")
                self._think(body)
                self.buf = self.buf[len(body):]
                break
            elif self.state == "after":
                s = self.buf.lstrip("\n")
                if not s:
                    self.buf = "" if final else self.buf
                    break
                self.buf, self.state = s, "answer"
            else:
                if self.buf:
                    self.out.append(Piece(self.buf, "answer"))
                self.buf = ""
                break
        return self.out


def prompt_thinking(model, tokens, enable_thinking=None) -> tuple:
    """(thinking, in_think) for a rendered chat prompt: whether the reply will think
    (enable_thinking, or when None the template's default, read off the prompt: a closed, empty
    think block after the last <|im_start|> means off) and whether the prompt already opened
    the think block (Qwen3.5's template does, so the reply starts inside it)."""
    sp = model.special_tokens
    tail = tokens
    if sp.im_start is not None and sp.im_start in tokens:
        tail = tokens[len(tokens) - 1 - tokens[::-1].index(sp.im_start):]
    closed = sp.think_end is not None and sp.think_end in tail
    in_think = sp.think is not None and sp.think in tail and not closed
    return (enable_thinking if enable_thinking is not None else not closed), in_think


def _soft_switch(messages, default: bool) -> bool:
    """The thinking mode the model will follow: the latest /think or /no_think in the user
    and system messages, else `default`."""
    for m in reversed(messages):
        if m["role"] not in ("user", "system"):
            continue
        c = m["content"]
        i, j = c.rfind("/think"), c.rfind("/no_think")
        if i >= 0 or j >= 0:
            return i > j
    return default


class Chat:
    """A conversation with `model`: a qwen3c.Model (the chat makes its own session on it, with
    the model's n_ctx and KV cache settings) or a qwen3c.Session (the chat uses that one).

    system: an optional system prompt. thinking: the template's enable_thinking (None: the
    template's default -- whether a turn thinks is then read off its prompt). multi_turn: keep the
    conversation (False: every message starts a fresh one). max_tokens: cap per answer (None:
    until the end-of-turn token or a full context). sampler: a qwen3c.Sampler; otherwise one
    is made from the sampling keywords (temperature, top_k, top_p, min_p, presence_penalty,
    frequency_penalty, repetition_penalty, penalty_last_n, seed) over Qwen3's recommended
    settings for the mode (thinking 0.6/20/0.95/0, non-thinking 0.7/20/0.8/0).
    on_token: f(token_id, logits) called for every sampled token (see --show-probs).
    """

    def __init__(self, model, system=None, thinking=None, multi_turn=True, *, max_tokens=None,
                 sampler=None, on_token=None, **sampling):
        if system is not None and not isinstance(system, str):
            raise TypeError("system must be a str or None")
        if (thinking is not None and not isinstance(thinking, bool)) or not isinstance(multi_turn, bool):
            raise TypeError("thinking must be True, False or None; multi_turn True or False")
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                       or max_tokens < 1):
            raise ValueError("max_tokens must be None or an int >= 1")
        unknown = set(sampling) - set(SAMPLING_KEYS)
        if unknown:
            raise TypeError(f"unknown Chat argument(s): {', '.join(sorted(unknown))}")
        if sampler is not None and not isinstance(sampler, Sampler):
            raise TypeError("sampler must be a qwen3c.Sampler")
        self.model = model
        #: the KV cache this conversation runs on
        self.session = model.session() if hasattr(model, "default_session") else model
        self.system = system
        self.thinking = thinking
        self.multi_turn = multi_turn
        self.max_tokens = max_tokens
        self.on_token = on_token
        self._sampling = dict(sampling)
        self._fixed_sampler = sampler
        self._samplers = {}
        if sampling.get("seed") is None:
            self._sampling["seed"] = int.from_bytes(os.urandom(8), "little")
        # validate the sampling settings now rather than on the first message
        self._sampler_for(thinking is not False)
        self.history: list = []
        self.last: Generation | None = None   # the last turn's Generation (stats, finish_reason)

    def _sampler_for(self, thinking: bool) -> Sampler:
        if self._fixed_sampler is not None:
            return self._fixed_sampler
        if thinking not in self._samplers:
            preset = THINKING if thinking else NON_THINKING
            self._samplers[thinking] = Sampler(**{**preset, **self._sampling})
        return self._samplers[thinking]

    def reset(self) -> None:
        """Forget the conversation (the system prompt stays)."""
        self.history = []

    def close(self) -> None:
        """Free the chat's own session (not one it was given). The chat cannot send after."""
        if self.session is not self.model:
            self.session.close()

    def messages(self, text=None) -> list:
        """The messages the next turn renders: system + history (+ the new user text)."""
        msgs = [{"role": "system", "content": self.system}] if self.system is not None else []
        msgs += self.history if self.multi_turn else []
        if text is not None:
            msgs.append({"role": "user", "content": text})
        return msgs

    def stream(self, text: str):
        """Send a user message; returns an iterator of Piece (kind "thinking" / "answer").

        Raises ContextOverflowError before any compute (conversation unchanged) when the
        rendered conversation does not fit the context."""
        if not isinstance(text, str):
            raise TypeError(f"the message must be a str, got {type(text).__name__}")
        msgs = self.messages(text)
        tokens = encode_chat(self.model, msgs, enable_thinking=self.thinking)
        n_ctx = self.session.config.n_ctx
        if len(tokens) >= n_ctx:
            raise ContextOverflowError(
                f"the conversation needs {len(tokens)} tokens but the context holds {n_ctx} "
                "(start a new conversation, or use a larger --ctx)", len(tokens), n_ctx)
        mode, in_think = prompt_thinking(self.model, tokens, self.thinking)
        thinking = mode and _soft_switch(msgs, True)
        budget = n_ctx - len(tokens)
        max_tokens = min(self.max_tokens or budget, budget)
        gen = Generation(self.session, tokens, max_tokens=max_tokens,
                         sampler=self._sampler_for(thinking), on_token=self.on_token)
        return self._turn(text, gen, in_think)

    def _turn(self, text, gen: Generation, in_think: bool = False):
        self.last = gen
        splitter = ThinkSplitter(in_think)
        try:
            for raw in gen:
                yield from splitter.feed(raw)
            yield from splitter.feed("", final=True)
        finally:
            # the turn enters the history even when cut short (Ctrl-C, max_tokens, close)
            if not self.multi_turn:
                self.history = []
            _, answer = split_thinking(gen.text if not in_think else THINK_OPEN + gen.text)
            self.history += [{"role": "user", "content": text},
                             {"role": "assistant", "content": answer}]

    def send(self, text: str) -> str:
        """Send a user message and return the answer (without the thinking)."""
        for _ in self.stream(text):
            pass
        return self.history[-1]["content"]


# ---- interactive terminal chat ----------------------------------------------------------------

def chat(model=None, system=None, thinking=None, multi_turn=True, **sampling) -> None:
    """An interactive chat in the terminal. model: a GGUF path, a HuggingFace repo id, or
    None for Qwen/Qwen3-0.6B-GGUF (Q8_0, fetched once with huggingface_hub). n_ctx (default
    4096), n_threads and kv_cache ("f32" or "f16") go to qwen3c.Model; max_tokens and the
    sampling keywords to Chat."""
    from .__main__ import interactive
    from .hub import resolve_model
    from .model import Model

    n_ctx = sampling.pop("n_ctx", 4096)
    n_threads = sampling.pop("n_threads", 0)
    kv_cache = sampling.pop("kv_cache", "f32")
    max_tokens = sampling.pop("max_tokens", None)
    path = resolve_model(model)
    with Model(path, n_ctx=n_ctx, n_threads=n_threads, kv_cache=kv_cache) as m:
        c = Chat(m, system=system, thinking=thinking, multi_turn=multi_turn,
                 max_tokens=max_tokens, **sampling)
        interactive(c, out=sys.stdout, err=sys.stderr)
