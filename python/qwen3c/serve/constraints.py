"""Constrained decoding for `qwen3c serve`: JSON output and tool calls that always parse.

llguidance (the grammar engine llama.cpp uses) computes, before every token, the set of tokens
that keep the output inside a grammar; the sampler then picks among those only (the mask goes
to the C sampler, Sampler.sample(logits, allowed)). Grammars:

    json_grammar(schema)          response_format json_schema (json_object: {"type": "object"})
    tool_call_grammar(tools, n)   tool_choice "required" (one or more calls) or a named
                                  function (exactly one): Qwen3's / Hermes'
                                  <tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>

A thinking model (Qwen3) first writes <think>...</think>: the grammar starts after it
(Constraint waits while the output is inside a think block that it opened with its first
token), so the model can think freely and then must answer in the grammar.

The llguidance tokenizer is built once per model from qwen3c's own vocabulary (token_bytes):
control tokens, and added tokens written like tags (<think>, <tool_call>), are marked special,
as llguidance's llama.cpp binding marks them, so grammars name them as <tool_call>.
"""
from __future__ import annotations

import json
import threading
import weakref

import numpy as np

from .. import _native
from ..errors import Qwen3cError

_TOKENIZERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


class GrammarError(Qwen3cError, ValueError):
    """A schema or grammar that llguidance cannot compile (a bad request)."""


def _llguidance():
    import llguidance  # the `server` extra
    return llguidance


class _Vocab:
    """What llguidance.TokenizerWrapper reads: the token bytes, the eos id, a tokenize call."""

    def __init__(self, model):
        self._model = model
        sp = model.special_tokens
        self.eos_token_id = sp.im_end if sp.im_end is not None else sp.eos
        self.bos_token_id = None
        tokens = []
        ptr = model._ptr()
        for i in range(model.config.vocab_size):
            try:
                b = model.token_to_bytes(i)
            except ValueError:     # embedding rows past the tokenizer's vocabulary
                b = b""
            t = _native.tok_type(ptr, i)
            if t == _native.lib.QWEN3C_TOKEN_CONTROL or (
                    t == _native.lib.QWEN3C_TOKEN_USER_DEFINED and b[:1] == b"<" and b[-1:] == b">"):
                b = b"\xff" + b
            tokens.append(b)
        self.tokens = tokens
        self.special_token_ids = [i for i, b in enumerate(tokens) if b[:1] == b"\xff"]

    def __call__(self, text):
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return self._model.encode(text, special=False)


def tokenizer_for(model):
    """The llguidance LLTokenizer of a model (built once: ~1 s for a 152K vocabulary)."""
    with _LOCK:
        tok = _TOKENIZERS.get(model)
        if tok is None:
            llg = _llguidance()
            tok = llg.LLTokenizer(llg.TokenizerWrapper(_Vocab(model)))
            _TOKENIZERS[model] = tok
        return tok


#: JSON as Qwen3 writes it, {"a": 1, "b": [2, 3]}: no other whitespace (llguidance's default
#: lets a weak model pad the output with newlines until max_tokens)
JSON_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def json_grammar(schema: dict) -> str:
    """A grammar for one JSON value valid under `schema` (separators as JSON_STYLE)."""
    llg = _llguidance()
    try:
        return llg.LLMatcher.grammar_from_json_schema(schema, overrides=JSON_STYLE)
    except ValueError as e:
        raise GrammarError(f"the JSON schema cannot be used: {e}") from None


def tool_call_grammar(tools: list, at_least_one: bool = True, only_one: bool = False) -> str:
    """A grammar for tool calls in Qwen3's format: <tool_call>, a newline, {"name": NAME,
    "arguments": ARGS} with ARGS valid under that function's parameters schema, a newline,
    </tool_call>; several calls are separated by a newline. tools: OpenAI tool dicts."""
    variants = []
    for t in tools:
        f = t["function"]
        params = f.get("parameters") or {"type": "object", "properties": {}}
        variants.append({"type": "object", "properties": {"name": {"const": f["name"]},
                                                          "arguments": params},
                         "required": ["name", "arguments"], "additionalProperties": False})
    schema = dict(variants[0]) if len(variants) == 1 else {"anyOf": variants}
    schema["x-guidance"] = JSON_STYLE
    body = json.dumps(schema, ensure_ascii=False)
    repeat = "" if only_one else ' ("\\n" call)*'
    lark = (f'start: call{repeat}\n'
            'call: <tool_call> "\\n" body "\\n" </tool_call>\n'
            f'body: %json {body}\n')
    return _llguidance().LLMatcher.grammar_from_lark(lark)


class Constraint:
    """A grammar the output must follow from its start -- or, when the first token opens a
    think block (think_open), from the token after the block's close (think_close) and the
    newlines after it; in_think: the prompt opened the block (Qwen3.5), so the output starts
    inside it. mask() and accept(token) are what the scheduler calls per token."""

    def __init__(self, model, grammar: str, think_open=None, think_close=None, in_think=False):
        llg = _llguidance()
        tok = tokenizer_for(model)
        err = llg.LLMatcher.validate_grammar(grammar, tok)
        if err and not err.startswith("WARNING"):
            raise GrammarError(f"the grammar cannot be used: {err}")
        self.matcher = llg.LLMatcher(tok, grammar, log_level=0)
        if self.matcher.is_error():
            raise GrammarError(f"the grammar cannot be used: {self.matcher.get_error()}")
        self.n_vocab = model.config.vocab_size
        self._words = np.full((self.n_vocab + 31) // 32, -1, dtype=np.int32)
        self._free = None if think_open is None else "thinking" if in_think else "start"
        # start -> thinking -> after -> done
        self._think_open, self._think_close = think_open, think_close
        self._newlines = set()
        if think_close is not None:
            self._newlines = {i for i in model.encode("\n\n") + model.encode("\n")}

    def mask(self):
        """The allowed-token bitmask for the next token (int32 words), or None (anything):
        the grammar's tokens, plus <think> as the first token and blank lines after </think>."""
        if self._free == "thinking":
            return None
        self.matcher.unsafe_compute_mask_ptr(self._words.ctypes.data, self._words.nbytes)
        if self.matcher.is_error():
            raise GrammarError(f"constrained decoding failed: {self.matcher.get_error()}")
        extra = {"start": (self._think_open,), "after": self._newlines}.get(self._free, ())
        bits = self._words.view(np.uint32)
        for t in extra:
            bits[t >> 5] |= np.uint32(1 << (t & 31))
        return self._words

    def accept(self, token: int) -> None:
        if self._free == "start":
            self._free = "done"
            if token == self._think_open:
                self._free = "thinking"
                return
        elif self._free == "thinking":
            if token == self._think_close:
                self._free = "after"
            return
        elif self._free == "after":       # the blank lines after </think>
            if token in self._newlines:
                return
            self._free = "done"
        if not self.matcher.consume_token(token):
            raise GrammarError(f"constrained decoding failed: {self.matcher.get_error()}")
