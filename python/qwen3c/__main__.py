"""The `qwen3c` command: chat with a GGUF model, or inspect one.

    qwen3c --model x.gguf                       interactive chat (readline, streamed)
    qwen3c --model x.gguf --prompt "Hi"         answer once: the answer on stdout
    qwen3c convert ... | diff ... | next ... | info ... | audit ...     (see docs/cli.md)
    qwen3c lens ... | attend ... | explain ...              (see docs/inspect.md)

Errors are one line on stderr. Exit status (every subcommand, docs/cli.md): 0 success, 2 a bad
command line (unknown option, bad or out-of-range value), 1 a runtime failure (missing or
malformed file, model not available, context overflow ...), 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from .cli_options import (MAX_CTX, MAX_THREADS, UsageError, add_numerics_arguments, float_in,
                          int_in, run_command)
from .util import plural

DIM, RESET = "\x1b[2m", "\x1b[0m"
SUBCOMMANDS = {
    "convert": ("qwen3c.convert", "main"),
    "diff": ("qwen3c.introspect", "main_diff"),
    "next": ("qwen3c.introspect", "main_next"),
    "info": ("qwen3c.gguf_info", "main_info"),
    "audit": ("qwen3c.audit", "main"),
    "serve": ("qwen3c.serve", "main"),
    "lens": ("qwen3c.lens", "main_lens"),
    "attend": ("qwen3c.attend", "main_attend"),
    "explain": ("qwen3c.explain", "main_explain"),
}


def _on_off(value: str) -> bool:
    v = value.lower()
    if v in ("on", "true", "yes", "1"):
        return True
    if v in ("off", "false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    p = argparse.ArgumentParser(
        prog="qwen3c",
        description="Chat with a GGUF language model on qwen3c's C inference engine: Qwen3 "
                    "(architecture qwen3) or a llama-architecture model such as SmolLM2. "
                    "Subcommands: convert, diff, next, info, audit, serve, lens, attend, explain "
                    "(qwen3c SUBCOMMAND --help).",
        epilog="Exit status: 0 success, 1 runtime failure (missing or malformed file, model "
               "not available, ...), 2 bad command line, 130 interrupted.")
    p.add_argument("--version", action="version", version=f"qwen3c {__version__}")
    p.add_argument("--model", help="a .gguf file, a HuggingFace repo id (owner/repo or "
                   "owner/repo:file.gguf); default Qwen/Qwen3-0.6B-GGUF (Q8_0)")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--thinking", type=_on_off, default=None, metavar="on|off",
                   help="let the model think before answering (default: as the model's chat "
                        "template says -- Qwen3: on, Qwen3.5-0.8B / -2B: off; a template without "
                        "a thinking switch, as SmolLM2's: off)")
    p.add_argument("--multi-turn", type=_on_off, default=True, metavar="on|off",
                   help="keep the conversation (default on); off: each question is fresh")
    p.add_argument("--prompt", help="answer this once and exit (answer on stdout, thinking "
                   "and diagnostics on stderr)")
    # value ranges: those of qwen3c.Sampler and the C core (a value outside is exit status 2)
    p.add_argument("--temperature", type=float_in(0.0), metavar="F",
                   help=">= 0; 0 = greedy (default 0.6 thinking, 0.7 not)")
    p.add_argument("--top-k", type=int_in(0, 2**31 - 1), metavar="N",
                   help=">= 0; 0 = off (default 20)")
    p.add_argument("--top-p", type=float_in(0.0, 1.0, lo_open=True), metavar="F",
                   help="in (0, 1]; 1 = off (default 0.95 thinking, 0.8 not)")
    p.add_argument("--min-p", type=float_in(0.0, 1.0), metavar="F",
                   help="in [0, 1]; 0 = off (default 0)")
    p.add_argument("--presence-penalty", type=float_in(), metavar="F",
                   help="default 0 (Qwen suggests 0..2 against repetitions)")
    p.add_argument("--seed", type=int_in(0, 2**64 - 1), metavar="N",
                   help="random seed for reproducible sampling (0 .. 2^64-1)")
    p.add_argument("--max-tokens", type=int_in(1), metavar="N",
                   help="cap on tokens per answer, >= 1 (default: until the end of the turn "
                        "or a full context)")
    p.add_argument("--ctx", type=int_in(16, MAX_CTX), default=4096, metavar="N",
                   help=f"context length in tokens, 16..{MAX_CTX} (default 4096)")
    p.add_argument("--threads", type=int_in(0, MAX_THREADS), default=0, metavar="N",
                   help=f"threads, 0..{MAX_THREADS} (default 0: all cores)")
    add_numerics_arguments(p)
    p.add_argument("--verbose", action="store_true", help="timings and token counts on stderr")
    p.add_argument("--show-probs", type=int_in(0), nargs="?", const=5, default=0, metavar="N",
                   help="for every generated token, show its probability and the N (default 5) "
                        "most likely alternatives")
    return p


class _Printer:
    """Writes Chat pieces: answer as is; thinking dimmed on a terminal, else between
    <think> and </think> lines (or to a separate stream)."""

    def __init__(self, out, think_out=None):
        self.out = out
        self.think_out = think_out or out
        self.tty = _isatty(self.think_out)
        self.kind = None

    def write(self, piece):
        kind = getattr(piece, "kind", "answer")
        if kind != self.kind:
            self._close()
            if kind == "thinking":
                self.think_out.write(DIM if self.tty else "<think>\n")
            self.kind = kind
        (self.think_out if kind == "thinking" else self.out).write(piece)
        (self.think_out if kind == "thinking" else self.out).flush()

    def _close(self):
        if self.kind == "thinking":
            self.think_out.write(RESET + "\n" if self.tty else "\n</think>\n")
            self.think_out.flush()

    def finish(self):
        self._close()
        self.kind = None
        self.out.write("\n")
        self.out.flush()


def _isatty(f) -> bool:
    try:
        return f.isatty()
    except (AttributeError, ValueError):
        return False


def _token_text(model, tid) -> str:
    return json.dumps(model.token_to_bytes(tid).decode("utf-8", "replace"), ensure_ascii=False)


def probs_printer(model, n, out):
    """An on_token callback printing, per generated token, its probability under the model
    (softmax of the logits) and the n most likely alternatives."""
    state = {"i": 0}

    def on_token(tok, logits):
        x = np.asarray(logits, dtype=np.float64)
        p = np.exp(x - x.max())
        p /= p.sum()
        top = np.argpartition(-p, min(n, len(p) - 1))[:n + 1]
        top = top[np.argsort(-p[top], kind="stable")]
        others = [t for t in top if t != tok][:n]
        alts = "  ".join(f"{_token_text(model, t)} {p[t]:.1%}" for t in others)
        out.write(f"{state['i']:4d} {_token_text(model, tok):>14} {p[tok]:7.2%}   | {alts}\n")
        out.flush()
        state["i"] += 1

    return on_token


def _stats_line(gen, load_s=None) -> str:
    s = gen.stats()
    parts = [f"prompt {plural(s['n_prompt_tokens'], 'token')} ({s['n_cached']} cached, "
             f"{s['n_prefilled']} prefilled"]
    parts[0] += f", {s['prefill_tok_s']:.1f} tok/s)" if s["prefill_tok_s"] else ")"
    parts.append(f"generated {s['n_generated']}"
                 + (f" at {s['decode_tok_s']:.1f} tok/s" if s["decode_tok_s"] else ""))
    if s["time_to_first_token"] is not None:
        parts.append(f"first token after {s['time_to_first_token'] * 1000:.0f} ms")
    parts.append(f"finish {s['finish_reason']}")
    if load_s is not None:
        parts.append(f"load {load_s:.2f} s")
    return "[" + "; ".join(parts) + "]"


def answer(chat, text, out, err, *, one_shot=False, verbose=False, show_probs=False):
    """Stream one answer. Returns the Generation (for stats)."""
    printer = _Printer(out, think_out=err if one_shot else out)
    stream = chat.stream(text)     # raises ContextOverflowError before anything is printed
    try:
        for piece in stream:
            if not show_probs:
                printer.write(piece)
    finally:
        if not show_probs:
            printer.finish()
        if verbose and chat.last.finish_reason is not None:
            err.write(_stats_line(chat.last) + "\n")
            err.flush()
    if chat.last.finish_reason == "context":
        err.write("[the context is full: start a new conversation or use a larger --ctx]\n")
    return chat.last


def interactive(chat, out=None, err=None, *, verbose=False, show_probs=False) -> None:
    """The read-answer loop. Empty line or Ctrl-D exits; Ctrl-C stops the current answer.
    Commands: /think, /no_think (alone on a line: switch thinking on/off), /reset."""
    from .chat import NO_THINKING_MODE
    from .errors import ContextOverflowError
    out = out or sys.stdout
    err = err or sys.stderr
    tty = _isatty(sys.stdin)
    if tty:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
        mode = ("this model's chat template has no thinking mode" if chat.thinking_switch is False
                else "thinking as the chat template's default" if chat.thinking is None
                else f"thinking {'on' if chat.thinking else 'off'}")
        err.write(f"qwen3c chat ({mode}) -- empty line or Ctrl-D to quit, Ctrl-C stops an "
                  "answer; /think, /no_think, /reset\n")
    while True:
        try:
            line = input("> " if tty else "")
        except EOFError:
            break
        except KeyboardInterrupt:
            err.write("\n")
            continue
        text = line.strip()
        if not text:
            break
        if text in ("/think", "/no_think"):
            if chat.thinking_switch is False:
                err.write(f"[{NO_THINKING_MODE}]\n")
                continue
            chat.thinking = text == "/think"
            err.write(f"[thinking {'on' if chat.thinking else 'off'}]\n")
            continue
        if text == "/reset":
            chat.reset()
            err.write("[new conversation]\n")
            continue
        try:
            answer(chat, line, out, err, verbose=verbose, show_probs=show_probs)
        except KeyboardInterrupt:
            err.write("[stopped]\n")
        except ContextOverflowError as e:
            err.write(f"qwen3c: {e}; /reset starts a new conversation\n")
        err.flush()


def _dispatch(cmd: str, argv) -> int:
    import importlib
    mod_name, fn_name = SUBCOMMANDS[cmd]
    fn = getattr(importlib.import_module(mod_name), fn_name)
    return int(fn(argv) or 0)


def main(argv=None) -> int:
    """The `qwen3c` command (and `python -m qwen3c`). Returns the exit status: 0 success, 1 a
    runtime failure, 2 a bad command line, 130 interrupted (cli_options.run_command)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        # the subcommand applies the rule itself; run_command catches what escapes it
        return run_command(lambda rest: _dispatch(argv[0], rest), argv[1:], f"qwen3c {argv[0]}")
    return run_command(_chat_main, argv, "qwen3c")


def _chat_main(argv) -> int:
    args = build_parser().parse_args(argv)
    if args.prompt is not None and not args.prompt.strip():
        raise UsageError("--prompt is empty")

    from .chat import NO_THINKING_MODE, Chat
    from .chat_template import thinking_switch
    from .hub import resolve_model
    from .model import Model

    sampling = {k: v for k, v in dict(
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
        presence_penalty=args.presence_penalty, seed=args.seed).items() if v is not None}
    path = resolve_model(args.model)
    t0 = time.perf_counter()
    with Model(path, n_ctx=args.ctx, n_threads=args.threads, activations=args.activations,
               kv_cache=args.kv_cache) as model:
        if args.verbose:
            from .system import threads_text
            c = model.config
            sys.stderr.write(f"[{path}: {c.arch}, {c.n_layers} layers, dim {c.dim}, "
                             f"vocab {c.vocab_size}, n_ctx {c.n_ctx} ({model.kv_cache} KV cache), "
                             f"{threads_text(c.n_threads)}, {model.cpu_tier} kernels, "
                             f"loaded in {time.perf_counter() - t0:.2f} s]\n")
        thinking = args.thinking
        if thinking and thinking_switch(model) is False:
            sys.stderr.write(f"[{NO_THINKING_MODE}: --thinking on changes nothing]\n")
            thinking = None
        on_token = probs_printer(model, args.show_probs, sys.stdout) if args.show_probs else None
        chat = Chat(model, system=args.system, thinking=thinking,
                    multi_turn=args.multi_turn, max_tokens=args.max_tokens, on_token=on_token,
                    **sampling)
        if args.prompt is not None:
            answer(chat, args.prompt, sys.stdout, sys.stderr, one_shot=True,
                   verbose=args.verbose, show_probs=bool(args.show_probs))
        else:
            interactive(chat, sys.stdout, sys.stderr, verbose=args.verbose,
                        show_probs=bool(args.show_probs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
