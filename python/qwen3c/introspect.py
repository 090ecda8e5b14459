"""See inside the model: next-token probabilities, a layer-by-layer diff against transformers,
and a model card read straight from the GGUF file.

Library functions
    top_k(model, tokens_or_text, k=10, raw=False)  -> [(token_id, token_text, prob), ...]
    layer_diff(model, hf_dir_or_torch_model, tokens) -> DiffReport (per-layer |delta| stats)
    model_info(path)                                -> dict (the JSON of `info --json`)

Command line (dispatched by `python -m qwen3c`)
    next --model x.gguf "text" [--raw] [-k N]      main_next(argv)
    diff --model x.gguf --hf HF_DIR --prompt "..."  main_diff(argv)
      (both also take --activations and --kv-cache, as the chat command does)
    info x.gguf [--json]                            main_info(argv)

torch and transformers are needed by `diff` only, and imported when it runs. `info` reads the
file with the `gguf` package, not with the engine, so it describes any GGUF -- also one the
engine cannot run.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np

from .cli_options import add_numerics_arguments
from .errors import ModelFormatError, Qwen3cError

__all__ = ["top_k", "top_k_from_logits", "token_text", "softmax64", "prompt_tokens",
           "layer_diff", "hf_trace", "DiffReport", "StageDiff", "model_info",
           "INFO_SCHEMA_VERSION", "main_next", "main_diff", "main_info"]


class MissingDependencyError(Qwen3cError, ImportError):
    """An optional dependency (torch, transformers) that this command needs is not installed."""


# ---- next-token probabilities ----------------------------------------------------------------

def token_text(model, token_id: int) -> Optional[str]:
    """The token as text (bytes that are not valid UTF-8 shown as \\xNN), or None without a
    tokenizer."""
    try:
        raw = model.token_to_bytes(int(token_id))
    except (Qwen3cError, ValueError, AttributeError):
        return None
    return raw.decode("utf-8", "backslashreplace")


def prompt_tokens(model, tokens_or_text, raw: bool = False, enable_thinking: bool = True) -> list:
    """Token ids for top_k / next: ids pass through; text is wrapped in the chat template as one
    user message (raw=False) or encoded as-is for plain continuation (raw=True)."""
    if isinstance(tokens_or_text, str):
        if raw:
            ids = model.encode(tokens_or_text)
        else:
            rendered = model.apply_chat_template([{"role": "user", "content": tokens_or_text}],
                                                 enable_thinking=enable_thinking,
                                                 add_generation_prompt=True)
            ids = model.encode(rendered, special=True)
    elif isinstance(tokens_or_text, (bytes, bytearray)):
        raise TypeError("tokens_or_text must be a str or a sequence of token ids, not bytes")
    else:
        try:
            ids = [int(t) for t in tokens_or_text]
        except (TypeError, ValueError):
            raise TypeError("tokens_or_text must be a str or a sequence of int token ids") from None
        if any(isinstance(t, (bool, float)) for t in tokens_or_text):
            raise TypeError("token ids must be ints")
    ids = list(ids)
    if not ids:
        raise ValueError("the prompt is empty: top_k needs at least one token")
    return ids


def softmax64(logits) -> np.ndarray:
    """Probabilities from logits, computed in float64 (max subtracted first)."""
    x = np.asarray(logits, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("logits contain NaN or infinity")
    e = np.exp(x - x.max())
    return e / e.sum()


def top_k_from_logits(logits, k: int = 10):
    """[(token_id, prob), ...] for the k largest probabilities, descending (ties: lower id)."""
    p = softmax64(logits)
    k = min(int(k), p.size)
    idx = np.argpartition(-p, k - 1)[:k] if k < p.size else np.arange(p.size)
    idx = sorted(idx.tolist(), key=lambda i: (-p[i], i))
    return [(int(i), float(p[i])) for i in idx]


def top_k(model, tokens_or_text, k: int = 10, raw: bool = False, enable_thinking: bool = True):
    """The k most likely next tokens after a prompt: [(token_id, token_text, prob), ...].

    tokens_or_text: token ids, or text -- wrapped in the model's chat template as a user turn
    (the assistant's reply starts next) unless raw=True, which continues the text as is.
    Probabilities are a float64 softmax over all vocab_size logits of the last position, so the
    k returned probabilities sum to <= 1. token_text is None when the GGUF has no tokenizer.
    The forward pass starts at position 0 (the model's KV cache is overwritten).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, not {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ids = prompt_tokens(model, tokens_or_text, raw=raw, enable_thinking=enable_thinking)
    logits = model.forward(ids, pos=0)
    return [(i, token_text(model, i), p) for i, p in top_k_from_logits(logits, k)]


# ---- layer-by-layer diff ---------------------------------------------------------------------

@dataclass
class StageDiff:
    """|C - PyTorch| over one stage of the residual stream (all positions, all channels)."""

    name: str        # "embedding", "layer 0", ..., "final norm", "logits"
    index: int       # row of forward_trace's hidden array (-1 for logits)
    max_abs: float   # max |delta|
    mean_abs: float  # mean |delta|
    ref_max: float   # max |reference| (PyTorch)
    rel: float       # max_abs / ref_max


@dataclass
class DiffReport:
    """What `diff` prints. stages: embedding, layer 0..L-1, final norm (hidden states)."""

    n_tokens: int
    stages: List[StageDiff]
    logits: StageDiff
    top1_agree: int                       # positions where both argmax agree
    top1_c: List[int] = field(default_factory=list)
    top1_ref: List[int] = field(default_factory=list)
    activations: Optional[str] = None     # the qwen3c side's Model.activations
    kv_cache: Optional[str] = None        # the qwen3c side's Model.kv_cache

    def first_over(self, tol: float = 1e-4) -> Optional[StageDiff]:
        """The first hidden-state stage whose relative max |delta| exceeds tol, or None."""
        return next((s for s in self.stages if not s.rel <= tol), None)

    def to_dict(self) -> dict:
        return asdict(self)


def _stage(name: str, index: int, c: np.ndarray, ref: np.ndarray) -> StageDiff:
    c = np.asarray(c, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    d = np.abs(c - ref)
    ref_max = float(np.abs(ref).max()) if ref.size else 0.0
    max_abs = float(d.max()) if d.size else 0.0
    return StageDiff(name, index, max_abs, float(d.mean()) if d.size else 0.0, ref_max,
                     max_abs / ref_max if ref_max > 0 else (0.0 if max_abs == 0 else float("inf")))


def _need_torch():
    try:
        import torch
        import transformers
    except ImportError as e:
        raise MissingDependencyError(
            f"qwen3c diff compares against PyTorch and needs torch and transformers ({e}); "
            "install them with: pip install torch transformers") from None
    return torch, transformers


def load_hf_model(hf_dir):
    """A float32 transformers causal LM from a directory (config.json + safetensors), or from a
    .gguf file (transformers dequantizes it; needs `accelerate`)."""
    torch, transformers = _need_torch()
    p = Path(hf_dir)
    if not p.exists():
        raise FileNotFoundError(f"--hf: {p} does not exist")
    kw = dict(dtype=torch.float32)
    if p.is_file() and p.suffix == ".gguf":
        m = transformers.AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, **kw)
    else:
        if not (p / "config.json").is_file():
            raise ValueError(f"--hf: {p} has no config.json (expected a HuggingFace model directory)")
        m = transformers.AutoModelForCausalLM.from_pretrained(str(p), **kw)
    return m.float().eval()


def hf_trace(torch_model, tokens):
    """Run a transformers causal LM and capture what qwen3c's forward_trace returns:
    (logits (n, V), hidden (L + 2, n, D)) with [0] = embedding output, [1 + l] = output of
    decoder layer l, [L + 1] = after the final norm.

    Forward hooks are used rather than output_hidden_states, whose last entry is already the
    final-normed state in recent transformers (so the last layer's raw output is missing)."""
    torch, _ = _need_torch()
    base = getattr(torch_model, "model", torch_model)
    modules = [base.embed_tokens, *base.layers, base.norm]
    captured = [None] * len(modules)

    def hook(i):
        def fn(_mod, _inp, out):
            captured[i] = (out[0] if isinstance(out, (tuple, list)) else out).detach()
        return fn

    handles = [mod.register_forward_hook(hook(i)) for i, mod in enumerate(modules)]
    try:
        with torch.no_grad():
            ids = torch.tensor([list(tokens)], dtype=torch.long)
            out = torch_model(input_ids=ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    logits = out.logits[0].float().numpy()
    hidden = np.stack([c[0].float().numpy() for c in captured])
    return logits, hidden


def layer_diff(model, hf_dir_or_torch_model, tokens) -> DiffReport:
    """Compare qwen3c's residual stream with transformers', stage by stage, on `tokens`.

    model: a qwen3c.Model. hf_dir_or_torch_model: a HuggingFace directory (or .gguf file for
    transformers' own GGUF loader) or an already loaded torch model. Returns a DiffReport whose
    stages are the embedding output, each decoder layer's output and the final norm; a broken
    weight shows up first at its layer (`report.first_over(tol)`).
    """
    ids = [int(t) for t in tokens]
    if not ids:
        raise ValueError("layer_diff needs at least one token")
    if isinstance(hf_dir_or_torch_model, (str, os.PathLike)):
        ref_model = load_hf_model(hf_dir_or_torch_model)
    else:
        ref_model = hf_dir_or_torch_model
    cfg = ref_model.config
    c = model.config
    if (cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size) != (c.n_layers, c.dim, c.vocab_size):
        raise ValueError(
            "the two models have different shapes: qwen3c "
            f"(layers={c.n_layers}, dim={c.dim}, vocab={c.vocab_size}) vs transformers "
            f"(layers={cfg.num_hidden_layers}, dim={cfg.hidden_size}, vocab={cfg.vocab_size})")
    c_logits, c_hidden = model.forward_trace(ids, pos=0)
    r_logits, r_hidden = hf_trace(ref_model, ids)
    L = c.n_layers
    names = ["embedding"] + [f"layer {l}" for l in range(L)] + ["final norm"]
    stages = [_stage(n, i, c_hidden[i], r_hidden[i]) for i, n in enumerate(names)]
    top_c = np.asarray(c_logits).argmax(-1).tolist()
    top_r = np.asarray(r_logits).argmax(-1).tolist()
    return DiffReport(
        n_tokens=len(ids), stages=stages, logits=_stage("logits", -1, c_logits, r_logits),
        top1_agree=int(sum(a == b for a, b in zip(top_c, top_r))), top1_c=top_c, top1_ref=top_r,
        activations=getattr(model, "activations", None), kv_cache=getattr(model, "kv_cache", None))


def format_diff(report: DiffReport, tol: float = 1e-4) -> str:
    first = report.first_over(tol)
    lines = [f"{'stage':<12} {'max|d|':>10} {'mean|d|':>10} {'max|ref|':>10} {'rel':>10}"]
    for s in report.stages + [report.logits]:
        flag = "  <-- first over tolerance" if first is not None and s is first else (
            "  over" if s.index >= 0 and not s.rel <= tol else "")
        lines.append(f"{s.name:<12} {s.max_abs:10.3e} {s.mean_abs:10.3e} {s.ref_max:10.3e} "
                     f"{s.rel:10.3e}{flag}")
    lines.append(f"top-1 agreement: {report.top1_agree}/{report.n_tokens} positions")
    if first is None:
        lines.append(f"all stages within tolerance (rel <= {tol:g})")
    else:
        lines.append(f"first stage over tolerance (rel > {tol:g}): {first.name}"
                     + ("" if first.index in (0, len(report.stages) - 1) else
                        f" -- look at blk.{first.index - 1}.* in the GGUF"))
    return "\n".join(lines)


# ---- model card from the file ----------------------------------------------------------------

INFO_SCHEMA_VERSION = 1
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


def _scalar(field_):
    """Value of a scalar / string GGUF field (None for arrays)."""
    from gguf import GGUFValueType
    t = field_.types[0]
    if t == GGUFValueType.ARRAY:
        return None
    raw = field_.parts[field_.data[0]]
    if t == GGUFValueType.STRING:
        return bytes(raw).decode("utf-8", "replace")
    v = raw.tolist()[0]
    if t == GGUFValueType.BOOL:
        return bool(v)
    if t == GGUFValueType.FLOAT32:
        return float(str(np.float32(v)))  # shortest float32 text: 1e-05, not 9.9999997e-06
    return float(v) if t == GGUFValueType.FLOAT64 else int(v)


def _array_len(field_) -> Optional[int]:
    from gguf import GGUFValueType
    return len(field_.data) if field_.types[0] == GGUFValueType.ARRAY else None


def _array_str(field_, i: int) -> Optional[str]:
    if not 0 <= i < len(field_.data):
        return None
    return bytes(field_.parts[field_.data[i]]).decode("utf-8", "replace")


def _human(n: float) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(int(n))


def model_info(path) -> dict:
    """Describe a GGUF file from its header, without running it (see docs/info_schema.json).

    Raises FileNotFoundError for a missing file and ModelFormatError when the gguf package
    cannot parse it."""
    try:
        from gguf import GGUFReader
    except ImportError as e:  # a runtime dependency, so this is an install problem
        raise MissingDependencyError(f"qwen3c info needs the gguf package ({e})") from None
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such GGUF file: {p}")
    try:
        r = GGUFReader(str(p))
    except Exception as e:  # gguf raises ValueError, struct / numpy errors on bad files
        raise ModelFormatError(f"{p}: not a readable GGUF file: {e}") from None
    fields = r.fields

    def get(key):
        f = fields.get(key)
        return None if f is None else _scalar(f)

    arch = get("general.architecture")
    arch_key = (lambda k: f"{arch}.{k}") if arch else (lambda k: k)

    # tensors: group by type
    types = {}
    n_params = 0
    total = 0
    for t in r.tensors:
        name = t.tensor_type.name
        e = types.setdefault(name, {"type": name, "n_tensors": 0, "n_elements": 0, "n_bytes": 0})
        e["n_tensors"] += 1
        e["n_elements"] += int(t.n_elements)
        e["n_bytes"] += int(t.n_bytes)
        n_params += int(t.n_elements)
        total += int(t.n_bytes)
    tensor_types = sorted(types.values(), key=lambda e: (-e["n_bytes"], e["type"]))
    names = {t.name for t in r.tensors}

    # tokenizer
    tok_field = fields.get("tokenizer.ggml.tokens")
    vocab = _array_len(tok_field) if tok_field is not None else None
    merges_f = fields.get("tokenizer.ggml.merges")
    special = {}
    for short, key in _SPECIAL_KEYS:
        tid = get(f"tokenizer.ggml.{key}")
        if isinstance(tid, int):
            special[short] = {"id": tid,
                              "text": _array_str(tok_field, tid) if tok_field is not None else None}
    if tok_field is not None and vocab:
        # the chat-format tokens are found by their text; added / special tokens sit at the
        # start (SmolLM2) or the end (Qwen3) of the vocabulary, so only those ranges are read
        wanted = dict((text, short) for short, text in _NAMED_SPECIALS)
        found = {}
        head = range(min(vocab, 1024))
        tail = range(max(len(head), vocab - 4096), vocab)
        for i in list(head) + list(tail):
            s = _array_str(tok_field, i)
            if s in wanted and wanted[s] not in found:
                found[wanted[s]] = i
        for short, _text in _NAMED_SPECIALS:
            if short in found and short not in special:
                special[short] = {"id": found[short], "text": _text}

    template = get("tokenizer.chat_template")
    general = {}
    for k in _GENERAL_FIELDS:
        v = get(f"general.{k}")
        if v is not None:
            general[k] = v

    def hp(key):
        v = get(arch_key(key))
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    emb = next((t for t in r.tensors if t.name == "token_embd.weight"), None)
    info = {
        "schema_version": INFO_SCHEMA_VERSION,
        "path": str(p),
        "file_size": p.stat().st_size,
        "gguf_version": get("GGUF.version"),
        "architecture": arch,
        "name": general.get("name"),
        "license": general.get("license"),
        "general": general,
        "parameter_count": n_params,
        "parameter_count_human": _human(n_params),
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
            "vocab_size": int(emb.shape[1]) if emb is not None and len(emb.shape) > 1 else None,
            "tied_embeddings": "output.weight" not in names,
        },
        "tensor_count": len(r.tensors),
        "tensor_bytes": total,
        "tensor_types": tensor_types,
        "tokenizer": {
            "present": tok_field is not None,
            "model": get("tokenizer.ggml.model"),
            "pre": get("tokenizer.ggml.pre"),
            "vocab_size": vocab,
            "merges": _array_len(merges_f) if merges_f is not None else None,
        },
        "special_tokens": special,
        "chat_template": {
            "present": isinstance(template, str) and bool(template),
            "chars": len(template) if isinstance(template, str) else None,
            "sha256": hashlib.sha256(template.encode("utf-8")).hexdigest()
            if isinstance(template, str) else None,
        },
        "metadata_keys": sorted(k for k in fields if not k.startswith("GGUF.")),
        "safe_to_load": True,
        "why": SAFE_WHY,
    }
    return info


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
    lines.append(f"  chat template   " + (f"present ({ct['chars']} chars)" if ct["present"] else "none"))
    lines.append(f"  safe to load    {'yes' if info['safe_to_load'] else 'no'}: {info['why']}")
    return "\n".join(lines)


# ---- command line ----------------------------------------------------------------------------

def _open_model(model, n_ctx: int = 0, n_threads: int = 0, activations: str = "q24",
                kv_cache: str = "f32"):
    """--model: a local .gguf path, or 'owner/repo[:file.gguf]' resolved by qwen3c.hub."""
    from .hub import resolve_model
    from .model import Model
    return Model(resolve_model(model), n_ctx=n_ctx, n_threads=n_threads,
                 activations=activations, kv_cache=kv_cache)


def _parse_tokens(text: str) -> list:
    try:
        ids = [int(t) for t in text.replace(" ", "").split(",") if t != ""]
    except ValueError:
        raise ValueError(f"--tokens must be comma-separated integers, got {text!r}") from None
    if not ids:
        raise ValueError("--tokens is empty")
    return ids


def _run(fn, argv, prog):
    """Run a command body; errors become one clear line on stderr and exit status 2."""
    try:
        return fn(argv)
    except (Qwen3cError, ValueError, TypeError, OSError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2


def _next_parser():
    ap = argparse.ArgumentParser(
        prog="qwen3c next",
        description="Show the most likely next tokens and their probabilities.")
    ap.add_argument("prompt", nargs="?", help="the prompt (a user message unless --raw)")
    ap.add_argument("--model", "-m", required=True, help="GGUF file (or owner/repo[:file.gguf])")
    ap.add_argument("--raw", action="store_true", help="continue the text as is (no chat template)")
    ap.add_argument("--no-think", action="store_true",
                    help="render the chat template with enable_thinking=False")
    ap.add_argument("--tokens", help="comma-separated token ids instead of a prompt")
    ap.add_argument("-k", "--top-k", type=int, default=10, dest="k", help="how many (default 10)")
    ap.add_argument("--json", action="store_true", help="print JSON")
    ap.add_argument("--threads", type=int, default=0)
    add_numerics_arguments(ap)
    return ap


def _next(argv):
    args = _next_parser().parse_args(argv)
    if (args.prompt is None) == (args.tokens is None):
        raise ValueError("give either a prompt or --tokens")
    with _open_model(args.model, n_threads=args.threads, activations=args.activations,
                     kv_cache=args.kv_cache) as m:
        src = _parse_tokens(args.tokens) if args.tokens else args.prompt
        ids = prompt_tokens(m, src, raw=args.raw, enable_thinking=not args.no_think)
        res = top_k(m, ids, k=args.k)
        V = m.config.vocab_size
    if args.json:
        print(json.dumps({"n_prompt_tokens": len(ids), "vocab_size": V,
                          "activations": args.activations, "kv_cache": args.kv_cache,
                          "top": [{"id": i, "text": t, "prob": p} for i, t, p in res]},
                         ensure_ascii=False))
        return 0
    mode = "token ids" if args.tokens else ("raw text" if args.raw else "chat template")
    print(f"{len(ids)} prompt tokens ({mode}); the model scored all {V:,} vocabulary tokens:")
    print(f"{'rank':>4} {'id':>7} {'prob':>8}  token")
    for rank, (i, t, p) in enumerate(res, 1):
        bar = "#" * int(round(p * 30))
        print(f"{rank:4d} {i:7d} {p:8.4f}  {repr(t) if t is not None else '-':<20} {bar}")
    print(f"top {len(res)} hold {sum(p for _, _, p in res):.4f} of the probability")
    return 0


def main_next(argv=None) -> int:
    """`python -m qwen3c next`: top-k next tokens with probabilities."""
    return _run(_next, sys.argv[1:] if argv is None else argv, "qwen3c next")


def _diff_parser():
    ap = argparse.ArgumentParser(
        prog="qwen3c diff",
        description="Compare the C engine with transformers layer by layer on one prompt.")
    ap.add_argument("--model", "-m", required=True, help="GGUF file (qwen3c side)")
    ap.add_argument("--hf", required=True,
                    help="HuggingFace model directory (or a .gguf transformers can load)")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--prompt", help="text, encoded with the GGUF's tokenizer (no chat template)")
    g.add_argument("--tokens", help="comma-separated token ids (for models without a tokenizer)")
    ap.add_argument("--tol", type=float, default=1e-4,
                    help="relative tolerance, max|d| / max|ref| per stage (default 1e-4)")
    ap.add_argument("--strict", action="store_true", help="exit 1 if a stage is over tolerance")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--threads", type=int, default=0)
    add_numerics_arguments(ap)
    return ap


def _diff(argv):
    args = _diff_parser().parse_args(argv)
    _need_torch()
    with _open_model(args.model, n_threads=args.threads, activations=args.activations,
                     kv_cache=args.kv_cache) as m:
        ids = _parse_tokens(args.tokens) if args.tokens else m.encode(args.prompt)
        if not ids:
            raise ValueError("the prompt encodes to no tokens")
        report = layer_diff(m, args.hf, ids)
    first = report.first_over(args.tol)
    if args.json:
        d = report.to_dict()
        d["tol"] = args.tol
        d["first_over"] = first.name if first else None
        print(json.dumps(d))
    else:
        print(f"qwen3c diff: {args.model} (activations {report.activations}, "
              f"{report.kv_cache} KV cache) vs {args.hf}, {report.n_tokens} tokens")
        print(format_diff(report, args.tol))
    return 1 if (args.strict and first is not None) else 0


def main_diff(argv=None) -> int:
    """`python -m qwen3c diff`: per-layer max/mean |delta| between C and PyTorch."""
    return _run(_diff, sys.argv[1:] if argv is None else argv, "qwen3c diff")


def _info(argv):
    from .system import cpu_info, describe
    ap = argparse.ArgumentParser(prog="qwen3c info",
                                 description="Describe a GGUF file (read only, nothing is run) and "
                                             "this machine: the CPU kernel tier, features, threads. "
                                             "Without a file: this machine only.")
    ap.add_argument("path", nargs="?", help="GGUF file")
    ap.add_argument("--json", action="store_true",
                    help="print JSON (stable; schema in docs/info_schema.json; without a file: "
                         "qwen3c.cpu_info())")
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
    return _run(_info, sys.argv[1:] if argv is None else argv, "qwen3c info")
