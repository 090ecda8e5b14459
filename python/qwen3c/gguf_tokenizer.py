"""Write a HuggingFace byte-level BPE tokenizer into a GGUF, under llama.cpp's standard keys.

    add_tokenizer_metadata(writer, hf_dir, vocab_size=151936)

reads `tokenizer.json` (vocabulary, merges, added tokens, pre-tokenizer) and
`tokenizer_config.json` (eos/pad/bos tokens, add_bos_token, chat_template) and writes:

    tokenizer.ggml.model        "gpt2" (byte-level BPE)
    tokenizer.ggml.pre          "qwen2" | "qwen35" | "smollm" | "gpt-2", recognized from the
                                pre-tokenizer
    tokenizer.ggml.tokens       every token by id, in the byte-level spelling; ids without a
                                token (the tail up to vocab_size) are "[PAD{id}]"
    tokenizer.ggml.token_type   NORMAL, CONTROL (added + special), USER_DEFINED (added, not
                                special), UNUSED (padding)
    tokenizer.ggml.merges       "left right" strings, in rank order
    tokenizer.ggml.{eos,padding,bos}_token_id, tokenizer.ggml.add_bos_token,
    tokenizer.chat_template

The same keys llama.cpp's converter writes, so both qwen3c and llama.cpp load the file.
"""
from __future__ import annotations

import json
from pathlib import Path

import gguf

__all__ = ["add_tokenizer_metadata", "detect_pre_tokenizer"]

QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# Qwen3.5 (transformers' Qwen3_5Tokenizer): combining marks (\p{M}) count with the letters
QWEN35_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
                r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def detect_pre_tokenizer(pre: dict | None) -> str:
    """llama.cpp's name (tokenizer.ggml.pre) of a tokenizer.json pre_tokenizer, or ValueError."""
    if not pre:
        raise ValueError("tokenizer.json has no pre_tokenizer: not a byte-level BPE tokenizer")
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["Split", "ByteLevel"]:
        regex = steps[0].get("pattern", {}).get("Regex")
        if regex == QWEN2_SPLIT and not steps[1].get("use_regex", True):
            return "qwen2"
        if regex == QWEN35_SPLIT and not steps[1].get("use_regex", True):
            return "qwen35"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") \
            and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    raise ValueError(f"unsupported pre-tokenizer in tokenizer.json: {json.dumps(pre)[:200]}")


def _token_id(name, by_content: dict) -> int | None:
    if isinstance(name, dict):  # {"content": ..., "__type": "AddedToken"}
        name = name.get("content")
    return by_content.get(name) if name else None


def add_tokenizer_metadata(writer: gguf.GGUFWriter, hf_dir, vocab_size: int | None = None) -> bool:
    """Add the tokenizer of HF directory `hf_dir` to `writer`. Returns False (writing nothing)
    when the directory has no tokenizer.json. `vocab_size` (the model's embedding rows) pads the
    token list; it must not be smaller than the tokenizer's highest id + 1."""
    hf_dir = Path(hf_dir)
    tj_path = hf_dir / "tokenizer.json"
    if not tj_path.is_file():
        return False
    tj = json.loads(tj_path.read_text(encoding="utf-8"))
    cfg_path = hf_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}

    model = tj.get("model") or {}
    if model.get("type") != "BPE":
        raise ValueError(f"tokenizer.json model is {model.get('type')!r}, only byte-level BPE is supported")
    pre = detect_pre_tokenizer(tj.get("pre_tokenizer"))

    by_id: dict = {}
    for text, tid in model["vocab"].items():
        by_id[tid] = text
    types: dict = {tid: gguf.TokenType.NORMAL for tid in by_id}
    for a in tj.get("added_tokens", []):
        by_id[a["id"]] = a["content"]
        types[a["id"]] = gguf.TokenType.CONTROL if a.get("special") else gguf.TokenType.USER_DEFINED
    n = max(by_id) + 1
    if vocab_size is None:
        vocab_size = n
    if vocab_size < n:
        raise ValueError(f"vocab_size {vocab_size} is smaller than the tokenizer's {n} tokens")
    tokens, token_types = [], []
    for i in range(vocab_size):
        if i in by_id:
            tokens.append(by_id[i])
            token_types.append(types[i])
        else:
            tokens.append(f"[PAD{i}]")
            token_types.append(gguf.TokenType.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(merges)

    by_content = {t: i for i, t in enumerate(tokens)}
    eos = _token_id(cfg.get("eos_token"), by_content)
    pad = _token_id(cfg.get("pad_token"), by_content)
    bos = _token_id(cfg.get("bos_token"), by_content)
    if bos is None:  # llama.cpp's Qwen2 vocab: <|endoftext|> doubles as BOS (never added)
        bos = by_content.get("<|endoftext|>")
    if eos is not None:
        writer.add_eos_token_id(eos)
    if pad is not None:
        writer.add_pad_token_id(pad)
    if bos is not None:
        writer.add_bos_token_id(bos)
    writer.add_add_bos_token(bool(cfg.get("add_bos_token", False)))
    template = cfg.get("chat_template")
    if template is None and (hf_dir / "chat_template.jinja").is_file():
        template = (hf_dir / "chat_template.jinja").read_text(encoding="utf-8")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template}
        template = named.get("default") or next(iter(named.values()), None)
    if template:
        writer.add_chat_template(template)
    return True
