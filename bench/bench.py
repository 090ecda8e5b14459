"""Benchmark qwen3c on a GGUF file (and llama-cpp-python on the same file, same run).

    python bench/bench.py --model x.gguf [--threads N] [--ctx N] [--prompt 512] [--decode 128]
                          [--vs-llama-cpp]

Measures: load time; prefill tok/s (one forward call of --prompt tokens); decode tok/s (--decode
tokens one at a time, from an empty context and after the prompt); peak RSS; memory read
bandwidth (numpy, --threads threads over a ~1 GB buffer in a child process, best of several,
measured before, between and after the engines: the best of them); and the decode bandwidth bound

    bound tok/s = read bandwidth / bytes of weights read per token

(every weight matrix once, incl. the LM head; the embedding table only as the LM head when tied,
since a lookup reads one row; KV-cache reads ignored, they are small at this context). Prints a
markdown table. See bench/README.md.
"""
from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np


def _status(field: str) -> int:
    """A /proc/self/status field in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# ---- what a decode step must read ------------------------------------------------------------
def weight_bytes_per_token(path: str) -> tuple[int, int]:
    """(bytes of weights read per decoded token, total tensor bytes) from the GGUF tensor infos."""
    import gguf

    r = gguf.GGUFReader(path)
    sizes = {t.name: int(t.n_bytes) for t in r.tensors}
    total = sum(sizes.values())
    per_token = total
    if "output.weight" in sizes and "token_embd.weight" in sizes:
        # untied: the embedding table is only looked up (one row), the LM head is read in full
        emb = sizes["token_embd.weight"]
        n_rows = int(next(t for t in r.tensors if t.name == "token_embd.weight").shape[-1])
        per_token = total - emb + emb // max(n_rows, 1)
    return per_token, total


# ---- memory read bandwidth -------------------------------------------------------------------
def read_bandwidth(n_threads: int, nbytes: int = 1 << 30, repeats: int = 7) -> float:
    """Best-of-`repeats` read bandwidth in bytes/s: n_threads numpy threads each reducing a
    disjoint slice of an nbytes buffer (an XOR over uint64 words, which numpy streams at memory
    speed; float sums are slower than memory on one core; numpy releases the GIL inside)."""
    a = np.ones(nbytes // 8, np.uint64)
    chunks = np.array_split(a, n_threads)
    best = 0.0
    with ThreadPoolExecutor(n_threads) as pool:
        for _ in range(repeats):
            t0 = time.perf_counter()
            list(pool.map(np.bitwise_xor.reduce, chunks))
            dt = time.perf_counter() - t0
            best = max(best, a.nbytes / dt)
    del a, chunks
    return best


def read_bandwidth_apart(n_threads: int, nbytes: int) -> float:
    """read_bandwidth in a child process, so that its buffer stays out of our peak RSS."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(read_bandwidth, n_threads, nbytes).result()


# ---- the engines -----------------------------------------------------------------------------
def bench_qwen3c(path, n_threads, n_ctx, n_prompt, n_decode, seed=0, activations="q24"):
    import qwen3c

    t0 = time.perf_counter()
    m = qwen3c.Model(path, n_ctx=n_ctx, n_threads=n_threads, activations=activations)
    load_s = time.perf_counter() - t0
    vocab = m.config.vocab_size
    rng = np.random.default_rng(seed)
    prompt = rng.integers(0, vocab, n_prompt).tolist()
    m.forward(prompt[:8], pos=0)  # warm-up: page in the weights, spin up the threads

    t0 = time.perf_counter()
    logits = m.forward(prompt, pos=0)
    prefill_s = time.perf_counter() - t0

    finite = bool(np.isfinite(logits).all())
    tok, t0 = int(np.argmax(logits)), time.perf_counter()
    for i in range(n_decode):  # after the prompt
        tok = int(np.argmax(m.forward([tok], pos=n_prompt + i)))
    decode_ctx_s = time.perf_counter() - t0
    tok, t0 = prompt[0], time.perf_counter()
    for i in range(n_decode):  # from an empty context (overwrites the cache from position 0)
        tok = int(np.argmax(m.forward([tok], pos=i)))
    decode_s = time.perf_counter() - t0
    m.close()
    return dict(load_s=load_s, prefill=n_prompt / prefill_s, decode=n_decode / decode_s,
                decode_ctx=n_decode / decode_ctx_s, finite=finite, threads=n_threads)


def bench_llama_cpp(path, n_threads, n_ctx, n_prompt, n_decode, seed=0):
    import llama_cpp

    t0 = time.perf_counter()
    llm = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads,
                          n_threads_batch=n_threads, n_batch=n_prompt, n_ubatch=n_prompt,
                          verbose=False)
    load_s = time.perf_counter() - t0
    vocab = llm.n_vocab()
    rng = np.random.default_rng(seed)
    prompt = rng.integers(0, vocab, n_prompt).tolist()
    llm.eval(prompt[:8])  # warm-up
    llm.reset()

    t0 = time.perf_counter()
    llm.eval(prompt)
    prefill_s = time.perf_counter() - t0

    # decode speed does not depend on which token is fed: replay the prompt's tokens one by one
    # (reading llama.cpp's logits back would add a copy of the vocabulary per token)
    t0 = time.perf_counter()
    for i in range(n_decode):  # after the prompt
        llm.eval([prompt[i % n_prompt]])
    decode_ctx_s = time.perf_counter() - t0
    llm.reset()  # an empty context: eval() drops the cache from position 0 on
    t0 = time.perf_counter()
    for i in range(n_decode):
        llm.eval([prompt[i % n_prompt]])
    decode_s = time.perf_counter() - t0
    version = getattr(llama_cpp, "__version__", "?")
    del llm
    gc.collect()
    return dict(load_s=load_s, prefill=n_prompt / prefill_s, decode=n_decode / decode_s,
                decode_ctx=n_decode / decode_ctx_s, version=version)


# ---- main ------------------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description="qwen3c benchmark (load, prefill, decode, bandwidth bound)")
    ap.add_argument("--model", required=True, help="a .gguf file (e.g. from bench/make_model.py)")
    ap.add_argument("--threads", type=int, default=0, help="threads (0 = all cores)")
    ap.add_argument("--ctx", type=int, default=1024, help="context (KV cache) length")
    ap.add_argument("--activations", choices=("q24", "f32", "q16", "q8"), default="q24",
                    help="qwen3c's matmul arithmetic for Q8_0/Q4_0/Q4_1 files (Model(activations=...)): "
                         "q24 (default: float32-level precision, packed weights), f32 (the float "
                         "reference path), q16 or q8 (opt-in, faster, less exact)")
    ap.add_argument("--prompt", type=int, default=512, help="prefill tokens (one forward call)")
    ap.add_argument("--decode", type=int, default=128, help="decoded tokens, one at a time")
    ap.add_argument("--vs-llama-cpp", action="store_true",
                    help="also run llama-cpp-python on the same file and print our/their ratios")
    ap.add_argument("--bw-mb", type=int, default=1024, help="bandwidth buffer size in MB")
    args = ap.parse_args(argv)

    n_threads = args.threads or os.cpu_count() or 1
    if args.prompt + args.decode > args.ctx:
        ap.error(f"--prompt + --decode ({args.prompt + args.decode}) exceeds --ctx ({args.ctx})")
    path = os.path.abspath(args.model)
    file_mb = os.path.getsize(path) / 1e6
    name = os.path.basename(path)

    # the machine's bandwidth drifts (other tenants): measure it around each engine, keep the best
    bws = [read_bandwidth_apart(n_threads, args.bw_mb << 20)]
    ours = bench_qwen3c(path, n_threads, args.ctx, args.prompt, args.decode,
                        activations=args.activations)
    peak_rss = _status("VmHWM")  # before the bandwidth buffer and llama.cpp inflate it
    print(f"qwen3c ({args.activations}): load {ours['load_s']:.3f} s, prefill {ours['prefill']:.1f} tok/s, "
          f"decode {ours['decode']:.2f} tok/s (at {args.prompt}: {ours['decode_ctx']:.2f}), "
          f"peak RSS {peak_rss / 1e6:.0f} MB"
          + ("" if ours["finite"] else "  (WARNING: non-finite logits)"), file=sys.stderr)

    theirs, note = None, ""
    if args.vs_llama_cpp:
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            note = "llama-cpp-python is not installed: pip install llama-cpp-python (see bench/README.md)"
        else:
            bws.append(read_bandwidth_apart(n_threads, args.bw_mb << 20))
            theirs = bench_llama_cpp(path, n_threads, args.ctx, args.prompt, args.decode)
            print(f"llama-cpp-python {theirs['version']}: load {theirs['load_s']:.3f} s, "
                  f"prefill {theirs['prefill']:.1f} tok/s, decode {theirs['decode']:.2f} tok/s "
                  f"(at {args.prompt}: {theirs['decode_ctx']:.2f})",
                  file=sys.stderr)

    per_token, total = weight_bytes_per_token(path)
    bws.append(read_bandwidth_apart(n_threads, args.bw_mb << 20))
    bw = max(bws)
    bound = bw / per_token
    print(f"read bandwidth {bw / 1e9:.1f} GB/s ({n_threads} threads; best of "
          f"{', '.join(f'{b / 1e9:.1f}' for b in bws)} measured around the runs); weights read per "
          f"token {per_token / 1e6:.0f} MB -> decode bound {bound:.1f} tok/s", file=sys.stderr)

    at = f"@{args.prompt}"
    cols = ["file", "activations", "MB", "threads", "load s", "prefill tok/s", "decode tok/s",
            f"decode {at}", "peak RSS MB", "read GB/s", "bound tok/s", "decode / bound"]
    row = [name, args.activations, f"{file_mb:.0f}", str(n_threads), f"{ours['load_s']:.3f}",
           f"{ours['prefill']:.1f}", f"{ours['decode']:.2f}", f"{ours['decode_ctx']:.2f}",
           f"{peak_rss / 1e6:.0f}", f"{bw / 1e9:.1f}", f"{bound:.1f}", f"{ours['decode'] / bound:.0%}"]
    if theirs is not None:
        cols += ["llama.cpp prefill", "llama.cpp decode", f"llama.cpp decode {at}",
                 "prefill ours/theirs", "decode ours/theirs", f"decode {at} ours/theirs"]
        row += [f"{theirs['prefill']:.1f}", f"{theirs['decode']:.2f}", f"{theirs['decode_ctx']:.2f}",
                f"{ours['prefill'] / theirs['prefill']:.2f}x",
                f"{ours['decode'] / theirs['decode']:.2f}x",
                f"{ours['decode_ctx'] / theirs['decode_ctx']:.2f}x"]
    print()
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    print("| " + " | ".join(row) + " |")
    if note:
        print(f"\n{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
