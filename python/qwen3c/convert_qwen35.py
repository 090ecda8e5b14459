"""Qwen3.5 HF checkpoints -> GGUF architecture "qwen35", as llama.cpp's converter writes it.

Used by `qwen3c.convert` for config.json files with model_type "qwen3_5" (the
Qwen3_5ForConditionalGeneration layout of the official checkpoints: text weights under
`model.language_model.`, a vision tower under `model.visual.`, MTP heads under `mtp.`) or
"qwen3_5_text" (Qwen3_5ForCausalLM: weights under `model.`). Only the text model is written;
the vision tower and the MTP (multi-token prediction) heads are skipped, with a note.

    HF (per layer, under PREFIX.layers.N.)           GGUF (blk.N.)            changed on the way
    input_layernorm.weight                           attn_norm.weight         + 1
    post_attention_layernorm.weight                  post_attention_norm.weight  + 1
    mlp.{gate,up,down}_proj.weight                   ffn_{gate,up,down}.weight
  full attention layers
    self_attn.q_proj.weight (query | gate per head)  attn_q.weight
    self_attn.{k,v,o}_proj.weight                    attn_{k,v,output}.weight
    self_attn.{q,k}_norm.weight                      attn_{q,k}_norm.weight   + 1
  Gated DeltaNet layers (linear_attn.)
    in_proj_qkv.weight                               attn_qkv.weight          V rows tiled
    in_proj_z.weight                                 attn_gate.weight         rows tiled
    in_proj_b.weight / in_proj_a.weight              ssm_beta / ssm_alpha.weight  rows tiled
    conv1d.weight (CD, 1, K)                         ssm_conv1d.weight (CD, K)  V rows tiled, F32
    dt_bias                                          ssm_dt.bias              tiled
    A_log                                            ssm_a                    -exp(A_log), tiled
    norm.weight                                      ssm_norm.weight
    out_proj.weight                                  ssm_out.weight           columns tiled
    PREFIX.embed_tokens / PREFIX.norm / lm_head      token_embd / output_norm (+ 1) / output

"+ 1": transformers' Qwen3_5RMSNorm multiplies by (1 + weight); the file stores 1 + weight, so
a plain RMSNorm applies it (the gated norm of the DeltaNet layers multiplies by weight itself).
"tiled": when there are fewer key heads than value heads, transformers groups the value heads
of each key head together ([k0: v0 v1][k1: v2 v3] -- value head j reads key head j // r); the
file orders them tiled ([v0 v2][v1 v3] -- value head j reads key head j % n_k), which is what
llama.cpp's broadcasting needs, so every per-value-head tensor is permuted the same way.
"""
from __future__ import annotations

import numpy as np

from .errors import ModelFormatError, UnsupportedModelError

MODEL_TYPES = ("qwen3_5", "qwen3_5_text")
MOE_MODEL_TYPES = ("qwen3_5_moe", "qwen3_5_moe_text")
ARCH = "qwen35"
DEFAULT_MROPE_SECTION = [11, 11, 10]  # Qwen3_5TextRotaryEmbedding's default

# checkpoint prefixes that are not part of the text model, and why they are skipped
SKIPPED = {
    "model.visual.": "the vision tower (qwen3c runs the text model)",
    "mtp.": "the multi-token prediction (MTP) head (not used for ordinary decoding)",
    "model.mtp.": "the multi-token prediction (MTP) head (not used for ordinary decoding)",
}


def check_model_type(model_type, path):
    if model_type in MOE_MODEL_TYPES:
        raise UnsupportedModelError(
            f"{path}: model_type {model_type!r} is Qwen3.5 mixture-of-experts: qwen3c has no MoE "
            f"layers (router, routed and shared experts); it converts the dense Qwen3.5 models")


def text_config(cfg: dict, path) -> tuple:
    """(the text model's config, the weight prefix) of a Qwen3.5 config.json."""
    if cfg.get("model_type") == "qwen3_5":
        tc = cfg.get("text_config")
        if not isinstance(tc, dict):
            raise ModelFormatError(f"{path}: model_type 'qwen3_5' without a text_config object")
        return tc, "model.language_model."
    return cfg, "model."


def hparams(cfg: dict, tc: dict, path, base_hparams) -> dict:
    """The Qwen3 hyperparameters (base_hparams validates them) plus the Qwen3.5 ones."""
    if tc.get("attn_output_gate", True) is not True:
        raise UnsupportedModelError(f"{path}: attn_output_gate=false is not a Qwen3.5 layout")
    hp = base_hparams(tc, path)
    # the top-level flag ties the weights (transformers ties lm_head of the ForConditionalGeneration
    # model by the outer config; the text_config's own flag may say otherwise)
    hp["tied"] = bool(cfg.get("tie_word_embeddings", tc.get("tie_word_embeddings", False)))

    def need(key):
        v = tc.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ModelFormatError(f"{path}: {key!r} must be a positive integer, got {v!r}")
        return v

    hp["conv_kernel"] = need("linear_conv_kernel_dim")
    hp["n_k_heads"] = need("linear_num_key_heads")
    hp["n_v_heads"] = need("linear_num_value_heads")
    hp["k_head_dim"] = need("linear_key_head_dim")
    hp["v_head_dim"] = need("linear_value_head_dim")
    if hp["n_v_heads"] % hp["n_k_heads"]:
        raise ModelFormatError(f"{path}: linear_num_value_heads {hp['n_v_heads']} is not a multiple "
                               f"of linear_num_key_heads {hp['n_k_heads']}")
    n = hp["n_layers"]
    types = tc.get("layer_types")
    if types is None:
        interval = tc.get("full_attention_interval", 4)
        types = ["linear_attention" if (i + 1) % interval else "full_attention" for i in range(n)]
    if not isinstance(types, list) or len(types) != n or \
            any(t not in ("linear_attention", "full_attention") for t in types):
        raise ModelFormatError(f"{path}: layer_types must list 'linear_attention' or "
                               f"'full_attention' for each of the {n} layers")
    hp["linear"] = [t == "linear_attention" for t in types]
    rope = tc.get("rope_parameters") or {}
    factor = rope.get("partial_rotary_factor", tc.get("partial_rotary_factor", 0.25))
    hp["rope_dim"] = int(hp["head_dim"] * factor)
    if not 2 <= hp["rope_dim"] <= hp["head_dim"] or hp["rope_dim"] % 2:
        raise ModelFormatError(f"{path}: partial_rotary_factor {factor} gives {hp['rope_dim']} "
                               f"rotary dims of head_dim {hp['head_dim']}")
    section = list(rope.get("mrope_section") or DEFAULT_MROPE_SECTION)
    hp["rope_sections"] = (section + [0, 0, 0, 0])[:4]
    return hp


def write_hparams(writer, hp: dict):
    """The qwen35.* keys beyond the ones every architecture has (llama.cpp's names)."""
    a = ARCH
    writer.add_uint32(f"{a}.ssm.conv_kernel", hp["conv_kernel"])
    writer.add_uint32(f"{a}.ssm.state_size", hp["k_head_dim"])
    writer.add_uint32(f"{a}.ssm.group_count", hp["n_k_heads"])
    writer.add_uint32(f"{a}.ssm.time_step_rank", hp["n_v_heads"])
    writer.add_uint32(f"{a}.ssm.inner_size", hp["v_head_dim"] * hp["n_v_heads"])
    writer.add_array(f"{a}.attention.recurrent_layers", [bool(x) for x in hp["linear"]])
    attn = [i for i, lin in enumerate(hp["linear"]) if not lin]
    writer.add_uint32(f"{a}.full_attention_interval", attn[0] + 1 if attn else len(hp["linear"]))
    writer.add_uint32(f"{a}.rope.dimension_count", hp["rope_dim"])
    writer.add_array(f"{a}.rope.dimension_sections", [int(x) for x in hp["rope_sections"]])


# ---- the tensor transformations ---------------------------------------------------------------

def _regroup(x: np.ndarray, outer: int, inner: int, axis: int) -> np.ndarray:
    """Along `axis` (outer * inner equal-sized heads, outer-major), swap the two head indices."""
    x = np.moveaxis(x, axis, 0)
    shape = x.shape
    x = x.reshape(outer, inner, shape[0] // (outer * inner), *shape[1:]).swapaxes(0, 1).reshape(shape)
    return np.ascontiguousarray(np.moveaxis(x, 0, axis))


def tile_v_heads(x: np.ndarray, n_k: int, n_v: int, axis: int = 0) -> np.ndarray:
    """Reorder the value heads along `axis` (n_v heads of equal size) from transformers' grouped
    order (value head j reads key head j // (n_v / n_k)) to the tiled order of the file (value
    head j reads key head j % n_k). The identity when n_k == n_v."""
    return x if n_k == n_v else _regroup(x, n_k, n_v // n_k, axis)


def untile_v_heads(x: np.ndarray, n_k: int, n_v: int, axis: int = 0) -> np.ndarray:
    """The inverse of tile_v_heads (file order -> transformers' order)."""
    return x if n_k == n_v else _regroup(x, n_v // n_k, n_k, axis)


def _plus_one(x):
    return (x.astype(np.float32) + np.float32(1.0)).astype(np.float32)


def plan(hp: dict, prefix: str, tensor_plan) -> list:
    """[TensorPlan] in file order (llama.cpp's per-layer order)."""
    D, H, HD = hp["dim"], hp["hidden_dim"], hp["head_dim"]
    NH, NKV, V = hp["n_heads"], hp["n_kv_heads"], hp["vocab_size"]
    NK, NV, HK, HV, K = hp["n_k_heads"], hp["n_v_heads"], hp["k_head_dim"], hp["v_head_dim"], \
        hp["conv_kernel"]
    KD, VD = NK * HK, NV * HV
    CD = 2 * KD + VD
    T = tensor_plan

    def tiled(axis=0):
        return lambda x: tile_v_heads(x, NK, NV, axis)

    def qkv_tiled(x):  # only the value rows (after query and key) are per value head
        return np.concatenate([x[:2 * KD], tile_v_heads(x[2 * KD:], NK, NV)])

    def conv_tiled(x):  # (CD, 1, K) -> (CD, K), value channels tiled
        return qkv_tiled(x.reshape(CD, K))

    def a_tiled(x):  # A = -exp(A_log), in float64 then rounded once
        return tile_v_heads((-np.exp(x.astype(np.float64))).astype(np.float32), NK, NV)

    out = [T("token_embd.weight", prefix + "embed_tokens.weight", (V, D))]
    for i in range(hp["n_layers"]):
        hf, gg = f"{prefix}layers.{i}.", f"blk.{i}."
        out.append(T(gg + "attn_norm.weight", hf + "input_layernorm.weight", (D,), transform=_plus_one))
        if hp["linear"][i]:
            la = hf + "linear_attn."
            out += [
                T(gg + "attn_qkv.weight", la + "in_proj_qkv.weight", (CD, D), transform=qkv_tiled),
                T(gg + "attn_gate.weight", la + "in_proj_z.weight", (VD, D), transform=tiled()),
                T(gg + "ssm_beta.weight", la + "in_proj_b.weight", (NV, D), transform=tiled()),
                T(gg + "ssm_alpha.weight", la + "in_proj_a.weight", (NV, D), transform=tiled()),
                T(gg + "ssm_conv1d.weight", la + "conv1d.weight", (CD, K), hf_shape=(CD, 1, K),
                  transform=conv_tiled, f32=True),
                T(gg + "ssm_dt.bias", la + "dt_bias", (NV,), transform=tiled()),
                T(gg + "ssm_a", la + "A_log", (NV,), transform=a_tiled),
                T(gg + "ssm_norm.weight", la + "norm.weight", (HV,)),
                T(gg + "ssm_out.weight", la + "out_proj.weight", (D, VD), transform=tiled(axis=1)),
            ]
        else:
            sa = hf + "self_attn."
            out += [
                T(gg + "attn_q.weight", sa + "q_proj.weight", (2 * NH * HD, D)),
                T(gg + "attn_k.weight", sa + "k_proj.weight", (NKV * HD, D)),
                T(gg + "attn_v.weight", sa + "v_proj.weight", (NKV * HD, D)),
                T(gg + "attn_output.weight", sa + "o_proj.weight", (D, NH * HD)),
                T(gg + "attn_q_norm.weight", sa + "q_norm.weight", (HD,), transform=_plus_one),
                T(gg + "attn_k_norm.weight", sa + "k_norm.weight", (HD,), transform=_plus_one),
            ]
        out += [
            T(gg + "post_attention_norm.weight", hf + "post_attention_layernorm.weight", (D,),
              transform=_plus_one),
            T(gg + "ffn_gate.weight", hf + "mlp.gate_proj.weight", (H, D)),
            T(gg + "ffn_up.weight", hf + "mlp.up_proj.weight", (H, D)),
            T(gg + "ffn_down.weight", hf + "mlp.down_proj.weight", (D, H)),
        ]
    out.append(T("output_norm.weight", prefix + "norm.weight", (D,), transform=_plus_one))
    if not hp["tied"]:
        out.append(T("output.weight", "lm_head.weight", (V, D)))
    return out


def skipped_note(names) -> dict:
    """{prefix: count} of the checkpoint tensors that are skipped on purpose."""
    counts = {}
    for n in names:
        for p in SKIPPED:
            if n.startswith(p):
                counts[p] = counts.get(p, 0) + 1
                break
    return counts
