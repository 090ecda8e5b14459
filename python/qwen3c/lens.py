"""The logit lens: what would the model say if it stopped after layer l?

The residual stream after every decoder layer has the same width as the last one, so the model's
own final norm and LM head can read it early: softmax(lm_head(norm(hidden[l]))) is the next-token
distribution "layer l has in mind". Watching the final answer's probability rise through the
layers shows where the answer forms. After the last layer the lens *is* the model's output (the
same C rmsnorm + LM head, `Model.lm_head`), so its last row equals the next-token probabilities
of `next` to float rounding.

    report = logit_lens(model, "What is the capital of France?", k=5)
    for row in report.rows:   # embedding, layer 0, ..., layer L-1
        print(row.name, row.target_prob, row.top[0])

Command line: `qwen3c lens --model x.gguf "text" [-k N] [--plot lens.png]` (main_lens).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Sequence

import numpy as np

from .cli_options import add_plot_argument, add_prompt_arguments
from .introspect import command_model, plot_or_hint, run_command, softmax64, token_text
from .labels import token_label

__all__ = ["LensRow", "LensReport", "logit_lens", "lens_rows", "rank_of", "format_lens",
           "main_lens"]


@dataclass
class LensRow:
    """One layer's reading of the residual stream at one position."""

    name: str                 # "embedding", "layer 0", ..., "layer L-1"
    index: int                # row of forward_trace's hidden array (0 = embedding)
    top: List[tuple]          # [(token_id, token_text, prob), ...], most likely first
    target_prob: float        # probability of the target token at this layer
    target_rank: int          # its rank (1 = the top token)


@dataclass
class LensReport:
    """The logit lens at one position: `rows` from the embedding up to the last layer."""

    tokens: List[int]         # the prompt
    position: int             # the position read (the next token after tokens[position])
    target: int               # the token followed through the layers (default: the final argmax)
    target_text: Optional[str]
    rows: List[LensRow] = field(default_factory=list)

    @property
    def final(self) -> LensRow:
        return self.rows[-1]

    def first_layer_with_target_on_top(self) -> Optional[LensRow]:
        """The lowest layer from which on the target stays the most likely token, or None."""
        first = None
        for row in self.rows:
            if row.target_rank == 1:
                first = first or row
            else:
                first = None
        return first

    def to_dict(self) -> dict:
        return asdict(self)


def _row_names(n_layers: int) -> List[str]:
    return ["embedding"] + [f"layer {l}" for l in range(n_layers)]


def rank_of(p: np.ndarray, token: int) -> int:
    """1 + the number of tokens ahead of `token` (higher probability, or equal and a lower id:
    the order of top_k)."""
    return int((p > p[token]).sum() + (p[:token] == p[token]).sum() + 1)


def lens_rows(model, hidden, positions: Sequence[int], targets: Sequence[int], k: int = 5):
    """The lens on hidden states already computed (`forward_trace`'s hidden, (L + 2, n, dim)).

    For each position p (an index into hidden's token axis) and the matching target token:
    [LensRow per layer (embedding, layer 0 .. L-1)]. One LM head call per layer covers all
    positions, so a long answer costs L + 1 batched matmuls."""
    hidden = np.asarray(hidden)
    L = hidden.shape[0] - 2
    positions = [int(p) for p in positions]
    targets = [int(t) for t in targets]
    if len(positions) != len(targets):
        raise ValueError("one target per position")
    out = [[] for _ in positions]
    for index, name in enumerate(_row_names(L)):
        logits = np.atleast_2d(model.lm_head(hidden[index, positions]))
        for j, (lg, target) in enumerate(zip(logits, targets)):
            p = softmax64(lg)
            kk = min(k, p.size)
            top = np.argpartition(-p, kk - 1)[:kk] if kk < p.size else np.arange(p.size)
            top = sorted(top.tolist(), key=lambda i: (-p[i], i))
            out[j].append(LensRow(name=name, index=index,
                                  top=[(int(i), token_text(model, i), float(p[i])) for i in top],
                                  target_prob=float(p[target]), target_rank=rank_of(p, target)))
    return out


def logit_lens(model, tokens: Sequence[int], k: int = 5, position: int = -1,
               target: Optional[int] = None) -> LensReport:
    """The logit lens at one position of a forward over `tokens` (from position 0).

    k: how many top tokens per layer. position: which token's prediction (default the last:
    the next token after the prompt). target: the token whose probability is followed through
    the layers; default the model's final pick (the argmax of its logits at that position).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    tokens = [int(t) for t in tokens]
    if not tokens:
        raise ValueError("the logit lens needs at least one token")
    if not -len(tokens) <= position < len(tokens):
        raise ValueError(f"position {position} is outside the {len(tokens)} tokens")
    position %= len(tokens)
    logits, hidden = model.forward_trace(tokens)
    if target is None:
        target = int(np.argmax(logits[position]))
    elif not 0 <= int(target) < model.config.vocab_size:
        raise ValueError(f"target token {target} is outside the vocabulary")
    (rows,) = lens_rows(model, hidden, [position], [int(target)], k=k)
    return LensReport(tokens=tokens, position=position, target=int(target),
                      target_text=token_text(model, int(target)), rows=rows)


# ---- text ------------------------------------------------------------------------------------

def format_lens(report: LensReport) -> str:
    t = token_label(report.target_text, report.target)
    k = len(report.final.top)
    lines = [f"{'layer':<10} {'p(' + t + ')':>12} {'rank':>6}   top {k}"]
    for row in report.rows:
        top = "  ".join(f"{token_label(tt, i, 16)} {p:.2f}" for i, tt, p in row.top)
        lines.append(f"{row.name:<10} {row.target_prob:12.4f} {row.target_rank:6d}   {top}")
    first = report.first_layer_with_target_on_top()
    lines.append(f"'{t}' is the most likely token from {first.name} on" if first else
                 f"'{t}' is not the most likely token at the last layer")
    return "\n".join(lines)


# ---- command line ----------------------------------------------------------------------------

def _parser():
    ap = argparse.ArgumentParser(
        prog="qwen3c lens",
        description="The logit lens: the model's final norm and LM head applied to the residual "
                    "stream after every layer, so you can watch the next token form.")
    add_prompt_arguments(ap)
    ap.add_argument("-k", "--top-k", type=int, default=5, dest="k",
                    help="top tokens per layer (default 5)")
    ap.add_argument("--target", type=int, metavar="ID",
                    help="follow this token id (default: the model's final pick)")
    ap.add_argument("--json", action="store_true", help="print JSON")
    add_plot_argument(ap, "PNG: layers x top tokens, shaded by probability")
    return ap


def _lens(argv):
    ap = _parser()
    args = ap.parse_args(argv)
    if args.k < 1:
        ap.error(f"-k must be >= 1, got {args.k}")
    with command_model(ap, args) as (m, ids, mode):
        if args.target is not None and not 0 <= args.target < m.config.vocab_size:
            ap.error(f"--target {args.target} is outside the vocabulary [0, {m.config.vocab_size})")
        report = logit_lens(m, ids, k=args.k, target=args.target)
    if args.json:
        d = report.to_dict()
        d["mode"] = mode
        print(json.dumps(d, ensure_ascii=False))
    else:
        print(f"{len(ids)} prompt tokens ({mode}); the logit lens at the last position, "
              f"following '{token_label(report.target_text, report.target)}' (id {report.target}):")
        print(format_lens(report))
    plot_or_hint(args, "plot_lens", report, prog="qwen3c lens")
    return 0


def main_lens(argv=None) -> int:
    """`python -m qwen3c lens`: the logit lens, layer by layer."""
    return run_command(_lens, sys.argv[1:] if argv is None else argv, "qwen3c lens")
