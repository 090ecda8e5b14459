"""Command-line pieces shared by `qwen3c` and its subcommands, so that choices, defaults,
help text, value ranges and exit statuses live in one place:

    add_numerics_arguments(parser)       --activations and --kv-cache (chat, next, diff)
    run_command(body, argv, prog)        the exit-status rule: 0 ok, 1 runtime failure,
                                         2 bad command line, 130 interrupted (docs/cli.md)
    UsageError                           raise it for a bad command line argparse cannot see
    int_in / float_in / token_ids        argparse types that refuse out-of-range values (exit 2)
"""
from __future__ import annotations

import argparse

ACTIVATIONS = ("q24", "f32", "q16", "q8")
KV_CACHES = ("f32", "f16")


def add_numerics_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --activations and --kv-cache, the two options that pick the engine's arithmetic
    (qwen3c.Model(activations=..., kv_cache=...))."""
    parser.add_argument(
        "--activations", choices=ACTIVATIONS, default="q24",
        help="matmul arithmetic for Q8_0/Q4_0/Q4_1 and K-quant files: q24 (default) rounds the "
             "activations to 24-bit blocks, float32-level (~4e-6 relative logit "
             "error), against a packed copy of the weights: memory-speed decode on "
             "AVX-512 VNNI, AVX2 and arm64 dotprod CPUs (else it runs as f32; a prompt "
             "meets the matrices for which float32 is faster as f32 does: the K-quants, Q8_0 "
             "and Q4_0 on AVX-512 and AVX2, Q4_1 on AVX2); q24 copies the weights into huge "
             "pages at load (float files too); f32 is the float reference path "
             "(exact up to float32 rounding, slower; the file stays mmapped); q16 rounds to "
             "16-bit blocks (~1e-3); q8 to 8-bit blocks like llama.cpp (fastest, ~4e-2, can "
             "change answers)")
    parser.add_argument(
        "--kv-cache", choices=KV_CACHES, default="f32",
        help="KV cache element type: f32 (default) keeps keys and values as "
             "computed; f16 rounds them to IEEE float16 (~1e-3 relative logit error): "
             "half the cache memory and half the bytes read from it per token, which "
             "matters at long context")


def add_prompt_arguments(parser: argparse.ArgumentParser, raw_default: bool = False) -> None:
    """The model and prompt options of the viewing commands (next, lens, attend, explain):
    a prompt (a user message under the chat template, or raw text), or --tokens, and the
    engine's settings."""
    parser.add_argument("prompt", nargs="?", help="the prompt (a user message unless --raw)"
                        if not raw_default else "the text (as is unless --chat)")
    parser.add_argument("--model", "-m", required=True, help="GGUF file (or owner/repo[:file.gguf])")
    if raw_default:
        parser.add_argument("--chat", action="store_false", dest="raw",
                            help="wrap the text in the chat template as a user message")
    else:
        parser.add_argument("--raw", action="store_true",
                            help="continue the text as is (no chat template)")
    parser.add_argument("--no-think", action="store_true",
                        help="render the chat template with enable_thinking=False")
    parser.add_argument("--tokens", type=token_ids,
                        help="comma-separated token ids instead of a prompt")
    parser.add_argument("--threads", type=int_in(0, MAX_THREADS), default=0,
                        help="threads (default: all cores)")
    add_numerics_arguments(parser)


def add_plot_argument(parser: argparse.ArgumentParser, what: str, flag: str = "--plot") -> None:
    """--plot FILE.png (--out for `attend`): a picture, with the `viz` extra (matplotlib)."""
    parser.add_argument(flag, metavar="FILE.png", dest="plot", type=_picture_path,
                        help=f"write a picture: {what} (.png, .svg or .pdf; needs matplotlib: "
                             "pip install 'qwen3c[viz]')")


PICTURE_SUFFIXES = (".png", ".svg", ".pdf")


def _picture_path(value: str) -> str:
    if not value.lower().endswith(PICTURE_SUFFIXES):
        raise argparse.ArgumentTypeError(
            f"{value!r}: the picture's file name must end in {', '.join(PICTURE_SUFFIXES)}")
    return value


# ---- exit status: one rule for every command (docs/cli.md, "Exit status") -------------------

EXIT_OK = 0
EXIT_FAILURE = 1        # a runtime failure: missing / malformed file, model not available, ...
EXIT_USAGE = 2          # a bad command line: unknown option, bad or out-of-range value
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)

# The C core's limits (qwen3c_context_create), so that the command line refuses them as bad
# values (exit 2) instead of failing later (exit 1).
MAX_THREADS = 1024
MAX_CTX = 1 << 22


class UsageError(Exception):
    """A bad command line that argparse cannot see (e.g. an empty --prompt, options that
    exclude each other). Raised from a command body, run_command prints it and exits 2."""


def run_command(body, argv, prog: str) -> int:
    """Run `body(argv)` (which parses argv with argparse and returns an exit status) under the
    exit-status rule: 0 success; 2 for a bad command line (argparse's own errors -- its
    SystemExit(2) passes through, as for any argparse program -- and UsageError); 1 for a
    runtime failure (any other error, reported as one line `PROG: error: ...`, never a
    traceback); 130 when interrupted with Ctrl-C. Every subcommand's main() goes through it:

        def main(argv=None) -> int:
            return run_command(_main, sys.argv[1:] if argv is None else argv, "qwen3c sub")
    """
    import sys
    try:
        return int(body(argv) or 0)
    except UsageError as e:
        return _report(prog, e, EXIT_USAGE)
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (| head): nothing more to say
        try:
            import os
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return EXIT_FAILURE
    except Exception as e:  # noqa: BLE001 -- the CLI's promise: one line, never a traceback
        return _report(prog, e, EXIT_FAILURE)


def _report(prog: str, e: BaseException, code: int) -> int:
    import sys
    from .errors import Qwen3cError
    text = (e.strerror if isinstance(e, OSError) and e.strerror else str(e)).strip()
    msg = text.splitlines()[0] if text else type(e).__name__
    if not isinstance(e, (Qwen3cError, OSError, ValueError, TypeError, MemoryError, ImportError,
                          UsageError)):
        msg = f"{type(e).__name__}: {msg} (an internal error: please report it)"
    sys.stderr.write(f"{prog}: error: {msg}\n")
    sys.stderr.flush()
    return code


# ---- argparse value types with ranges (a value out of range is a usage error, exit 2) --------

def int_in(lo: int, hi: int | None = None):
    """argparse type: an int in [lo, hi] (hi None: no upper bound)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(
                f"must be {f'in {lo}..{hi}' if hi is not None else f'>= {lo}'}, got {v}")
        return v
    parse.__name__ = "integer"
    return parse


def float_in(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False):
    """argparse type: a finite float in [lo, hi] ((lo, hi] with lo_open); None: unbounded."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if v != v or v in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        low_bad = lo is not None and (v <= lo if lo_open else v < lo)
        if low_bad or (hi is not None and v > hi):
            left = "(" if lo_open else "["
            rng = (f"in {left}{lo:g}, {hi:g}]" if lo is not None and hi is not None else
                   f"{'>' if lo_open else '>='} {lo:g}" if lo is not None else f"<= {hi:g}")
            raise argparse.ArgumentTypeError(f"must be {rng}, got {text}")
        return v
    parse.__name__ = "number"
    return parse


def token_ids(text: str) -> list:
    """argparse type: comma-separated token ids ("1,2, 3")."""
    try:
        ids = [int(t) for t in text.replace(" ", "").split(",") if t != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated integers, got {text!r}") from None
    if not ids:
        raise argparse.ArgumentTypeError("is empty")
    return ids
