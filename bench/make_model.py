"""Write a Qwen3-0.6B-shaped GGUF with random weights, for benchmarks and the big-model test.

    python bench/make_model.py out.gguf [--type q8_0|q4_0|bf16|f32] [--seed 0] [--tokenizer DIR]

The shape is Qwen3-0.6B's (28 layers, dim 1024, hidden 3072, 16 heads, 8 kv heads, head_dim
128, vocab 151936, tied embeddings, rope theta 1e6). Weights are random but realistic in scale
(~N(0, 0.02)-like, norms = 1) so activations stay finite through all 28 layers.

Quantized files are generated directly as random valid blocks (random int8 / 4-bit quants and
small f16 scales) instead of quantizing 600M floats, so a Q8_0 file takes a few seconds.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

QWEN3_0_6B = dict(
    n_layers=28, dim=1024, hidden_dim=3072, n_heads=16, n_kv_heads=8, head_dim=128,
    vocab_size=151936, context_length=40960, rope_theta=1_000_000.0, norm_eps=1e-6,
)

WEIGHT_STD = 0.02  # target standard deviation of every weight matrix


def _tensor_shapes(cfg):
    """(name, (rows, cols)) of every matrix and (name, (n,)) of every norm, in file order."""
    d, h, hd = cfg["dim"], cfg["hidden_dim"], cfg["head_dim"]
    nh, nkv, v = cfg["n_heads"], cfg["n_kv_heads"], cfg["vocab_size"]
    out = [("token_embd.weight", (v, d))]
    for i in range(cfg["n_layers"]):
        p = f"blk.{i}."
        out += [
            (p + "attn_norm.weight", (d,)),
            (p + "attn_q.weight", (nh * hd, d)),
            (p + "attn_k.weight", (nkv * hd, d)),
            (p + "attn_v.weight", (nkv * hd, d)),
            (p + "attn_output.weight", (d, nh * hd)),
            (p + "attn_q_norm.weight", (hd,)),
            (p + "attn_k_norm.weight", (hd,)),
            (p + "ffn_norm.weight", (d,)),
            (p + "ffn_gate.weight", (h, d)),
            (p + "ffn_up.weight", (h, d)),
            (p + "ffn_down.weight", (d, h)),
        ]
    out.append(("output_norm.weight", (d,)))
    return out


# ---- random weights in each stored format (numpy shape (rows, cols) = GGUF ne reversed) -----
def _scales(rng, n_blocks, d):
    """f16 block scales around d (x0.75 .. x1.25), as (n_blocks, 2) bytes."""
    s = (d * rng.uniform(0.75, 1.25, n_blocks)).astype(np.float16)
    return s.view(np.uint8).reshape(n_blocks, 2)


def _random_q8_0(rng, rows, cols):
    # block: f16 d | int8 q[32]; value = d * q. Uniform int8 has std ~74.
    nb = rows * cols // 32
    blk = np.empty((nb, 34), np.uint8)
    blk[:, :2] = _scales(rng, nb, WEIGHT_STD / 74.0)
    blk[:, 2:] = np.frombuffer(rng.bytes(nb * 32), np.uint8).reshape(nb, 32)
    return blk.reshape(rows, cols // 32 * 34)


def _random_q4_0(rng, rows, cols):
    # block: f16 d | u8 qs[16] (two 4-bit quants per byte); value = d * (q - 8). std(q - 8) ~4.3
    nb = rows * cols // 32
    blk = np.empty((nb, 18), np.uint8)
    blk[:, :2] = _scales(rng, nb, WEIGHT_STD / 4.3)
    # nibbles in 1..15 so that q - 8 is symmetric around 0 (mean-free weights)
    q = rng.integers(1, 16, (nb, 32), dtype=np.uint8)
    blk[:, 2:] = q[:, :16] | (q[:, 16:] << 4)
    return blk.reshape(rows, cols // 32 * 18)


def _random_f32(rng, rows, cols):
    return rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(WEIGHT_STD)


def _random_bf16(rng, rows, cols):
    # bf16 = the upper half of a float32 (truncation; the rounding mode does not matter here)
    f = _random_f32(rng, rows, cols)
    return np.ascontiguousarray(f.view(np.uint16)[:, 1::2]).view(np.uint8)


def write_qwen3_hparams(w, *, n_layers, context_length, dim, hidden_dim, n_heads, n_kv_heads,
                        head_dim, rope_theta, norm_eps) -> None:
    """The qwen3.* hyperparameter keys of a GGUF (what qwen3c and llama.cpp read)."""
    w.add_block_count(n_layers)
    w.add_context_length(context_length)
    w.add_embedding_length(dim)
    w.add_feed_forward_length(hidden_dim)
    w.add_head_count(n_heads)
    w.add_head_count_kv(n_kv_heads)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_freq_base(rope_theta)
    w.add_layer_norm_rms_eps(norm_eps)


def make_model(path, qtype: str = "q8_0", seed: int = 0, tokenizer_dir=None, config=None,
               verbose: bool = False) -> int:
    """Write a random Qwen3-0.6B-shaped GGUF to `path`; returns the file size in bytes.

    qtype: q8_0, q4_0, bf16 or f32 (the type of every matrix; norms are F32, all ones).
    config: optional overrides of QWEN3_0_6B (e.g. n_layers=2 for a quick file).
    tokenizer_dir: a HF tokenizer directory to embed (via qwen3c.gguf_tokenizer)."""
    import gguf  # the gguf package (writer); imported here to keep `--help` fast

    cfg = dict(QWEN3_0_6B, **(config or {}))
    qtype = qtype.lower()
    gen = {
        "q8_0": (_random_q8_0, gguf.GGMLQuantizationType.Q8_0),
        "q4_0": (_random_q4_0, gguf.GGMLQuantizationType.Q4_0),
        "bf16": (_random_bf16, gguf.GGMLQuantizationType.BF16),
        "f32": (_random_f32, None),
    }
    if qtype not in gen:
        raise ValueError(f"unknown type {qtype!r}: expected one of {', '.join(gen)}")
    make, raw_dtype = gen[qtype]
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()

    arch = "qwen3"
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"qwen3c-random-0.6B-{qtype}")
    write_qwen3_hparams(w, n_layers=cfg["n_layers"], context_length=cfg["context_length"],
                        dim=cfg["dim"], hidden_dim=cfg["hidden_dim"], n_heads=cfg["n_heads"],
                        n_kv_heads=cfg["n_kv_heads"], head_dim=cfg["head_dim"],
                        rope_theta=cfg["rope_theta"], norm_eps=cfg["norm_eps"])
    w.add_file_type({"q8_0": 7, "q4_0": 2, "bf16": 32, "f32": 0}[qtype])
    if tokenizer_dir is not None:
        from qwen3c.gguf_tokenizer import add_tokenizer_metadata  # another module's job
        add_tokenizer_metadata(w, tokenizer_dir, vocab_size=cfg["vocab_size"])

    # Two passes so that only one tensor is in memory at a time: the tensor infos first
    # (sizes only), then each tensor generated and streamed to the file in the same order.
    shapes = _tensor_shapes(cfg)
    for name, shape in shapes:
        if len(shape) == 1:
            w.add_tensor_info(name, shape, np.dtype(np.float32), 4 * shape[0])
        else:
            rows, cols = shape
            if raw_dtype is None:
                w.add_tensor_info(name, shape, np.dtype(np.float32), 4 * rows * cols)
            else:
                block, type_size = gguf.GGML_QUANT_SIZES[raw_dtype]
                nbytes = rows * (cols // block) * type_size
                w.add_tensor_info(name, (rows, nbytes // rows), np.dtype(np.uint8), nbytes,
                                  raw_dtype=raw_dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, shape in shapes:
        a = np.ones(shape, np.float32) if len(shape) == 1 else make(rng, *shape)
        w.write_tensor_data(a)
    w.close()
    size = os.path.getsize(path)
    if verbose:
        print(f"wrote {path}: {qtype}, {size / 1e6:.0f} MB in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
    return size


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="output .gguf path")
    ap.add_argument("--type", dest="qtype", default="q8_0", choices=["q8_0", "q4_0", "bf16", "f32"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", metavar="DIR", default=None,
                    help="embed the tokenizer of this HF directory (tokenizer.json ...)")
    ap.add_argument("--layers", type=int, default=None, help="override n_layers (quick files)")
    args = ap.parse_args(argv)
    config = {"n_layers": args.layers} if args.layers else None
    make_model(args.out, args.qtype, args.seed, args.tokenizer, config=config, verbose=True)


if __name__ == "__main__":
    main()
