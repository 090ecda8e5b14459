"""`qwen3c info`: the model card of a GGUF file, read with the engine's own validating reader.

    model_info(path)   -> dict: the model context document of docs/model_context_schema.json
                          (kind "gguf"), with the model card fields of `info`
    format_info(info)  -> the text `info` prints
    main_info(argv)    `python -m qwen3c info FILE [--json]`
    GGUFFile           metadata and tensor table of a GGUF, through qwen3c_gguf_* (C)

The file is read by the same C reader qwen3c_model_load uses, never by a second parser: what
`info` accepts, loading accepts. `safe_to_load` is true only when the file loads -- info runs a
full qwen3c_model_load (with pack_weights=0, so nothing is copied and no tensor byte is read
beyond the norms). A malformed file is an error (ModelFormatError with the reader's message;
exit status 1); a valid file that qwen3c does not run (another architecture, a tensor type or
tokenizer it lacks) is described, with safe_to_load false and the reason.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from . import _native
from .archs import by_gguf
from .errors import UnsupportedModelError
from .model_context import (file_entry, human_count, hub_repo_from_url, new_document,
                            repo_from_path, runtime)

__all__ = ["GGUFFile", "model_info", "format_info", "main_info", "SAFE_WHY", "run_cli"]

SAFE_WHY = ("GGUF is a data format: a header, key/value metadata and tensor bytes. It holds no "
            "executable code (unlike pickle-based checkpoints), and qwen3c renders the chat "
            "template it may carry in a sandboxed Jinja environment, so loading it cannot run "
            "code from the file.")
_SPECIAL_KEYS = (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("pad", "padding_token_id"),
                 ("unk", "unknown_token_id"), ("sep", "seperator_token_id"),
                 ("eot", "eot_token_id"), ("eom", "eom_token_id"))
_NAMED_SPECIALS = (("im_start", "<|im_start|>"), ("im_end", "<|im_end|>"),
                   ("endoftext", "<|endoftext|>"), ("think", "<think>"),
                   ("think_end", "</think>"))
_GENERAL_FIELDS = ("name", "basename", "finetune", "size_label", "organization", "author",
                   "version", "license", "license.name", "license.link", "url", "repo_url",
                   "description", "quantized_by", "file_type", "quantization_version")


# ---- the file, through the C reader ----------------------------------------------------------

class GGUFFile:
    """Metadata and tensor table of a GGUF file, read by qwen3c's validating C reader.

    GGUFFile.open(path) parses and validates the file (ModelFormatError naming the problem);
    GGUFFile(handle, owner) wraps a loaded model's parsed file (qwen3c_model_gguf), kept valid
    by holding `owner`. Values are decoded lazily, one key at a time."""

    def __init__(self, handle, owner=None):
        self._g = handle
        self._owner = owner
        self.header = _native.gguf_header(handle)
        #: key -> (index, value type, element type, element count), in file order
        self.entries = {k: (i, t, et, n) for i, (k, t, et, n)
                        in enumerate(_native.gguf_entries(handle, self.header["n_kv"]))}

    @classmethod
    def open(cls, path) -> "GGUFFile":
        return cls(_native.gguf_open(os.fspath(path)))

    def get(self, key: str):
        """A scalar value (str, int, float or bool), or None when the key is absent or holds an
        array. float32 values come back as their shortest text (1e-05, not 9.9999997e-06)."""
        e = self.entries.get(key)
        if e is None or e[1] == _native.GGUF_ARRAY:
            return None
        i, t, et, _ = e
        if t == _native.GGUF_STRING:
            return _native.gguf_strings(self._g, i, 0, 1)[0].decode("utf-8", "replace")
        v = _native.gguf_values(self._g, i, et, 0, 1)[0]
        if t == _native.GGUF_BOOL:
            return bool(v)
        if t == _native.GGUF_FLOAT32:
            return float(str(v))
        return float(v) if v.dtype.kind == "f" else int(v)

    def array_len(self, key: str) -> Optional[int]:
        e = self.entries.get(key)
        return e[3] if e is not None and e[1] == _native.GGUF_ARRAY else None

    def strings(self, key: str, start: int = 0, count: Optional[int] = None) -> list:
        """Elements [start, start + count) of a string array (UTF-8 with replacement)."""
        i, t, et, n = self.entries[key]
        count = n - start if count is None else count
        return [s.decode("utf-8", "replace") for s in _native.gguf_strings(self._g, i, start, count)]

    def values(self, key: str, start: int = 0, count: Optional[int] = None) -> np.ndarray:
        """Elements [start, start + count) of a numeric / bool array (or a scalar) as numpy."""
        i, t, et, n = self.entries[key]
        count = n - start if count is None else count
        return _native.gguf_values(self._g, i, et, start, count)

    def tensors(self) -> list:
        """[(name, type name, shape (GGUF order: ne[0] first), file offset, nbytes), ...]"""
        return [(name, _native.type_name(t), shape, off, nb)
                for name, t, shape, off, nb in _native.gguf_tensors(self._g, self.header["n_tensors"])]


# ---- the model card --------------------------------------------------------------------------

def _special_tokens(f: GGUFFile) -> dict:
    vocab = f.array_len("tokenizer.ggml.tokens")
    has_tokens = vocab is not None and f.entries["tokenizer.ggml.tokens"][2] == _native.GGUF_STRING

    def text(tid):
        return f.strings("tokenizer.ggml.tokens", tid, 1)[0] if has_tokens and 0 <= tid < vocab else None

    special = {}
    for short, key in _SPECIAL_KEYS:
        tid = f.get(f"tokenizer.ggml.{key}")
        if isinstance(tid, int) and not isinstance(tid, bool) and tid >= 0:
            special[short] = {"id": tid, "text": text(tid)}
    if has_tokens and vocab:
        # the chat-format tokens are found by their text; added / special tokens sit at the
        # start (SmolLM2) or the end (Qwen3) of the vocabulary, so only those ranges are read
        wanted = {t: short for short, t in _NAMED_SPECIALS}
        head = min(vocab, 1024)
        tail = max(head, vocab - 4096)
        found = {}
        for base, strs in ((0, f.strings("tokenizer.ggml.tokens", 0, head)),
                           (tail, f.strings("tokenizer.ggml.tokens", tail, vocab - tail))):
            for k, s in enumerate(strs):
                if s in wanted and wanted[s] not in found:
                    found[wanted[s]] = base + k
        for short, t in _NAMED_SPECIALS:
            if short in found and short not in special:
                special[short] = {"id": found[short], "text": t}
    return special


def _base_models(f: GGUFFile) -> list:
    """general.base_model.{i}.* -> repo ids (or names) of the models this one derives from."""
    n = f.get("general.base_model.count")
    out = []
    for i in range(n if isinstance(n, int) and 0 < n < 64 else 0):
        k = f"general.base_model.{i}"
        repo = hub_repo_from_url(f.get(f"{k}.repo_url"))
        name, org = f.get(f"{k}.name"), f.get(f"{k}.organization")
        out.append(repo or (f"{org}/{name}" if org and name else name))
    return [b for b in out if isinstance(b, str) and b]


def _describe(f: GGUFFile, path: str, load_error: Optional[Exception]) -> dict:
    get = f.get
    arch = get("general.architecture")
    arch_key = (lambda k: f"{arch}.{k}") if isinstance(arch, str) else (lambda k: k)

    types, names = {}, set()
    n_params = total = 0
    emb = None
    tensors = f.tensors()
    for name, tname, shape, _off, nbytes in tensors:
        n_el = int(np.prod(shape, dtype=np.int64))
        e = types.setdefault(tname, {"type": tname, "n_tensors": 0, "n_elements": 0, "n_bytes": 0})
        e["n_tensors"] += 1
        e["n_elements"] += n_el
        e["n_bytes"] += nbytes
        n_params += n_el
        total += nbytes
        names.add(name)
        if name == "token_embd.weight":
            emb = shape
    tensor_types = sorted(types.values(), key=lambda e: (-e["n_bytes"], e["type"]))

    template = get("tokenizer.chat_template")
    general = {k: get(f"general.{k}") for k in _GENERAL_FIELDS if get(f"general.{k}") is not None}

    def hp(key):
        v = get(arch_key(key))
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    size = f.header["file_size"]
    row = by_gguf(arch)
    doc = new_document("gguf", path)
    repo = (get("general.source.huggingface.repository")
            or hub_repo_from_url(get("general.source.repo_url"))
            or hub_repo_from_url(get("general.repo_url")) or repo_from_path(path))
    name = general.get("name")
    doc.update({
        "repo": repo if isinstance(repo, str) else None,
        "name": name,
        "task": row.task if row else None,
        "architecture": arch,
        "parameter_count": n_params,
        "parameter_count_human": human_count(n_params),
        "license": general.get("license"),
        "base_model": _base_models(f),
        "weight_formats": ["gguf"],
    })
    if load_error is None:
        doc["safe_to_load"] = True
        doc["safe_to_load_reasons"] = [
            "GGUF holds data only (header, metadata, tensor bytes): no code runs on load",
            "qwen3c's reader validated the header, metadata and tensor table, and the model "
            "loads (qwen3c_model_load)"]
        if template:
            doc["safe_to_load_reasons"].append(
                "its chat template is rendered in a sandboxed Jinja environment")
        doc["why"] = SAFE_WHY
        cmd = f"python -m qwen3c --model {path}"
        doc["qwen3c"] = {"status": "runs", "reason": f"qwen3c runs the {arch} architecture",
                         "command": cmd}
        doc["recommended_runtimes"] = [
            runtime("qwen3c", cmd, "the C engine: exact, validated load"),
            runtime("llama.cpp", f"llama-cli -m {path}", "GGUF is llama.cpp's native format")]
    else:
        msg = f"qwen3c cannot load it: {load_error}"
        doc["safe_to_load"] = False
        doc["safe_to_load_reasons"] = [
            msg, "GGUF holds data only, and qwen3c's reader found the file well-formed"]
        doc["why"] = msg
        doc["qwen3c"] = {"status": "no", "reason": str(load_error), "command": None}
        doc["recommended_runtimes"] = [
            runtime("llama.cpp", f"llama-cli -m {path}",
                    f"if your llama.cpp supports the {arch!r} architecture and the file's types")]
    doc["files"] = [file_entry(
        os.path.basename(path), size, "data", "gguf",
        "GGUF: header, key/value metadata and tensor bytes, validated by qwen3c's reader",
        problems=[] if load_error is None else [f"qwen3c cannot load it: {load_error}"],
        tensors=len(tensors), parameter_count=n_params)]

    if arch == "qwen35":
        hparams_extra = _qwen35_hparams(f, hp)
    else:
        hparams_extra = {}
    vocab = f.array_len("tokenizer.ggml.tokens")
    doc.update({
        "file_size": size,
        "gguf_version": f.header["version"],
        "general": general,
        "context_length": hp("context_length"),
        "hyperparameters": {
            "block_count": hp("block_count"),
            "embedding_length": hp("embedding_length"),
            "feed_forward_length": hp("feed_forward_length"),
            "head_count": hp("attention.head_count"),
            "head_count_kv": hp("attention.head_count_kv"),
            "key_length": hp("attention.key_length"),
            "rope_freq_base": hp("rope.freq_base"),
            "rms_norm_eps": hp("attention.layer_norm_rms_epsilon"),
            "vocab_size": int(emb[1]) if emb is not None and len(emb) > 1 else None,
            "tied_embeddings": "output.weight" not in names,
            **hparams_extra,
        },
        "tensor_count": len(tensors),
        "tensor_bytes": total,
        "tensor_types": tensor_types,
        "tokenizer": {
            "present": vocab is not None,
            "model": get("tokenizer.ggml.model"),
            "pre": get("tokenizer.ggml.pre"),
            "vocab_size": vocab,
            "merges": f.array_len("tokenizer.ggml.merges"),
        },
        "special_tokens": _special_tokens(f),
        "chat_template": {
            "present": isinstance(template, str) and bool(template),
            "chars": len(template) if isinstance(template, str) else None,
            "sha256": hashlib.sha256(template.encode("utf-8")).hexdigest()
            if isinstance(template, str) else None,
        },
        "metadata_keys": sorted(k for k in f.entries if not k.startswith("GGUF.")),
    })
    return doc


def _qwen35_hparams(f: GGUFFile, hp) -> dict:
    """Qwen3.5's Gated DeltaNet hyperparameters (Qwen3_5TextConfig's linear_*), its rotary
    dims and how many blocks are linear, under llama.cpp's key names."""
    out = {
        "rope_dimension_count": hp("rope.dimension_count"),
        "ssm_conv_kernel": hp("ssm.conv_kernel"),
        "ssm_state_size": hp("ssm.state_size"),
        "ssm_group_count": hp("ssm.group_count"),
        "ssm_time_step_rank": hp("ssm.time_step_rank"),
        "ssm_inner_size": hp("ssm.inner_size"),
        "full_attention_interval": hp("full_attention_interval"),
        "nextn_predict_layers": hp("nextn_predict_layers"),
    }
    key = "qwen35.attention.recurrent_layers"
    if f.array_len(key) is not None and f.entries[key][2] in _native.GGUF_DTYPES:
        out["linear_layers"] = int(np.count_nonzero(f.values(key)))
    return out


def model_info(path) -> dict:
    """Describe a GGUF file, validated by qwen3c's C reader (docs/model_context_schema.json).

    Raises ModelFormatError with the reader's message for a malformed file (also one whose
    tensors or tokenizer do not fit its metadata), FileNotFoundError / ModelIOError when it
    cannot be opened. A valid file qwen3c does not run is described with safe_to_load false."""
    path = os.fspath(path)
    model, load_error = None, None
    try:
        model = _native.model_load(path, pack_weights=False)
    except UnsupportedModelError as e:
        load_error = e
    try:
        f = GGUFFile(_native.model_gguf(model), owner=model) if model else GGUFFile.open(path)
        return _describe(f, path, load_error)
    finally:
        if model is not None:
            _native.model_free(model)


def format_info(info: dict) -> str:
    def mb(n):
        return f"{n / 1e6:.1f} MB"

    hp = info["hyperparameters"]
    lines = [f"{info['name'] or Path(info['path']).name}",
             f"  file            {info['path']} ({mb(info['file_size'])}, GGUF v{info['gguf_version']})",
             f"  architecture    {info['architecture']}",
             f"  parameters      {info['parameter_count']:,} ({info['parameter_count_human']})",
             f"  context length  {info['context_length']}"]
    shape = ", ".join(f"{k}={v}" for k, v in hp.items() if v is not None)
    lines.append(f"  shape           {shape}")
    for k in ("license", "organization", "size_label", "quantized_by"):
        if k in info["general"]:
            lines.append(f"  {k:<15} {info['general'][k]}")
    if info["base_model"]:
        lines.append(f"  base model      {', '.join(info['base_model'])}")
    lines.append(f"  tensors         {info['tensor_count']} ({mb(info['tensor_bytes'])})")
    for e in info["tensor_types"]:
        lines.append(f"    {e['type']:<6} {e['n_tensors']:5d} tensors {e['n_elements']:>13,} "
                     f"weights {mb(e['n_bytes']):>10}")
    tok = info["tokenizer"]
    if tok["present"]:
        lines.append(f"  tokenizer       {tok['model']} (pre={tok['pre']}), {tok['vocab_size']} "
                     f"tokens, {tok['merges']} merges")
    else:
        lines.append("  tokenizer       none (token ids only)")
    if info["special_tokens"]:
        sp = ", ".join(f"{k}={v['id']} {v['text']!r}" for k, v in info["special_tokens"].items())
        lines.append(f"  special tokens  {sp}")
    ct = info["chat_template"]
    lines.append("  chat template   " + (f"present ({ct['chars']} chars)" if ct["present"] else "none"))
    lines.append(f"  qwen3c          {'runs it' if info['qwen3c']['status'] == 'runs' else 'does not run it'}")
    lines.append(f"  safe to load    {'yes' if info['safe_to_load'] else 'no'}: {info['why']}")
    return "\n".join(lines)


# ---- command line ----------------------------------------------------------------------------

def run_cli(fn, argv, prog: str) -> int:
    """Run a read-only command body under the exit status rule of docs/cli.md (2 usage,
    1 runtime failure, 130 interrupted): cli_options.run_command."""
    from .cli_options import run_command
    return run_command(fn, argv, prog)


def _info(argv):
    from .system import cpu_info, describe
    ap = argparse.ArgumentParser(
        prog="qwen3c info",
        description="Describe a GGUF file: validated by qwen3c's own reader and loaded once "
                    "(nothing is run), and this machine: the CPU kernel tier, features, "
                    "threads. Without a file: this machine only. Exit status 1 for a malformed "
                    "or unreadable file.")
    ap.add_argument("path", nargs="?", help="GGUF file")
    ap.add_argument("--json", action="store_true",
                    help="print the model context document (docs/model_context_schema.json); "
                         "without a file: qwen3c.cpu_info()")
    args = ap.parse_args(argv)
    if args.path is None:
        print(json.dumps(cpu_info(), indent=1) if args.json else describe())
        return 0
    info = model_info(args.path)
    if args.json:
        print(json.dumps(info, ensure_ascii=False, indent=1))
    else:
        print(format_info(info))
        print(describe())
    return 0


def main_info(argv=None) -> int:
    """`python -m qwen3c info`: the model card read from the GGUF header."""
    return run_cli(_info, sys.argv[1:] if argv is None else argv, "qwen3c info")
