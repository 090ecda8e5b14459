"""Benchmark qwen3c on a GGUF file (and llama-cpp-python on the same file, same run).

    python bench/bench.py --model x.gguf [--threads N] [--ctx N] [--prompt 512] [--decode 128]
                          [--rounds 2] [--chunk 16] [--activations q24] [--kv-cache f32]
                          [--vs-llama-cpp]

Measures: load time; prefill tok/s (one forward call of --prompt tokens); decode tok/s (--decode
tokens one at a time, from an empty context and after the prompt); peak RSS; and the decode
bandwidth bound

    bound tok/s = read bandwidth / bytes of weights read per token

(every weight matrix once, incl. the LM head; the embedding table only as the LM head when tied,
since a lookup reads one row; KV-cache reads are not counted). The read bandwidth is numpy's
(--threads threads taking the max of a float32 buffer, in a child process so it stays out of
our RSS), and it
is taken two ways, because this kind of shared machine's bandwidth moves by 2x within minutes:
  - best: the best pass of all, a strict bound that the decode speed is divided by;
  - paired: decode runs in chunks of --chunk tokens with a short bandwidth probe before and after
    each; every chunk's speed is divided by the bound from the mean of its two probes, and the
    median over the chunks is printed (speed and bandwidth measured at the same moment).
The engines alternate for --rounds rounds (ours, theirs, ours, theirs); each figure is the
engine's best round. With --vs-llama-cpp, the prefill is also compared paired, as the decode is:
--prefill-pairs pairs of prefills back to back (ours then theirs, then theirs then ours, ...),
each pair's ratio of the two times, and the median over the pairs (the rounds' prefills are
half a minute apart, and this machine's speed moves within that). Prints a markdown table. See
bench/README.md.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time

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
def _probe_main(conn, n_threads: int, nbytes: int) -> None:
    """Child process: hold an nbytes buffer; for each request (a number of passes) answer the
    bytes/s of every pass. A pass is n_threads numpy threads each taking the max of a disjoint
    slice of float32 (numpy's SIMD max streams at the speed of a hand-written AVX-512 read loop;
    its XOR or sum reductions are 10-25% slower than memory, which would understate the
    bandwidth; numpy releases the GIL inside the reduction)."""
    from concurrent.futures import ThreadPoolExecutor

    a = np.ones(nbytes // 4, np.float32)
    chunks = np.array_split(a, n_threads)
    with ThreadPoolExecutor(n_threads) as pool:
        while True:
            passes = conn.recv()
            if passes is None:
                break
            rates = []
            for _ in range(passes):
                t0 = time.perf_counter()
                list(pool.map(np.max, chunks))
                rates.append(a.nbytes / (time.perf_counter() - t0))
            conn.send(rates)
    conn.close()


class BandwidthProbe:
    """Read bandwidth on demand, measured by a child process (its buffer is not in our RSS)."""

    def __init__(self, n_threads: int, nbytes: int):
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_probe_main, args=(child, n_threads, nbytes), daemon=True)
        self._proc.start()
        child.close()
        self.best = 0.0  # the best pass seen so far, bytes/s

    def measure(self, passes: int) -> list[float]:
        # let the engine's threads finish spin-waiting first (OpenMP and ggml worker threads
        # spin for a few ms after their last parallel region): a probe that shares the cores
        # with them reads slower, which would flatter the engine's ratio
        time.sleep(0.02)
        self._conn.send(passes)
        rates = self._conn.recv()
        self.best = max(self.best, *rates)
        return rates

    def close(self) -> None:
        self._conn.send(None)
        self._proc.join(10)


# ---- the engines -----------------------------------------------------------------------------
class Qwen3cEngine:
    name = "qwen3c"

    def __init__(self, path, n_threads, n_ctx, activations, kv_cache="f32"):
        import qwen3c

        extra = {} if kv_cache == "f32" else {"kv_cache": kv_cache}
        t0 = time.perf_counter()
        self.m = qwen3c.Model(path, n_ctx=n_ctx, n_threads=n_threads, activations=activations,
                              **extra)
        self.load_s = time.perf_counter() - t0
        self.vocab = self.m.config.vocab_size
        self.version = qwen3c.__version__ if hasattr(qwen3c, "__version__") else "?"
        self.finite = True

    def prefill(self, tokens):
        logits = self.m.forward(tokens, pos=0)
        self.finite = self.finite and bool(np.isfinite(logits).all())
        self.next = int(np.argmax(logits))

    def reset(self, first_token):
        self.next = first_token  # the next forward at pos 0 overwrites the cache

    def step(self, pos):  # greedy: feed the argmax back
        self.next = int(np.argmax(self.m.forward([self.next], pos=pos)))

    def close(self):
        self.m.close()


class LlamaCppEngine:
    name = "llama.cpp"

    def __init__(self, path, n_threads, n_ctx, n_batch, extra_bufts=True):
        import llama_cpp

        if not extra_bufts:
            # no repacked / AMX weight buffers: llama-cpp-python 0.3.36 crashes in
            # ggml_backend_amx_mul_mat on qwen35 Q8_0 files (from either converter) with them
            from llama_cpp import llama_cpp as low
            default = low.llama_model_default_params

            def params():
                p = default()
                p.use_extra_bufts = False
                return p
            low.llama_model_default_params = params  # what Llama() calls
        t0 = time.perf_counter()
        self.llm = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads,
                                   n_threads_batch=n_threads, n_batch=n_batch, n_ubatch=n_batch,
                                   verbose=False)
        self.load_s = time.perf_counter() - t0
        self.vocab = self.llm.n_vocab()
        self.version = getattr(llama_cpp, "__version__", "?")
        self.tokens = [0]

    def prefill(self, tokens):
        self.llm.reset()
        self.llm.eval(tokens)
        self.tokens = list(tokens)

    def reset(self, first_token):
        self.llm.reset()  # eval() then drops the cache from position 0 on

    def step(self, pos):
        # the speed does not depend on which token is fed: replay the prompt's tokens (reading
        # llama.cpp's logits back would add a copy of the vocabulary per token)
        self.llm.eval([self.tokens[pos % len(self.tokens)]])

    def close(self):
        del self.llm


def prefill_seconds(eng, prompt):
    """Wall time of one prefill of prompt (at pos 0)."""
    t0 = time.perf_counter()
    eng.prefill(prompt)
    return time.perf_counter() - t0


def run_round(eng, prompt, n_decode, chunk, probe, per_token):
    """One engine's measurements: prefill, decode after the prompt, decode from an empty context.
    Each decode is run in chunks, with a bandwidth probe before and after every chunk."""
    eng.prefill(prompt[:8])  # warm-up: page in the weights, spin up the threads
    prefill = 0.0
    for _ in range(2):  # the better of two (prefill is compute-bound: other tenants' CPU use shows)
        prefill = max(prefill, len(prompt) / prefill_seconds(eng, prompt))

    def decode(pos0):
        spent, paired = 0.0, []
        bw0 = statistics.fmean(probe.measure(2))
        for c0 in range(0, n_decode, chunk):
            n = min(chunk, n_decode - c0)
            t0 = time.perf_counter()
            for i in range(n):
                eng.step(pos0 + c0 + i)
            dt = time.perf_counter() - t0
            bw1 = statistics.fmean(probe.measure(2))
            spent += dt
            paired.append((n / dt) / ((bw0 + bw1) / 2 / per_token))
            bw0 = bw1
        return n_decode / spent, paired

    decode_ctx, _ = decode(len(prompt))
    eng.reset(prompt[0])
    decode0, paired = decode(0)
    return dict(prefill=prefill, decode=decode0, decode_ctx=decode_ctx, paired=paired)


def paired_prefill(ours, theirs, prompt, n_pairs):
    """Prefill speed ratios ours/theirs of n_pairs pairs of back-to-back prefills, the order
    alternating from pair to pair (a trend within a pair then favours neither engine)."""
    ratios = []
    for i in range(n_pairs):
        t = {eng: prefill_seconds(eng, prompt) for eng in ((ours, theirs) if i % 2 == 0 else (theirs, ours))}
        ratios.append(t[theirs] / t[ours])
    return ratios


def best_of(rounds):
    """Each figure's best round; the paired ratios of all rounds."""
    out = {k: max(r[k] for r in rounds) for k in ("prefill", "decode", "decode_ctx")}
    out["paired"] = [p for r in rounds for p in r["paired"]]
    return out


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
    ap.add_argument("--kv-cache", choices=("f32", "f16"), default="f32",
                    help="qwen3c's KV cache type (Model(kv_cache=...)): f32 (default, exact) or the "
                         "opt-in f16 (half the attention's memory traffic at long context)")
    ap.add_argument("--prompt", type=int, default=512, help="prefill tokens (one forward call)")
    ap.add_argument("--decode", type=int, default=128, help="decoded tokens, one at a time")
    ap.add_argument("--rounds", type=int, default=2,
                    help="rounds per engine, alternating engines; each figure is the best round")
    ap.add_argument("--chunk", type=int, default=16,
                    help="decode tokens between two bandwidth probes (the paired bound)")
    ap.add_argument("--vs-llama-cpp", action="store_true",
                    help="also run llama-cpp-python on the same file and print our/their ratios")
    ap.add_argument("--prefill-pairs", type=int, default=8,
                    help="with --vs-llama-cpp: pairs of back-to-back prefills (ours, theirs; the "
                         "order alternating) whose median ratio is the paired prefill ratio "
                         "(0: none)")
    ap.add_argument("--bw-mb", type=int, default=512, help="bandwidth buffer size in MB")
    ap.add_argument("--llama-extra-bufts", choices=("auto", "on", "off"), default="auto",
                    help="llama.cpp's extra weight buffer types (repacked / AMX matmuls); auto: off "
                         "for qwen35 files, where llama-cpp-python 0.3.36 crashes with them, else on")
    args = ap.parse_args(argv)

    n_threads = args.threads or os.cpu_count() or 1
    if args.prompt + args.decode > args.ctx:
        ap.error(f"--prompt + --decode ({args.prompt + args.decode}) exceeds --ctx ({args.ctx})")
    if args.rounds < 1 or args.chunk < 1 or args.prompt < 8 or args.decode < 1 or args.prefill_pairs < 0:
        ap.error("--rounds, --chunk and --decode must be >= 1, --prompt >= 8, --prefill-pairs >= 0")
    path = os.path.abspath(args.model)
    file_mb = os.path.getsize(path) / 1e6
    name = os.path.basename(path)
    per_token, _ = weight_bytes_per_token(path)
    import gguf
    arch = gguf.GGUFReader(path).fields["general.architecture"].contents()
    extra_bufts = args.llama_extra_bufts == "on" or (args.llama_extra_bufts == "auto" and arch != "qwen35")

    note = ""
    want_llama = args.vs_llama_cpp
    if want_llama:
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            want_llama = False
            note = "llama-cpp-python is not installed: pip install llama-cpp-python (see bench/README.md)"

    probe = BandwidthProbe(n_threads, args.bw_mb << 20)
    probe.measure(7)
    ours = Qwen3cEngine(path, n_threads, args.ctx, args.activations, args.kv_cache)
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, ours.vocab, args.prompt).tolist()
    our_rounds, their_rounds, theirs = [], [], None
    peak_rss = 0
    for rnd in range(args.rounds):
        our_rounds.append(run_round(ours, prompt, args.decode, args.chunk, probe, per_token))
        if rnd == 0:
            peak_rss = _status("VmHWM")  # before llama.cpp's allocations inflate it
        r = our_rounds[-1]
        print(f"qwen3c ({args.activations}, KV {args.kv_cache}) round {rnd + 1}: prefill {r['prefill']:.1f} tok/s, "
              f"decode {r['decode']:.2f} tok/s (at {args.prompt}: {r['decode_ctx']:.2f}), "
              f"paired decode/bound median {statistics.median(r['paired']):.0%}", file=sys.stderr)
        if want_llama:
            if theirs is None:
                theirs = LlamaCppEngine(path, n_threads, args.ctx, args.prompt, extra_bufts)
                if not extra_bufts:
                    print("llama.cpp: extra buffer types off (--llama-extra-bufts)", file=sys.stderr)
            their_rounds.append(run_round(theirs, prompt, args.decode, args.chunk, probe, per_token))
            r = their_rounds[-1]
            print(f"llama-cpp-python {theirs.version} round {rnd + 1}: prefill {r['prefill']:.1f} tok/s, "
                  f"decode {r['decode']:.2f} tok/s (at {args.prompt}: {r['decode_ctx']:.2f}), "
                  f"paired decode/bound median {statistics.median(r['paired']):.0%}", file=sys.stderr)
    pre_pairs = []
    if theirs is not None and args.prefill_pairs > 0:
        pre_pairs = paired_prefill(ours, theirs, prompt, args.prefill_pairs)
        print(f"prefill ours/theirs, {len(pre_pairs)} back-to-back pairs: "
              + " ".join(f"{r:.2f}x" for r in pre_pairs), file=sys.stderr)
    probe.measure(7)
    probe.close()
    o = best_of(our_rounds)
    print(f"qwen3c: load {ours.load_s:.3f} s, peak RSS {peak_rss / 1e6:.0f} MB"
          + ("" if ours.finite else "  (WARNING: non-finite logits)"), file=sys.stderr)
    ours.close()
    t = None
    if theirs is not None:
        t = best_of(their_rounds)
        print(f"llama-cpp-python {theirs.version}: load {theirs.load_s:.3f} s", file=sys.stderr)
        theirs.close()

    bw = probe.best
    bound = bw / per_token
    pm = statistics.median(o["paired"])
    print(f"read bandwidth: best {bw / 1e9:.1f} GB/s ({n_threads} threads); weights read per token "
          f"{per_token / 1e6:.0f} MB -> decode bound {bound:.1f} tok/s; paired decode/bound over "
          f"{len(o['paired'])} chunks: min {min(o['paired']):.0%}, median {pm:.0%}, "
          f"max {max(o['paired']):.0%}", file=sys.stderr)

    at = f"@{args.prompt}"
    cols = ["file", "activations", "KV", "MB", "threads", "load s", "prefill tok/s", "decode tok/s",
            f"decode {at}", "peak RSS MB", "best read GB/s", "bound tok/s", "decode / bound",
            "decode / bound (paired)"]
    row = [name, args.activations, args.kv_cache, f"{file_mb:.0f}", str(n_threads), f"{ours.load_s:.3f}",
           f"{o['prefill']:.1f}", f"{o['decode']:.2f}", f"{o['decode_ctx']:.2f}",
           f"{peak_rss / 1e6:.0f}", f"{bw / 1e9:.1f}", f"{bound:.1f}", f"{o['decode'] / bound:.0%}",
           f"{pm:.0%}"]
    if t is not None:
        cols += ["llama.cpp prefill", "llama.cpp decode", f"llama.cpp decode {at}",
                 "llama.cpp decode / bound (paired)",
                 "prefill ours/theirs", "decode ours/theirs", f"decode {at} ours/theirs",
                 "decode ours/theirs (paired)", "prefill ours/theirs (per round)",
                 "prefill ours/theirs (paired)"]
        row += [f"{t['prefill']:.1f}", f"{t['decode']:.2f}", f"{t['decode_ctx']:.2f}",
                f"{statistics.median(t['paired']):.0%}",
                f"{o['prefill'] / t['prefill']:.2f}x",
                f"{o['decode'] / t['decode']:.2f}x",
                f"{o['decode_ctx'] / t['decode_ctx']:.2f}x",
                f"{pm / statistics.median(t['paired']):.2f}x",
                " ".join(f"{a['prefill'] / b['prefill']:.2f}x" for a, b in zip(our_rounds, their_rounds)),
                f"{statistics.median(pre_pairs):.2f}x" if pre_pairs else "-"]
    print()
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    print("| " + " | ".join(row) + " |")
    if note:
        print(f"\n{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
