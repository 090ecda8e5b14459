"""See inside the model: next-token probabilities and a layer-by-layer diff against transformers
(the GGUF model card, `info`, is qwen3c.gguf_info; its names are re-exported here).

Library functions
    top_k(model, tokens_or_text, k=10, raw=False)  -> [(token_id, token_text, prob), ...]
    layer_diff(model, hf_dir_or_torch_model, tokens) -> DiffReport (per-layer |delta| stats)
    model_info(path)                                -> dict (the JSON of `info --json`;
                                                       qwen3c.gguf_info)

Command line (dispatched by `python -m qwen3c`)
    next --model x.gguf "text" [--raw] [-k N]      main_next(argv)
    diff --model x.gguf --hf HF_DIR --prompt "..."  main_diff(argv)
      (both also take --activations and --kv-cache, as the chat command does)
    info x.gguf [--json]                            main_info(argv)

torch and transformers are needed by `diff` only, and imported when it runs.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np

from .cli_options import add_numerics_arguments, add_plot_argument
from .errors import Qwen3cError
from .gguf_info import format_info, main_info, model_info

__all__ = ["top_k", "top_k_from_logits", "token_text", "softmax64", "prompt_tokens",
           "layer_diff", "hf_trace", "DiffReport", "StageDiff", "model_info", "format_info",
           "main_next", "main_diff", "main_info"]


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


def prompt_tokens(model, tokens_or_text, raw: bool = False, enable_thinking=None) -> list:
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


def top_k(model, tokens_or_text, k: int = 10, raw: bool = False, enable_thinking=None):
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
        model_type = json.loads((p / "config.json").read_text(encoding="utf-8")).get("model_type")
        if model_type == "qwen3_5":
            # Qwen3.5's official layout: AutoModelForCausalLM would build a Qwen3_5ForCausalLM
            # and miss the lm_head tied by the outer config
            m = transformers.Qwen3_5ForConditionalGeneration.from_pretrained(str(p), **kw)
        else:
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
    base = getattr(base, "language_model", base)  # Qwen3.5's ForConditionalGeneration layout
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
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg  # Qwen3.5's layout
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


# ---- shared by the viewing commands (next, diff, lens, attend, explain) -----------------------

def run_command(fn, argv, prog) -> int:
    """Run a command body under the exit-status rule: 2 for a usage error or a bad option value
    (argparse, parser.error), 1 for a runtime failure (a missing or malformed model file, ...)
    as one line on stderr, 130 when interrupted (Ctrl-C)."""
    try:
        return fn(argv)
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return 130
    except (Qwen3cError, ValueError, TypeError, OSError, MemoryError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return 1


def prompt_source(parser, args):
    """Check the prompt options (cli_options.add_prompt_arguments) before the model is loaded:
    the ids of --tokens, or the prompt text. Usage errors exit 2 through parser.error."""
    if (args.prompt is None) == (args.tokens is None):
        parser.error("give either a prompt or --tokens")
    if args.tokens is None:
        if not args.prompt.strip():
            parser.error("the prompt is empty")
        return args.prompt
    try:
        return _parse_tokens(args.tokens)
    except ValueError as e:
        parser.error(str(e))


def prompt_ids(parser, args, model, source) -> tuple:
    """(token ids, how they were made) for prompt_source's result on a loaded model."""
    if not isinstance(source, str):
        V = model.config.vocab_size
        bad = [t for t in source if not 0 <= t < V]
        if bad:
            parser.error(f"--tokens: id {bad[0]} is outside the vocabulary [0, {V})")
        return list(source), "token ids"
    ids = prompt_tokens(model, source, raw=args.raw, enable_thinking=not args.no_think)
    return ids, "raw text" if args.raw else "chat template"


def open_model_for(args, n_ctx: int = 0):
    """The Model of --model with --threads, --activations and --kv-cache."""
    return _open_model(args.model, n_ctx=n_ctx, n_threads=args.threads,
                       activations=args.activations, kv_cache=args.kv_cache)


@contextlib.contextmanager
def command_model(parser, args):
    """`with command_model(parser, args) as (model, ids, mode):` for a command with the prompt
    options: the prompt checked before the model is loaded, then the model and the ids."""
    source = prompt_source(parser, args)
    with open_model_for(args) as m:
        ids, mode = prompt_ids(parser, args, m, source)
        yield m, ids, mode


def plot_or_hint(args, plot_name: str, *data, prog: str, **kw) -> None:
    """Draw qwen3c.plots.<plot_name>(*data, path=args.plot) when --plot was given; without
    matplotlib say how to get the picture (the table printed before has the same numbers)."""
    if not args.plot:
        return
    from . import plots
    try:
        plots.require()
    except MissingDependencyError as e:
        print(f"{prog}: no picture written: {e}", file=sys.stderr)
        return
    getattr(plots, plot_name)(*data, path=args.plot, **kw)
    print(f"{prog}: wrote {args.plot}", file=sys.stderr)


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
    add_plot_argument(ap, "a bar chart of the top-k probabilities, the greedy pick marked")
    return ap


def _next(argv):
    args = _next_parser().parse_args(argv)
    if (args.prompt is None) == (args.tokens is None):
        raise ValueError("give either a prompt or --tokens")
    with _open_model(args.model, n_threads=args.threads, activations=args.activations,
                     kv_cache=args.kv_cache) as m:
        src = _parse_tokens(args.tokens) if args.tokens else args.prompt
        ids = prompt_tokens(m, src, raw=args.raw, enable_thinking=False if args.no_think else None)
        res = top_k(m, ids, k=args.k)
        V = m.config.vocab_size
    if args.json:
        print(json.dumps({"n_prompt_tokens": len(ids), "vocab_size": V,
                          "activations": args.activations, "kv_cache": args.kv_cache,
                          "top": [{"id": i, "text": t, "prob": p} for i, t, p in res]},
                         ensure_ascii=False))
        plot_or_hint(args, "plot_next", res, vocab_size=V, prog="qwen3c next")
        return 0
    mode = "token ids" if args.tokens else ("raw text" if args.raw else "chat template")
    print(f"{len(ids)} prompt tokens ({mode}); the model scored all {V:,} vocabulary tokens:")
    print(f"{'rank':>4} {'id':>7} {'prob':>8}  token")
    for rank, (i, t, p) in enumerate(res, 1):
        bar = "#" * int(round(p * 30))
        print(f"{rank:4d} {i:7d} {p:8.4f}  {repr(t) if t is not None else '-':<20} {bar}")
    print(f"top {len(res)} hold {sum(p for _, _, p in res):.4f} of the probability")
    plot_or_hint(args, "plot_next", res, vocab_size=V, prog="qwen3c next")
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
    add_plot_argument(ap, "the relative error of every stage on a log scale")
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
    plot_or_hint(args, "plot_diff", report, tol=args.tol, prog="qwen3c diff")
    return 1 if (args.strict and first is not None) else 0


def main_diff(argv=None) -> int:
    """`python -m qwen3c diff`: per-layer max/mean |delta| between C and PyTorch."""
    return _run(_diff, sys.argv[1:] if argv is None else argv, "qwen3c diff")
