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
             "AVX-512 VNNI and arm64 dotprod CPUs (else it runs as f32); q24 copies the weights into huge "
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
