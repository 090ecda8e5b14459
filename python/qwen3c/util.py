"""Small helpers every module may use (this module imports nothing from qwen3c)."""
from __future__ import annotations


def plural(n: int, word: str, words: str | None = None) -> str:
    """'1 token', '2 tokens', '0 tokens' (words: the plural when it is not word + 's')."""
    return f"{n} {word if n == 1 else (words or word + 's')}"
