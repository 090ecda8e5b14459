"""The tokenizer of a loaded model: byte-level BPE computed in C, read from the GGUF.

    >>> m = qwen3c.Model("Qwen3-0.6B-Q8_0.gguf")
    >>> m.encode("Hello world")                  # -> [9707, 1879]
    >>> m.encode("<|im_start|>user", special=True)  # control tokens become their ids
    >>> m.decode([9707, 1879])                   # -> "Hello world"

`special=False` (the default) treats control tokens such as `<|im_start|>` typed by a user as
plain text, so user text cannot inject chat roles; USER_DEFINED added tokens (`<think>`,
`<tool_call>`, ...) are always recognized. This matches HF `tokenizers`: `special=True` is
`Tokenizer.encode(text, add_special_tokens=False)`, `special=False` the same with
`encode_special_tokens = True`.

Normalization. Qwen2/Qwen3's tokenizer.json declares NFC. HF applies it to each stretch of text
between added-token matches (the added tokens are matched on the raw text first). We do the
same here, in Python, before the text crosses into C (`unicodedata` is exact and fast; the C
core does no normalization and says which one it needs via qwen3c_tokenizer_normalizer).
Text that is already NFC -- nearly all text -- is passed through untouched. HF's NFC tables are
older than Python's for ~100 combining marks of Unicode 11-14 (see `nfc_like_hf`); we
reproduce HF's result. Consequently `decode(encode(s)) == nfc_like_hf(s)`, which is
`unicodedata.normalize("NFC", s)` except for those marks and for a combining mark right after an
added token such as `<think>` (it stays separate, exactly as in HF).

Decoding joins the tokens' raw bytes and decodes them as UTF-8, invalid bytes becoming U+FFFD.
`StreamDecoder` does the same incrementally: bytes of a token that end mid-character are held
back until the character is complete.
"""
from __future__ import annotations

import codecs
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable

from . import _native

__all__ = ["SpecialTokens", "StreamDecoder", "Tokenizer"]

# HF tokenizers' NFC (the unicode-normalization tables bundled in tokenizers 0.23) predates these
# code points (combining marks of Unicode 11-14, and U+11930, the second half of U+11938): it
# treats them as starters that neither reorder nor compose. Found by comparing both normalizers
# over every code point next to marks of low/high combining class, starters and Hangul jamo,
# and over every canonical decomposition. NFC of the text between them, done separately,
# reproduces HF exactly (checked with Python 3.11's unicodedata 14.0).
_HF_NFC_STARTERS = re.compile(
    "(["
    "\\u07fd\\u0898-\\u089f\\u08ca-\\u08d3\\u09fe\\u0c3c\\u0d3b\\u0d3c\\u0eba\\u1715"
    "\\u1abf-\\u1ace\\u1df6-\\u1dfa\\ua82c\\U00010d24-\\U00010d27\\U00010eab\\U00010eac"
    "\\U00010f46-\\U00010f50\\U00010f82-\\U00010f85\\U00011070\\U0001133b\\U0001145e"
    "\\U00011839\\U0001183a\\U00011930\\U0001193d\\U0001193e\\U00011943\\U000119e0\\U00011a34"
    "\\U00011a47\\U00011a99\\U00011d42\\U00011d44\\U00011d45\\U00011d97\\U00016ff0\\U00016ff1"
    "\\U0001e130-\\U0001e136\\U0001e2ae\\U0001e2ec-\\U0001e2ef"
    "])")


def nfc_like_hf(text: str) -> str:
    """NFC exactly as HF tokenizers' `normalizers.NFC` computes it."""
    if _HF_NFC_STARTERS.search(text) is None:
        return unicodedata.normalize("NFC", text)
    parts = _HF_NFC_STARTERS.split(text)  # odd indices are the separators themselves
    return "".join(p if i % 2 else unicodedata.normalize("NFC", p) for i, p in enumerate(parts))


@dataclass(frozen=True)
class SpecialTokens:
    """Special-token ids read from the GGUF (None when the file has no such token)."""

    eos: int | None        # tokenizer.ggml.eos_token_id (Qwen3: <|im_end|>)
    bos: int | None        # tokenizer.ggml.bos_token_id
    pad: int | None        # tokenizer.ggml.padding_token_id (Qwen3: <|endoftext|>)
    im_start: int | None   # <|im_start|>
    im_end: int | None     # <|im_end|>
    think: int | None      # <think>
    think_end: int | None  # </think>
    eog: tuple = ()        # every id that ends generation (eos, <|im_end|>, <|endoftext|>, ...)


class StreamDecoder:
    """Turns generated token ids into text as they come, without splitting a character.

    `feed(token_id)` returns the text that is complete so far (possibly ""), `flush()` whatever
    is left (an incomplete sequence at the very end becomes U+FFFD).
    """

    def __init__(self, tokenizer: "Tokenizer"):
        self._tok = tokenizer
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        return self._dec.decode(self._tok.token_to_bytes(token_id))

    def flush(self) -> str:
        text = self._dec.decode(b"", final=True)
        self._dec.reset()
        return text


def _check_id(token_id) -> int:
    if isinstance(token_id, bool) or not hasattr(token_id, "__index__"):
        raise TypeError(f"token id must be an int, not {type(token_id).__name__}")
    return token_id.__index__()


class Tokenizer:
    """The tokenizer of `owner`, an object whose `_ptr()` returns the live `qwen3c_model *`
    (and raises qwen3c.Qwen3cError once it is closed)."""

    def __init__(self, owner):
        self._owner = owner
        ptr = owner._ptr()
        if not _native.tok_has(ptr):
            from .errors import UnsupportedModelError
            raise UnsupportedModelError("this model file carries no tokenizer (tokenizer.ggml.*)")
        self.n_vocab, normalizer, added = _native.tok_info(ptr)
        self._nfc = normalizer == _native.NORM_NFC
        sp = _native.tok_special(ptr)
        self.special_tokens = SpecialTokens(
            eos=sp["eos"], bos=sp["bos"], pad=sp["pad"], im_start=sp["im_start"],
            im_end=sp["im_end"], think=sp["think"], think_end=sp["think_end"], eog=sp["eog"])
        self._bytes_cache: dict = {}
        # added tokens, for splitting before NFC: (text -> is control), longest first
        self._added = {}
        for tid in added:
            text = _native.tok_token_bytes(ptr, tid).decode("utf-8", "replace")
            self._added[text] = _native.tok_type(ptr, tid) == 3  # QWEN3C_TOKEN_CONTROL
        self._added_re = (re.compile("|".join(re.escape(t) for t in
                                              sorted(self._added, key=len, reverse=True)))
                          if self._added else None)

    # ---- encode ----------------------------------------------------------------------------
    def _normalize(self, text: str, special: bool) -> str:
        """NFC of each stretch between added-token matches (HF's order: match, then normalize)."""
        if not self._nfc or unicodedata.is_normalized("NFC", text):
            return text
        if self._added_re is None:
            return nfc_like_hf(text)
        parts, plain_from = [], 0
        for m in self._added_re.finditer(text):
            if self._added[m.group()] and not special:
                continue  # a control token typed as text: it is part of the stretch
            parts.append(nfc_like_hf(text[plain_from:m.start()]))
            parts.append(m.group())
            plain_from = m.end()
        parts.append(nfc_like_hf(text[plain_from:]))
        return "".join(parts)

    def encode(self, text: str, special: bool = False) -> list:
        """Token ids of `text`. special=True turns control-token strings into their ids."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        if not isinstance(special, bool):
            raise TypeError(f"special must be a bool, not {type(special).__name__}")
        try:
            data = self._normalize(text, special).encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"text is not valid Unicode: lone surrogate {text[e.start]!r} at "
                             f"index {e.start}") from None
        return _native.tok_encode(self._owner._ptr(), data, special)

    # ---- decode ----------------------------------------------------------------------------
    def token_to_bytes(self, token_id: int) -> bytes:
        """The raw bytes token `token_id` stands for (may be part of a UTF-8 character)."""
        token_id = _check_id(token_id)
        b = self._bytes_cache.get(token_id)
        self._owner._ptr()  # raises once the model is closed, cached or not
        if b is None:
            if not 0 <= token_id < self.n_vocab:
                raise ValueError(f"token id {token_id} is outside the vocabulary "
                                 f"[0, {self.n_vocab})")
            b = _native.tok_token_bytes(self._owner._ptr(), token_id)
            self._bytes_cache[token_id] = b
        return b

    def decode(self, ids: Iterable[int]) -> str:
        """The text of a sequence of ids (invalid UTF-8 becomes U+FFFD)."""
        if isinstance(ids, (str, bytes)):
            raise TypeError("ids must be a sequence of ints")
        if hasattr(ids, "tolist"):  # numpy arrays
            ids = ids.tolist()
        return b"".join(self.token_to_bytes(i) for i in ids).decode("utf-8", "replace")

    def stream_decoder(self) -> StreamDecoder:
        return StreamDecoder(self)

    def token_type(self, token_id: int) -> int:
        """QWEN3C_TOKEN_* of a token (1 normal, 3 control, 4 user-defined, 5 unused, ...)."""
        token_id = _check_id(token_id)
        if not 0 <= token_id < self.n_vocab:
            raise ValueError(f"token id {token_id} is outside the vocabulary [0, {self.n_vocab})")
        return _native.tok_type(self._owner._ptr(), token_id)

    def lookup(self, piece: str) -> int | None:
        """The id of a vocabulary entry by its stored spelling (e.g. "<|im_end|>"), or None."""
        if not isinstance(piece, str):
            raise TypeError(f"piece must be a str, not {type(piece).__name__}")
        return _native.tok_lookup(self._owner._ptr(), piece.encode("utf-8", "surrogatepass"))
