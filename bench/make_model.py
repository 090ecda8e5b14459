"""Write a Qwen3-0.6B- or Qwen3.5-0.8B-shaped GGUF with random weights, for benchmarks and the
big-model test.

    python bench/make_model.py out.gguf [--arch qwen3|qwen35]
                               [--type q8_0|q4_0|bf16|f32|q4_k_m|q5_k_m|q6_k|q3_k_m|q2_k]
                               [--seed 0] [--tokenizer DIR]

qwen3 (default) is Qwen3-0.6B's shape (28 layers, dim 1024, hidden 3072, 16 heads, 8 kv heads,
head_dim 128, vocab 151936, tied embeddings, rope theta 1e6). qwen35 is Qwen3.5-0.8B's text
model, laid out as llama.cpp's converter writes it: 24 layers, 18 Gated DeltaNet (16 key and 16
value heads of 128, conv kernel 4) and every 4th one gated attention (8 heads, 2 kv heads,
head_dim 256, 64 rotary dims, theta 1e7), dim 1024, hidden 3584, vocab 248320, tied embeddings.
Weights are random but realistic in scale (~N(0, 0.02)-like, norms = 1) so activations stay
finite through all the layers.

Q8_0 / Q4_0 files are generated directly as random valid blocks (random quants in -127..127, the
range every Q8_0 quantizer writes, / 4-bit quants, and small f16 scales) instead of quantizing
600M floats, so a Q8_0 file takes a few seconds.

The K-quant "file types" (q4_k_m, q5_k_m, q6_k, q3_k_m, q2_k) are made the way users get them:
the F32 file is written first and then quantized by llama.cpp's own quantizer
(`llama_cpp.llama_model_quantize`, llama-cpp-python), so the per-tensor mix of types is the real
one (Q4_K_M: Q4_K matrices, Q6_K for the token embeddings / tied LM head and for attn_v and
ffn_down in some layers). Without llama-cpp-python the script says so and writes random valid
blocks instead: every matrix of the main type and the embeddings Q6_K, which is not llama.cpp's
mix.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import sys
import tempfile
import time

import numpy as np

QWEN3_0_6B = dict(
    n_layers=28, dim=1024, hidden_dim=3072, n_heads=16, n_kv_heads=8, head_dim=128,
    vocab_size=151936, context_length=40960, rope_theta=1_000_000.0, norm_eps=1e-6,
)

# Qwen/Qwen3.5-0.8B (config.json text_config; the model card: "Hidden Layout: 6 x (3 x (Gated
# DeltaNet -> FFN) -> 1 x (Gated Attention -> FFN))", 16 linear heads for V and QK of dim 128,
# rotary dim 64, token embedding 248320)
QWEN35_0_8B = dict(
    n_layers=24, dim=1024, hidden_dim=3584, n_heads=8, n_kv_heads=2, head_dim=256,
    vocab_size=248320, context_length=262144, rope_theta=10_000_000.0, norm_eps=1e-6,
    full_attention_interval=4, conv_kernel=4, n_k_heads=16, n_v_heads=16, k_head_dim=128,
    v_head_dim=128, rope_dim=64,
)
ARCHS = {"qwen3": QWEN3_0_6B, "qwen35": QWEN35_0_8B}

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


def _tensor_shapes_qwen35(cfg):
    """The same for Qwen3.5, in llama.cpp's per-layer order."""
    d, h, hd = cfg["dim"], cfg["hidden_dim"], cfg["head_dim"]
    nh, nkv, v = cfg["n_heads"], cfg["n_kv_heads"], cfg["vocab_size"]
    nv, vd = cfg["n_v_heads"], cfg["n_v_heads"] * cfg["v_head_dim"]
    cd = 2 * cfg["n_k_heads"] * cfg["k_head_dim"] + vd
    out = [("token_embd.weight", (v, d))]
    for i in range(cfg["n_layers"]):
        p = f"blk.{i}."
        out.append((p + "attn_norm.weight", (d,)))
        if (i + 1) % cfg["full_attention_interval"]:
            out += [
                (p + "attn_qkv.weight", (cd, d)),
                (p + "attn_gate.weight", (vd, d)),
                (p + "ssm_beta.weight", (nv, d)),
                (p + "ssm_alpha.weight", (nv, d)),
                (p + "ssm_conv1d.weight", (cd, cfg["conv_kernel"])),
                (p + "ssm_dt.bias", (nv,)),
                (p + "ssm_a", (nv,)),
                (p + "ssm_norm.weight", (cfg["v_head_dim"],)),
                (p + "ssm_out.weight", (d, vd)),
            ]
        else:
            out += [
                (p + "attn_q.weight", (2 * nh * hd, d)),  # query and output gate per head
                (p + "attn_k.weight", (nkv * hd, d)),
                (p + "attn_v.weight", (nkv * hd, d)),
                (p + "attn_output.weight", (d, nh * hd)),
                (p + "attn_q_norm.weight", (hd,)),
                (p + "attn_k_norm.weight", (hd,)),
            ]
        out += [
            (p + "post_attention_norm.weight", (d,)),
            (p + "ffn_gate.weight", (h, d)),
            (p + "ffn_up.weight", (h, d)),
            (p + "ffn_down.weight", (d, h)),
        ]
    out.append(("output_norm.weight", (d,)))
    return out


def _f32_tensor(rng, name, shape):
    """The tensors every type stores as F32: norms (ones) and Qwen3.5's conv kernels and decay
    parameters (A = -exp(A_log) in [-16, -0.01], as transformers initializes A_log)."""
    if name.endswith("ssm_conv1d.weight"):
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(0.3)
    if name.endswith("ssm_a"):
        return -rng.uniform(0.01, 16, shape).astype(np.float32)
    if name.endswith("ssm_dt.bias"):
        return rng.standard_normal(shape, dtype=np.float32)
    return np.ones(shape, np.float32)


def write_qwen35_hparams(w, cfg) -> None:
    """The qwen35.* keys beyond write_qwen3_hparams' (llama.cpp's names)."""
    a = "qwen35"
    w.add_uint32(f"{a}.ssm.conv_kernel", cfg["conv_kernel"])
    w.add_uint32(f"{a}.ssm.state_size", cfg["k_head_dim"])
    w.add_uint32(f"{a}.ssm.group_count", cfg["n_k_heads"])
    w.add_uint32(f"{a}.ssm.time_step_rank", cfg["n_v_heads"])
    w.add_uint32(f"{a}.ssm.inner_size", cfg["n_v_heads"] * cfg["v_head_dim"])
    w.add_uint32(f"{a}.full_attention_interval", cfg["full_attention_interval"])
    w.add_array(f"{a}.attention.recurrent_layers",
                [bool((i + 1) % cfg["full_attention_interval"]) for i in range(cfg["n_layers"])])
    w.add_uint32(f"{a}.rope.dimension_count", cfg["rope_dim"])
    w.add_array(f"{a}.rope.dimension_sections", [11, 11, 10, 0])


# ---- random weights in each stored format (numpy shape (rows, cols) = GGUF ne reversed) -----
def _scales(rng, n_blocks, d):
    """f16 block scales around d (x0.75 .. x1.25), as (n_blocks, 2) bytes."""
    s = (d * rng.uniform(0.75, 1.25, n_blocks)).astype(np.float16)
    return s.view(np.uint8).reshape(n_blocks, 2)


def _random_q8_0(rng, rows, cols):
    # block: f16 d | int8 q[32]; value = d * q. Uniform in -127..127 (every quantizer's range:
    # d = max|x| / 127; -128 never occurs) has std ~73.
    nb = rows * cols // 32
    blk = np.empty((nb, 34), np.uint8)
    blk[:, :2] = _scales(rng, nb, WEIGHT_STD / 73.0)
    blk[:, 2:] = rng.integers(-127, 128, (nb, 32), dtype=np.int8).view(np.uint8)
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


def _random_k(rng, rows, cols, kind):
    """Random valid K-quant super-blocks (256 elements) with weights of about WEIGHT_STD."""
    nb = rows * cols // 256
    q = lambda n: np.frombuffer(rng.bytes(nb * n), np.uint8).reshape(nb, n)  # noqa: E731
    if kind == "Q6_K":  # ql[128] qh[64] int8 scales[16] f16 d; value = d * sc * (q - 32)
        blk = np.concatenate([q(192), rng.integers(8, 64, (nb, 16), dtype=np.int8).view(np.uint8),
                              _scales(rng, nb, WEIGHT_STD / (18.5 * 36))], axis=1)
    elif kind == "Q3_K":  # hmask[32] qs[64] 6-bit signed scales[12] f16 d; d * (sc - 32) * q3
        blk = np.concatenate([q(96 + 12), _scales(rng, nb, WEIGHT_STD / (18.5 * 2.3))], axis=1)
    elif kind == "Q2_K":  # 4-bit scale | 4-bit min [16], qs[64], f16 d, dmin; d sc q - dmin mn
        sc = rng.integers(8, 16, (nb, 16)).astype(np.uint8)
        d = _scales(rng, nb, WEIGHT_STD / (11.5 * 1.12))
        dmin = (d.view(np.float16).astype(np.float32) * 1.5).astype(np.float16).view(np.uint8)
        blk = np.concatenate([sc | (sc << 4), q(64), d, dmin], axis=1)
    else:  # Q4_K / Q5_K: f16 d, dmin | 12 bytes of 6-bit scales and mins | (qh[32]) qs[128]
        top = 15.0 if kind == "Q4_K" else 31.0
        sc = rng.integers(32, 64, (nb, 8))  # 6-bit sub-block scales; the mins equal them, and
        mn = sc                             # dmin = d * top / 2: sub-block means near 0
        s12 = np.zeros((nb, 12), np.uint8)
        s12[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
        s12[:, 4:8] = mn[:, 0:4] | ((mn[:, 4:8] >> 4) << 6)
        s12[:, 8:12] = (sc[:, 4:8] & 15) | ((mn[:, 4:8] & 15) << 4)
        d = _scales(rng, nb, WEIGHT_STD / (47.5 * top * 0.29))
        dmin = (d.view(np.float16).astype(np.float32) * (top / 2)).astype(np.float16).view(np.uint8)
        blk = np.concatenate([d, dmin, s12, q(160 if kind == "Q5_K" else 128)], axis=1)
    return blk.reshape(rows, -1)


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


# file type -> (llama.cpp's LLAMA_FTYPE_MOSTLY_* name, the main matrix type of the random fallback)
KQUANT_FILE_TYPES = {"q4_k_m": ("Q4_K_M", "Q4_K"), "q5_k_m": ("Q5_K_M", "Q5_K"),
                     "q6_k": ("Q6_K", "Q6_K"), "q3_k_m": ("Q3_K_M", "Q3_K"), "q2_k": ("Q2_K", "Q2_K")}
TYPES = ["q8_0", "q4_0", "bf16", "f32", *KQUANT_FILE_TYPES]


def llama_cpp_quantizer():
    """llama-cpp-python's module if it imports (its quantizer makes the real K-quant mixes), else
    None."""
    try:
        import llama_cpp
    except ImportError:
        return None
    return llama_cpp


def quantize_with_llama_cpp(llama_cpp, src, dst, ftype_name: str, n_threads: int = 0) -> None:
    """llama.cpp's quantizer (llama_model_quantize, as its llama-quantize tool): src (F32) -> dst."""
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype_name}")
    params.nthread = n_threads or (os.cpu_count() or 1)
    rc = llama_cpp.llama_model_quantize(os.fsencode(src), os.fsencode(dst), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({src} -> {ftype_name}) failed with status {rc}")


def make_model(path, qtype: str = "q8_0", seed: int = 0, tokenizer_dir=None, config=None,
               verbose: bool = False, random_kquants: bool = False, arch: str = "qwen3") -> int:
    """Write a random Qwen3-0.6B-shaped (arch "qwen3") or Qwen3.5-0.8B-shaped ("qwen35") GGUF to
    `path`; returns the file size in bytes.

    qtype: q8_0, q4_0, bf16 or f32 (the type of every matrix; norms are F32, all ones), or a
      K-quant file type (q4_k_m, q5_k_m, q6_k, q3_k_m, q2_k): an F32 file quantized by
      llama.cpp's quantizer when llama-cpp-python is installed (or random_kquants is False and
      it is not: a warning, then random valid blocks, as with random_kquants=True).
    config: optional overrides of QWEN3_0_6B / QWEN35_0_8B (e.g. n_layers=2 for a quick file).
    tokenizer_dir: a HF tokenizer directory to embed (via qwen3c.gguf_tokenizer)."""
    import gguf  # the gguf package (writer); imported here to keep `--help` fast

    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}: expected one of {', '.join(ARCHS)}")
    cfg = dict(ARCHS[arch], **(config or {}))
    qtype = qtype.lower()
    if qtype not in TYPES:
        raise ValueError(f"unknown type {qtype!r}: expected one of {', '.join(TYPES)}")
    t0 = time.perf_counter()
    if qtype in KQUANT_FILE_TYPES and not random_kquants:
        llama_cpp = llama_cpp_quantizer()
        if llama_cpp is not None:
            ftype_name = KQUANT_FILE_TYPES[qtype][0]
            fd, tmp = tempfile.mkstemp(suffix=".f32.gguf", dir=os.path.dirname(os.path.abspath(path)))
            os.close(fd)
            try:
                make_model(tmp, "f32", seed, tokenizer_dir, config, arch=arch)
                quantize_with_llama_cpp(llama_cpp, tmp, path, ftype_name)
            finally:
                os.unlink(tmp)
            size = os.path.getsize(path)
            if verbose:
                print(f"wrote {path}: {qtype} (an F32 file quantized by llama.cpp's quantizer, "
                      f"llama-cpp-python {getattr(llama_cpp, '__version__', '?')}), {size / 1e6:.0f} MB "
                      f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            return size
        print(f"make_model: llama-cpp-python is not installed, so {qtype} is NOT llama.cpp's "
              f"per-tensor mix: writing random valid {KQUANT_FILE_TYPES[qtype][1]} blocks for every "
              f"matrix (token_embd Q6_K) instead. `pip install llama-cpp-python` for the real mix.",
              file=sys.stderr)
    T = gguf.GGMLQuantizationType
    simple = {"q8_0": (_random_q8_0, T.Q8_0), "q4_0": (_random_q4_0, T.Q4_0),
              "bf16": (_random_bf16, T.BF16), "f32": (_random_f32, None)}

    def matrix_type(name):  # (generator, raw ggml type or None for F32) of a matrix
        if qtype in simple:
            return simple[qtype]
        kind = "Q6_K" if name == "token_embd.weight" else KQUANT_FILE_TYPES[qtype][1]
        return (lambda rng, rows, cols: _random_k(rng, rows, cols, kind)), T[kind]

    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"qwen3c-random-{'0.8B' if arch == 'qwen35' else '0.6B'}-{qtype}")
    write_qwen3_hparams(w, n_layers=cfg["n_layers"], context_length=cfg["context_length"],
                        dim=cfg["dim"], hidden_dim=cfg["hidden_dim"], n_heads=cfg["n_heads"],
                        n_kv_heads=cfg["n_kv_heads"], head_dim=cfg["head_dim"],
                        rope_theta=cfg["rope_theta"], norm_eps=cfg["norm_eps"])
    if arch == "qwen35":
        write_qwen35_hparams(w, cfg)
    w.add_file_type({"q8_0": 7, "q4_0": 2, "bf16": 32, "f32": 0, "q4_k_m": 15, "q5_k_m": 17,
                     "q6_k": 18, "q3_k_m": 12, "q2_k": 10}[qtype])
    if tokenizer_dir is not None:
        from qwen3c.gguf_tokenizer import add_tokenizer_metadata  # another module's job
        add_tokenizer_metadata(w, tokenizer_dir, vocab_size=cfg["vocab_size"])

    # Two passes so that only one tensor is in memory at a time: the tensor infos first
    # (sizes only), then each tensor generated and streamed to the file in the same order.
    shapes = _tensor_shapes_qwen35(cfg) if arch == "qwen35" else _tensor_shapes(cfg)
    for name, shape in shapes:
        if len(shape) == 1 or name.endswith("ssm_conv1d.weight"):
            w.add_tensor_info(name, shape, np.dtype(np.float32), 4 * int(np.prod(shape)))
        else:
            rows, cols = shape
            raw_dtype = matrix_type(name)[1]
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
        f32 = len(shape) == 1 or name.endswith("ssm_conv1d.weight")
        a = _f32_tensor(rng, name, shape) if f32 else matrix_type(name)[0](rng, *shape)
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
    ap.add_argument("--arch", default="qwen3", choices=list(ARCHS),
                    help="qwen3: Qwen3-0.6B's shape (default); qwen35: Qwen3.5-0.8B's")
    ap.add_argument("--type", dest="qtype", default="q8_0", choices=TYPES,
                    help="matrix type; the K-quant file types are quantized by llama.cpp's "
                         "quantizer (needs llama-cpp-python; else random valid blocks, with a warning)")
    ap.add_argument("--random-kquants", action="store_true",
                    help="K-quant types: random valid blocks even when llama-cpp-python is installed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", metavar="DIR", default=None,
                    help="embed the tokenizer of this HF directory (tokenizer.json ...)")
    ap.add_argument("--layers", type=int, default=None, help="override n_layers (quick files)")
    args = ap.parse_args(argv)
    config = {"n_layers": args.layers} if args.layers else None
    make_model(args.out, args.qtype, args.seed, args.tokenizer, config=config, verbose=True,
               random_kquants=args.random_kquants, arch=args.arch)


if __name__ == "__main__":
    main()
