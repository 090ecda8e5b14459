"""Token labels a person can read: in tables, plots and the explain page.

A token's text may be a space, a newline, a piece of a multi-byte character, or an invisible
control character; printed as is, it vanishes or breaks a table row. `token_label` makes every
token one visible line:

    " Paris"  -> "␣Paris"      (a leading space is part of the token: shown)
    "\\n\\n"  -> "↵↵"           "\\t" -> "⇥"
    "\\xe4"   -> "\\xe4"         (a byte that is not UTF-8 on its own, as introspect.token_text
                                shows it)
    "\\x00"   -> "\\x00"         other control / format / unassigned characters as escapes
    None     -> "#1234"         (a model without a tokenizer: the id)

Plots additionally replace characters their font cannot draw (qwen3c.plots).
"""
from __future__ import annotations

import unicodedata
from typing import Optional

__all__ = ["token_label", "VISIBLE"]

#: what whitespace becomes
VISIBLE = {" ": "\u2423", "\n": "\u21b5", "\r": "\u240d", "\t": "\u21e5", "\u00a0": "\u237d",
           "\u3000": "\u2423\u2423"}


def _escape(ch: str) -> str:
    o = ord(ch)
    return f"\\x{o:02x}" if o < 0x100 else (f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")


def token_label(text: Optional[str], token_id: Optional[int] = None, max_len: int = 0) -> str:
    """One visible line for a token's text (see the module docstring). max_len > 0 shortens
    longer labels to max_len characters ending in '…'."""
    if text is None:
        return f"#{token_id}" if token_id is not None else "?"
    out = []
    for ch in text:
        if ch in VISIBLE:
            out.append(VISIBLE[ch])
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"):
            out.append(_escape(ch))  # invisible or undrawable: controls, format, other spaces
        else:
            out.append(ch)
    label = "".join(out) or "\u2205"  # an empty token (should not happen): the empty-set sign
    if max_len > 0 and len(label) > max_len:
        label = label[:max_len - 1] + "\u2026"
    return label
