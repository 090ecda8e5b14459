"""`qwen3c attend`: where every token's attention goes, as a table and as heatmaps.

    qwen3c attend --model x.gguf "The capital of France is Paris"            the last layer's heads
    qwen3c attend --model x.gguf "..." --layer 3 --head 5 --out attn.png     one head
    qwen3c attend --model x.gguf "..." --layer all --out layers.png          every layer, heads averaged

The numbers are Model.attention(tokens): softmax(q k^T / sqrt(head_dim) + causal mask) per layer,
head, query token and key token, as transformers' output_attentions (eager) returns them.
Selection: --layer picks one layer (default the last; negative counts from the end) or `all`;
--head picks one head or `mean` (heads averaged); without --head the picture is a grid of all
heads of the layer (of all layers, heads averaged, with --layer all). The table always shows one
matrix: the head given, else the heads' average.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Tuple

import numpy as np

from .cli_options import add_plot_argument, add_prompt_arguments
from .introspect import command_model, plot_or_hint, run_command, token_text
from .labels import token_label

__all__ = ["select_attention", "format_attention", "main_attend"]


def _int_or(word: str, what: str):
    """An argparse type: an int, or the one word given."""
    def parse(value: str):
        if value == word:
            return value
        try:
            return int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a {what} number or '{word}', got {value!r}") from None
    return parse


def _check_index(what: str, i: int, n: int) -> int:
    if not -n <= i < n:
        raise IndexError(f"{what} {i} does not exist: the model has {n} {what}s (0..{n - 1})")
    return i % n


def select_attention(attn: np.ndarray, layer=-1, head=None) -> Tuple[List[tuple], np.ndarray, str]:
    """Pick what to show from Model.attention's (L, NH, n, n) array.

    layer: an index (negative from the end) or "all"; head: an index, "mean" or None.
    Returns (panels [(title, (n, n) matrix)], the one matrix the table shows, a description).
    IndexError names a layer or head that does not exist."""
    L, NH = attn.shape[:2]
    if head is not None and head != "mean":
        head = _check_index("head", head, NH)
    if layer == "all":
        if head is None or head == "mean":
            panels = [(f"layer {l}", attn[l].mean(0)) for l in range(L)]
            return panels, attn.mean((0, 1)), f"all {L} layers, heads averaged"
        panels = [(f"layer {l}, head {head}", attn[l, head]) for l in range(L)]
        return panels, attn[:, head].mean(0), f"head {head} of all {L} layers"
    l = _check_index("layer", layer, L)
    where = f"layer {l} of {L}"
    if head is None:
        panels = [(f"head {h}", attn[l, h]) for h in range(NH)]
        return panels, attn[l].mean(0), f"{where}, {NH} heads"
    if head == "mean":
        return [(f"layer {l}, heads averaged", attn[l].mean(0))], attn[l].mean(0), \
            f"{where}, heads averaged"
    return [(f"layer {l}, head {head}", attn[l, head])], attn[l, head], f"{where}, head {head}"


def format_attention(matrix: np.ndarray, labels: List[str], top: int = 3) -> str:
    """Per query token: the `top` tokens it attends to most, with their probabilities."""
    width = min(max(len(s) for s in labels), 16) + 2
    lines = [f"{'':>4} {'query':<{width}} attends to (top {top})"]
    for t, row in enumerate(matrix):
        best = sorted(range(t + 1), key=lambda s: (-row[s], s))[:top]
        cells = "  ".join(f"{s}:{labels[s][:16]} {row[s]:.2f}" for s in best)
        lines.append(f"{t:>4} {labels[t][:16]:<{width}} {cells}")
    return "\n".join(lines)


# ---- command line ----------------------------------------------------------------------------

def _parser():
    ap = argparse.ArgumentParser(
        prog="qwen3c attend",
        description="Show where each token's attention goes: a table per query token and, with "
                    "--out, heatmaps (a grid of heads unless --head is given).")
    add_prompt_arguments(ap, raw_default=True)
    ap.add_argument("--layer", type=_int_or("all", "layer"), default=-1,
                    help="layer number (negative: from the end; default the last), or 'all'")
    ap.add_argument("--head", type=_int_or("mean", "head"),
                    help="head number, or 'mean' (heads averaged); default: all heads (a grid)")
    ap.add_argument("--top", type=int, default=3, help="keys per query in the table (default 3)")
    ap.add_argument("--json", action="store_true", help="print the selected matrices as JSON")
    add_plot_argument(ap, "attention heatmaps with token labels", flag="--out")
    return ap


def _attend(argv):
    ap = _parser()
    args = ap.parse_args(argv)
    if args.top < 1:
        ap.error(f"--top must be >= 1, got {args.top}")
    with command_model(ap, args) as (m, ids, mode):
        try:
            select_attention(np.zeros((m.config.n_layers, m.config.n_heads, 1, 1)), args.layer,
                             args.head)
        except IndexError as e:
            ap.error(str(e))
        attn = m.attention(ids)
        texts = [token_text(m, i) for i in ids]
    panels, matrix, what = select_attention(attn, args.layer, args.head)
    labels = [token_label(t, i) for t, i in zip(texts, ids)]
    if args.json:
        print(json.dumps({
            "tokens": [{"id": i, "text": t} for i, t in zip(ids, texts)], "mode": mode,
            "n_layers": int(attn.shape[0]), "n_heads": int(attn.shape[1]),
            "layer": args.layer, "head": args.head, "selection": what,
            "panels": [{"title": name, "attention": np.round(a, 6).tolist()} for name, a in panels]},
            ensure_ascii=False))
    else:
        print(f"{len(ids)} tokens ({mode}); attention of {what}"
              + ("" if args.head is not None and args.head != "mean" else "; the table averages the heads"))
        print(format_attention(matrix, labels, args.top))
    plot_or_hint(args, "plot_attention", panels, list(zip(ids, texts)), prog="qwen3c attend",
                 title=f"attention: {what}")
    return 0


def main_attend(argv=None) -> int:
    """`python -m qwen3c attend`: attention tables and heatmaps."""
    return run_command(_attend, sys.argv[1:] if argv is None else argv, "qwen3c attend")
