"""Convert a HuggingFace Qwen3 or Qwen3.5 checkpoint (config.json + *.safetensors) into a GGUF file.

    python -m qwen3c convert HF_DIR out.gguf --type f32|f16|bf16|q8_0

Same model, two formats: every HF tensor maps to one GGUF tensor with the llama.cpp name,
and the hyperparameters of config.json become `qwen3.*` metadata keys:

    HF (transformers Qwen3ForCausalLM)               GGUF
    model.embed_tokens.weight                        token_embd.weight
    model.layers.N.input_layernorm.weight            blk.N.attn_norm.weight
    model.layers.N.self_attn.{q,k,v}_proj.weight     blk.N.attn_{q,k,v}.weight
    model.layers.N.self_attn.o_proj.weight           blk.N.attn_output.weight
    model.layers.N.self_attn.{q,k}_norm.weight       blk.N.attn_{q,k}_norm.weight
    model.layers.N.post_attention_layernorm.weight   blk.N.ffn_norm.weight
    model.layers.N.mlp.{gate,up,down}_proj.weight    blk.N.ffn_{gate,up,down}.weight
    model.norm.weight                                output_norm.weight
    lm_head.weight                                   output.weight (only when not tied)

The data layout needs no change: a PyTorch Linear weight is (out_features, in_features)
row-major, which is exactly a GGUF 2-D tensor with ne[0] = in_features. Unlike the llama
architecture, qwen3 needs no Q/K row permutation (GGUF qwen3 keeps HF's rotate-half RoPE).

Qwen3.5 checkpoints (model_type "qwen3_5" / "qwen3_5_text") become architecture "qwen35" files
the way llama.cpp's converter writes them; qwen3c/convert_qwen35.py has their tensor table.

The file is written in two passes so that memory holds one tensor at a time: first the
tensor infos (names, shapes, types, sizes) are computed from the safetensors headers alone,
then each tensor is read (in chunks of rows), converted and appended.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from . import convert_qwen35
from .audit import check_convert_input
from .errors import ModelFormatError, UnsupportedModelError
from .safetensors_io import Checkpoint

log = logging.getLogger(__name__)

OUT_TYPES = ("f32", "f16", "bf16", "q8_0")

_LAYER_MAP = {  # HF suffix under model.layers.N. -> GGUF name under blk.N.
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}

# rows of a 2-D tensor are read and encoded this many at a time, to bound the temporaries
_CHUNK_ROWS = 4096


@dataclass(frozen=True)
class TensorPlan:
    """One GGUF tensor and where it comes from."""

    gguf: str                              # GGUF tensor name
    hf: str                                # checkpoint tensor name
    shape: tuple                           # shape in the GGUF file (numpy order)
    hf_shape: Optional[tuple] = None       # the checkpoint's shape, when it differs
    transform: Optional[Callable] = None   # float32 array (hf_shape) -> float32 array (shape)
    f32: bool = False                      # stored as F32 whatever the output type


# ---- config.json -> hyperparameters ---------------------------------------------------------

def _read_config(hf_dir: Path) -> dict:
    path = hf_dir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{hf_dir}: no config.json (is this a HuggingFace model directory?)")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFormatError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise ModelFormatError(f"{path}: not a JSON object")
    model_type = cfg.get("model_type")
    convert_qwen35.check_model_type(model_type, path)
    if model_type != "qwen3" and model_type not in convert_qwen35.MODEL_TYPES:
        archs = cfg.get("architectures")
        raise UnsupportedModelError(f"{path}: model_type {model_type!r} (architectures {archs}) is "
                                    f"not supported; only 'qwen3' and Qwen3.5 ('qwen3_5', "
                                    f"'qwen3_5_text') checkpoints can be converted")
    return cfg


def _hparams(cfg: dict, path: Path) -> dict:
    """The hyperparameters we write, validated. Raises ModelFormatError naming a missing key."""

    def need(key, typ=int):
        v = cfg.get(key)
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ModelFormatError(f"{path}: missing or non-numeric {key!r}")
        if typ is int and (int(v) != v or v <= 0):
            raise ModelFormatError(f"{path}: {key!r} must be a positive integer, got {v!r}")
        return typ(v)

    hp = {
        "n_layers": need("num_hidden_layers"),
        "dim": need("hidden_size"),
        "hidden_dim": need("intermediate_size"),
        "n_heads": need("num_attention_heads"),
        "vocab_size": need("vocab_size"),
        "n_ctx_train": need("max_position_embeddings"),
        "norm_eps": need("rms_norm_eps", float),
    }
    hp["n_kv_heads"] = need("num_key_value_heads") if "num_key_value_heads" in cfg else hp["n_heads"]
    # head_dim is explicit in Qwen3 configs (128 for every size) and need not be dim / n_heads
    hp["head_dim"] = need("head_dim") if cfg.get("head_dim") is not None else hp["dim"] // hp["n_heads"]
    if hp["n_heads"] % hp["n_kv_heads"]:
        raise ModelFormatError(f"{path}: num_attention_heads {hp['n_heads']} is not a multiple of "
                               f"num_key_value_heads {hp['n_kv_heads']}")

    # RoPE: older configs have top-level rope_theta / rope_scaling, transformers 5 writes
    # rope_parameters = {"rope_type": ..., "rope_theta": ...}
    rope = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling") or {}
    rope_type = rope.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if rope_type != "default":
        raise UnsupportedModelError(f"{path}: RoPE scaling {rope_type!r} is not supported")
    theta = rope.get("rope_theta", cfg.get("rope_theta", 10000.0))
    if not isinstance(theta, (int, float)) or theta <= 0:
        raise ModelFormatError(f"{path}: bad rope_theta {theta!r}")
    hp["rope_theta"] = float(theta)

    if cfg.get("use_sliding_window"):
        raise UnsupportedModelError(f"{path}: sliding-window attention is not supported")
    if cfg.get("attention_bias"):
        raise UnsupportedModelError(f"{path}: attention_bias=true (biased Q/K/V/O projections) "
                                    f"is not supported")
    act = cfg.get("hidden_act", "silu")
    if act != "silu":
        raise UnsupportedModelError(f"{path}: hidden_act {act!r} is not supported (only silu)")
    hp["tied"] = bool(cfg.get("tie_word_embeddings", False))
    return hp


# ---- tensor plan ----------------------------------------------------------------------------

def _expected_tensors(hp: dict) -> list:
    """[TensorPlan] of a Qwen3 checkpoint, in file order."""
    D, H, HD = hp["dim"], hp["hidden_dim"], hp["head_dim"]
    NH, NKV, V = hp["n_heads"], hp["n_kv_heads"], hp["vocab_size"]
    shapes = {
        "attn_norm.weight": (D,), "attn_q.weight": (NH * HD, D), "attn_k.weight": (NKV * HD, D),
        "attn_v.weight": (NKV * HD, D), "attn_output.weight": (D, NH * HD),
        "attn_q_norm.weight": (HD,), "attn_k_norm.weight": (HD,), "ffn_norm.weight": (D,),
        "ffn_gate.weight": (H, D), "ffn_up.weight": (H, D), "ffn_down.weight": (D, H),
    }
    plan = [TensorPlan("token_embd.weight", "model.embed_tokens.weight", (V, D))]
    for i in range(hp["n_layers"]):
        for hf_suffix, gg_suffix in _LAYER_MAP.items():
            plan.append(TensorPlan(f"blk.{i}.{gg_suffix}", f"model.layers.{i}.{hf_suffix}",
                                   shapes[gg_suffix]))
    plan.append(TensorPlan("output_norm.weight", "model.norm.weight", (D,)))
    if not hp["tied"]:
        plan.append(TensorPlan("output.weight", "lm_head.weight", (V, D)))
    return plan


def _ggml_type(out_type: str, shape: tuple, f32: bool = False):
    """The stored type of one tensor. 1-D tensors (norm weights) stay F32, as llama.cpp does (and
    tensors it always keeps in F32, f32=True: Qwen3.5's conv1d kernels)."""
    from gguf import GGMLQuantizationType as T
    if len(shape) == 1 or out_type == "f32" or f32:
        return T.F32
    if out_type == "f16":
        return T.F16
    if out_type == "bf16":
        return T.BF16
    # q8_0 packs rows in blocks of 32; a row length that is not a multiple of 32 cannot be
    # quantized, so such tensors fall back to F16 (llama.cpp's converter does the same).
    return T.Q8_0 if shape[-1] % 32 == 0 else T.F16


def _encode_rows(x: np.ndarray, qtype) -> np.ndarray:
    """float32 rows -> the bytes of `qtype`, a uint8 array of the GGUF byte shape."""
    from gguf import GGMLQuantizationType as T
    from gguf import quants
    x = np.ascontiguousarray(x, dtype=np.float32)
    if qtype == T.F32:
        return x.view(np.uint8)
    if qtype == T.F16:
        return x.astype(np.float16).view(np.uint8)
    return quants.quantize(x, qtype)  # BF16, Q8_0: gguf's reference (round-to-nearest) code


def _encode_tensor(ckpt, t: TensorPlan, qtype) -> np.ndarray:
    """Read one tensor and encode it, _CHUNK_ROWS rows at a time: the only full-size array is
    the encoded result (the float32 copy of a bf16 embedding would be 0.6 GB for Qwen3-0.6B).
    A tensor with a transform is read whole (they are the small per-layer ones)."""
    from gguf import quants
    hf_name, shape = t.hf, t.shape
    if t.transform is not None:
        x = np.asarray(t.transform(ckpt.get(hf_name)), dtype=np.float32)
        assert x.shape == tuple(shape), (t.gguf, x.shape, shape)
        return _encode_rows(x, qtype)
    if len(shape) == 1:
        return _encode_rows(ckpt.get(hf_name), qtype)
    out = np.empty(quants.quant_shape_to_byte_shape(shape, qtype), dtype=np.uint8)
    for r0 in range(0, shape[0], _CHUNK_ROWS):
        out[r0:r0 + _CHUNK_ROWS] = _encode_rows(ckpt.get(hf_name, slice(r0, r0 + _CHUNK_ROWS)), qtype)
    return out


def _file_type(out_type: str) -> int:
    from gguf import LlamaFileType as F
    return {"f32": F.ALL_F32, "f16": F.MOSTLY_F16, "bf16": F.MOSTLY_BF16,
            "q8_0": F.MOSTLY_Q8_0}[out_type]


# ---- convert --------------------------------------------------------------------------------

def _model_plan(cfg: dict, hf_dir: Path) -> tuple:
    """(GGUF architecture, hyperparameters, [TensorPlan], skipped prefixes {prefix: why}) of a
    checkpoint's config.json."""
    path = hf_dir / "config.json"
    if cfg.get("model_type") in convert_qwen35.MODEL_TYPES:
        tc, prefix = convert_qwen35.text_config(cfg, path)
        hp = convert_qwen35.hparams(cfg, tc, path, _hparams)
        return convert_qwen35.ARCH, hp, convert_qwen35.plan(hp, prefix, TensorPlan), \
            convert_qwen35.SKIPPED
    hp = _hparams(cfg, path)
    return "qwen3", hp, _expected_tensors(hp), {}


def convert(hf_dir, out_path, out_type: str = "f32", notes: Optional[list] = None) -> Path:
    """Convert the HuggingFace Qwen3 or Qwen3.5 model in `hf_dir` to a GGUF file at `out_path`.

    out_type: "f32", "f16", "bf16" or "q8_0" for the 2-D weights (norm weights stay F32).
    Tokenizer metadata is included when `hf_dir` holds tokenizer.json. A Qwen3.5 checkpoint
    (Qwen3_5ForCausalLM, or the text model of Qwen3_5ForConditionalGeneration) becomes a
    "qwen35" file; its vision tower and MTP head are skipped, which is said in `notes` (a list
    the notes are appended to, if given) and logged.
    Raises FileNotFoundError (no directory / config.json / safetensors),
    UnsafeModelError (the weights exist only as pickle files: never unpickled),
    UnsupportedModelError (not a qwen3 / qwen3.5 model, unsupported features or dtypes) and
    ModelFormatError (bad config, a safetensors header that the format forbids, missing
    tensors, shapes that disagree with the config). Warns (audit.RemoteCodeWarning) when the
    directory declares custom code, which the conversion never runs.
    Returns the output path.
    """
    import gguf

    hf_dir, out_path = Path(hf_dir), Path(out_path)
    out_type = str(out_type).lower()
    if out_type not in OUT_TYPES:
        raise ValueError(f"unknown output type {out_type!r}; expected one of {', '.join(OUT_TYPES)}")
    if not hf_dir.is_dir():
        raise FileNotFoundError(f"{hf_dir}: not a directory")
    # the checks of `qwen3c audit`: pickle-only weights are refused (naming the imports they
    # would perform), custom code is a warning; nothing is imported or unpickled
    check_convert_input(hf_dir)
    cfg = _read_config(hf_dir)
    arch, hp, plan, skipped = _model_plan(cfg, hf_dir)
    ckpt = Checkpoint(hf_dir)

    # validate every tensor against the config before writing anything
    for t in plan:
        if t.hf not in ckpt:
            ckpt.close()
            raise ModelFormatError(f"{hf_dir}: tensor {t.hf!r} (for {t.gguf}) is missing "
                                   f"from the safetensors files")
        if tuple(ckpt.shape(t.hf)) != tuple(t.hf_shape or t.shape):
            ckpt.close()
            raise ModelFormatError(f"{hf_dir}: tensor {t.hf!r} has shape {list(ckpt.shape(t.hf))}, "
                                   f"the config implies {list(t.hf_shape or t.shape)}")
    known = {t.hf for t in plan} | {"lm_head.weight"}  # a tied lm_head copy may be saved
    names = [n for n in ckpt.names() if n not in known and not n.endswith("rotary_emb.inv_freq")]
    unknown = [n for n in names if not any(n.startswith(p) for p in skipped)]
    if unknown:
        ckpt.close()
        raise UnsupportedModelError(f"{hf_dir}: unexpected tensors {unknown[:5]}"
                                    f"{' ...' if len(unknown) > 5 else ''}; not a plain "
                                    f"{'Qwen3.5' if arch == 'qwen35' else 'Qwen3'} model")
    for prefix, count in convert_qwen35.skipped_note(names).items():
        note = f"skipped {count} tensors of {skipped[prefix]} ({prefix}*)"
        log.info(note)
        if notes is not None:
            notes.append(note)

    tmp_path = out_path.with_name(out_path.name + ".tmp")
    writer = gguf.GGUFWriter(tmp_path, arch)
    try:
        writer.add_string("general.name", str(cfg.get("_name_or_path") or hf_dir.name))
        writer.add_uint32("general.file_type", int(_file_type(out_type)))
        writer.add_uint32("general.quantization_version", gguf.GGML_QUANT_VERSION)
        writer.add_uint32(f"{arch}.block_count", hp["n_layers"])
        writer.add_uint32(f"{arch}.context_length", hp["n_ctx_train"])
        writer.add_uint32(f"{arch}.embedding_length", hp["dim"])
        writer.add_uint32(f"{arch}.feed_forward_length", hp["hidden_dim"])
        writer.add_uint32(f"{arch}.attention.head_count", hp["n_heads"])
        writer.add_uint32(f"{arch}.attention.head_count_kv", hp["n_kv_heads"])
        writer.add_uint32(f"{arch}.attention.key_length", hp["head_dim"])
        writer.add_uint32(f"{arch}.attention.value_length", hp["head_dim"])
        writer.add_float32(f"{arch}.rope.freq_base", hp["rope_theta"])
        writer.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", hp["norm_eps"])
        if arch == convert_qwen35.ARCH:
            convert_qwen35.write_hparams(writer, hp)
        if (hf_dir / "tokenizer.json").is_file():
            _add_tokenizer(writer, hf_dir, hp["vocab_size"])

        # pass 1: tensor infos from the shapes alone
        types = []
        for t in plan:
            qtype = _ggml_type(out_type, t.shape, t.f32)
            types.append(qtype)
            byte_shape = gguf.quants.quant_shape_to_byte_shape(t.shape, qtype)
            writer.add_tensor_info(t.gguf, byte_shape, np.dtype(np.uint8),
                                   int(np.prod(byte_shape)), raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        # pass 2: the data, one tensor in memory at a time
        for t, qtype in zip(plan, types):
            writer.write_tensor_data(_encode_tensor(ckpt, t, qtype))
        writer.close()
        tmp_path.replace(out_path)
    except BaseException:
        writer.close()
        tmp_path.unlink(missing_ok=True)
        raise
    finally:
        ckpt.close()
    return out_path


def _add_tokenizer(writer, hf_dir: Path, vocab_size: int):
    try:
        from .gguf_tokenizer import add_tokenizer_metadata
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.gguf_tokenizer":
            raise
        # TODO(lead): qwen3c.gguf_tokenizer not available yet; the GGUF is written without
        # tokenizer metadata.
        import warnings
        warnings.warn("qwen3c.gguf_tokenizer is not available: writing the GGUF without "
                      "tokenizer metadata", RuntimeWarning, stacklevel=3)
        return
    add_tokenizer_metadata(writer, hf_dir, vocab_size=vocab_size)


# ---- CLI ------------------------------------------------------------------------------------

def build_parser(parser=None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(
        prog="qwen3c convert",
        description="Convert a HuggingFace Qwen3 or Qwen3.5 directory (config.json + "
                    "*.safetensors + tokenizer files) into a GGUF file. Qwen3.5 checkpoints "
                    "(also the ForConditionalGeneration layout) become llama.cpp's 'qwen35' "
                    "architecture; their vision tower and MTP head are skipped.")
    p.add_argument("hf_dir", help="HuggingFace model directory")
    p.add_argument("out", help="output .gguf path")
    p.add_argument("--type", dest="out_type", default="f32", choices=OUT_TYPES,
                   help="storage type of the 2-D weights (default: f32; norms stay f32)")
    return p


def main(argv=None) -> int:
    import warnings
    args = build_parser().parse_args(argv)
    notes = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                out = convert(args.hf_dir, args.out, args.out_type, notes=notes)
            finally:
                for w in caught:
                    print(f"qwen3c convert: warning: {w.message}", file=sys.stderr)
    except (FileNotFoundError, ModelFormatError, UnsupportedModelError, ValueError) as e:
        print(f"qwen3c convert: error: {e}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"qwen3c convert: note: {note}", file=sys.stderr)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {args.out_type})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
