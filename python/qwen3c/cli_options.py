"""Command-line options shared by `qwen3c` and its subcommands (`next`, `diff`), so their
choices, defaults and help text live in one place."""
from __future__ import annotations

import argparse

ACTIVATIONS = ("q24", "f32", "q16", "q8")
KV_CACHES = ("f32", "f16")


def add_numerics_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --activations and --kv-cache, the two options that pick the engine's arithmetic
    (qwen3c.Model(activations=..., kv_cache=...))."""
    parser.add_argument(
        "--activations", choices=ACTIVATIONS, default="q24",
        help="matmul arithmetic for Q8_0/Q4_0/Q4_1 files: q24 (default) rounds the "
             "activations to 24-bit blocks, float32-level (~4e-6 relative logit "
             "error), against a packed copy of the weights: memory-speed decode on "
             "AVX-512 VNNI CPUs (else it runs as f32); q24 copies the weights into huge "
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
    parser.add_argument("--tokens", help="comma-separated token ids instead of a prompt")
    parser.add_argument("--threads", type=int, default=0, help="threads (default: all cores)")
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
