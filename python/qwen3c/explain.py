"""`qwen3c explain`: one self-contained HTML page that explains a generated answer.

    qwen3c explain --model x.gguf --prompt "What is the capital of France?" --out explain.html

The page shows the answer with every token shaded by the probability the model gave it. Hovering
or clicking a token shows what the model computed at the step that produced it:

  - its top-10 alternatives (the softmax over all vocab_size logits at that step),
  - where that step's attention went over the prompt and the answer so far (heads averaged; one
    layer or the mean of all layers),
  - its logit-lens row: the most likely token after every layer, and the probability of the
    chosen token there.

"The step that produced token i" is the forward pass of the token before it, so the attention
shown for a token is the row of the query one position earlier: what the model looked at when it
chose this token.

The file has no external references (inline CSS, JS and SVG; the data as JSON in a
<script type="application/json"> block with <, > and & escaped, so no token text can end the
block). It opens from disk, offline, in any current browser.

Library: explain_data(model, prompt_ids, ...) -> dict, render_html(data) -> str.
"""
from __future__ import annotations

import argparse
import html
import json
import re
import sys
from importlib import resources
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .cli_options import add_prompt_arguments
from .introspect import command_model, run_command, softmax64, token_text, top_k_from_logits
from .labels import token_label
from .lens import lens_rows, rank_of

__all__ = ["explain_data", "render_html", "main_explain", "DATA_VERSION"]

DATA_VERSION = 1
N_ALTERNATIVES = 10
ATTN_SCALE = 10000  # attention weights are stored as integers in units of 1/ATTN_SCALE


def _token(model, token_id: int) -> dict:
    """A token for the page: id, text (bytes that are no UTF-8 on their own as \\xNN), the
    visible label, and whether it is a control / chat-format token (<|im_end|>, <think>)."""
    text = token_text(model, token_id)
    kind = model.tokenizer.token_type(token_id)
    special = kind == 3 or (kind == 4 and text.startswith("<") and text.endswith(">"))
    return {"id": int(token_id), "text": text, "label": token_label(text, token_id),
            "special": bool(special)}


def explain_data(model, prompt: Sequence[int], max_tokens: int = 48, sampler=None,
                 prompt_text: Optional[str] = None, mode: str = "token ids") -> dict:
    """Generate an answer to `prompt` (token ids) and gather everything the page shows.

    sampler: a qwen3c.Sampler (default greedy). Returns a JSON-ready dict: the prompt and answer
    tokens; per answer token its probability, rank, top-10 alternatives, attention over the
    context per layer (heads averaged) and its logit-lens row. Runs the prompt from position 0
    (the model's KV cache is overwritten)."""
    from .sampler import Sampler

    prompt = [int(t) for t in prompt]
    if not prompt:
        raise ValueError("the prompt is empty")
    sampler = sampler or Sampler(temperature=0.0)
    gen = model.generate(prompt, max_tokens=max_tokens, sampler=sampler, reuse_cache=False)
    for _ in gen:
        pass
    answer = list(gen.tokens) + ([gen.stop_token] if gen.stop_token is not None else [])
    if not answer:
        raise ValueError("the model generated no token")
    n_p, n_a = len(prompt), len(answer)
    # one forward over the steps that produced the answer: step i runs the token before answer[i]
    if n_p > 1:
        model.forward(prompt[:-1], pos=0)
    steps = [prompt[-1]] + answer[:-1]
    logits, hidden, attn = model.forward_attention(steps, pos=n_p - 1)
    heads_mean = attn.mean(axis=1)  # (L, n_a, n_p - 1 + n_a)
    lens = lens_rows(model, hidden, range(n_a), answer, k=1)
    c = model.config
    tokens = []
    for i, tok in enumerate(answer):
        p = softmax64(logits[i])
        n_keys = n_p + i  # positions 0 .. n_p - 1 + i
        entry = _token(model, tok)
        entry.update({
            "p": float(p[tok]),
            "rank": rank_of(p, tok),
            "alts": [[j, token_label(token_text(model, j), j), pj]
                     for j, pj in top_k_from_logits(logits[i], N_ALTERNATIVES)],
            "attn": np.rint(heads_mean[:, i, :n_keys] * ATTN_SCALE).astype(int).tolist(),
            "lens": [[r.top[0][0], token_label(r.top[0][1], r.top[0][0]), r.top[0][2],
                      r.target_prob, r.target_rank] for r in lens[i]],
        })
        tokens.append(entry)
    return {
        "version": DATA_VERSION,
        "model": {"file": Path(getattr(model, "path", "model")).name, "arch": c.arch,
                  "n_layers": c.n_layers, "n_heads": c.n_heads, "vocab_size": c.vocab_size,
                  "activations": getattr(model, "activations", None),
                  "kv_cache": getattr(model, "kv_cache", None)},
        "prompt_text": prompt_text,
        "mode": mode,
        "sampler": {k: getattr(sampler, k, None) for k in ("temperature", "top_k", "top_p", "seed")},
        "finish_reason": gen.finish_reason,
        "layers": ["embedding"] + [f"layer {l}" for l in range(c.n_layers)],
        "attn_scale": ATTN_SCALE,
        "prompt": [_token(model, t) for t in prompt],
        "answer": tokens,
    }


def _json_for_script(data: dict) -> str:
    """JSON that is safe inside <script type="application/json">: ASCII only, and <, >, & as
    \\u escapes (JSON.parse reads them back), so no text can close the block or start a comment."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(data: dict) -> str:
    """The page: the template (explain.html, next to this module) with the data inlined."""
    template = resources.files(__package__).joinpath("explain.html").read_text(encoding="utf-8")
    title = "qwen3c explain"
    if data.get("prompt_text"):
        title += ": " + " ".join(data["prompt_text"].split())[:80]
    fill = {"TITLE": html.escape(title), "DATA": _json_for_script(data)}
    # one pass, so that a prompt spelling a marker cannot be filled in again
    return re.sub(r"__QWEN3C_(TITLE|DATA)__", lambda mt: fill[mt.group(1)], template)


# ---- command line ----------------------------------------------------------------------------

def _parser():
    ap = argparse.ArgumentParser(
        prog="qwen3c explain",
        description="Generate an answer and write one self-contained HTML page explaining it: "
                    "every token shaded by its probability; hover or click a token for its "
                    "top-10 alternatives, its attention over the prompt and its logit lens.")
    add_prompt_arguments(ap)
    ap.add_argument("--prompt", dest="prompt_opt", metavar="TEXT",
                    help="the prompt (same as the positional argument)")
    ap.add_argument("--out", "-o", required=True, metavar="FILE.html", help="the page to write")
    ap.add_argument("--max-tokens", type=int, default=48, help="answer tokens (default 48)")
    ap.add_argument("--temperature", type=float, default=0.0, help="default 0: greedy")
    ap.add_argument("--top-k", type=int, default=0, help="default 0: off")
    ap.add_argument("--top-p", type=float, default=1.0, help="default 1: off")
    ap.add_argument("--seed", type=int, default=0)
    return ap


def _explain(argv):
    from .sampler import Sampler

    ap = _parser()
    args = ap.parse_args(argv)
    if args.prompt_opt is not None:
        if args.prompt is not None:
            ap.error("give the prompt once (positional or --prompt)")
        args.prompt = args.prompt_opt
    if args.max_tokens < 1:
        ap.error(f"--max-tokens must be >= 1, got {args.max_tokens}")
    try:
        sampler = Sampler(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                          seed=args.seed)
    except (ValueError, TypeError) as e:
        ap.error(str(e))
    out = Path(args.out)
    with command_model(ap, args) as (m, ids, mode):
        print(f"qwen3c explain: {len(ids)} prompt tokens ({mode}); generating up to "
              f"{args.max_tokens} tokens ...", file=sys.stderr)
        data = explain_data(m, ids, max_tokens=args.max_tokens, sampler=sampler,
                            prompt_text=args.prompt, mode=mode)
    page = render_html(data)
    out.write_text(page, encoding="utf-8")
    answer = "".join(t["text"] for t in data["answer"] if not t["special"])
    print(answer)
    print(f"qwen3c explain: wrote {out} ({len(data['answer'])} answer tokens, "
          f"{len(page.encode('utf-8')) / 1e3:.0f} kB)", file=sys.stderr)
    return 0


def main_explain(argv=None) -> int:
    """`python -m qwen3c explain`: the answer as an explained HTML page."""
    return run_command(_explain, sys.argv[1:] if argv is None else argv, "qwen3c explain")
