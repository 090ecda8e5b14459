"""Compare two builds of qwen3c (or one build under two settings) on one GGUF file, same run.

    python bench/ab_builds.py --model x.gguf --a build_a/python --b build_b/python \
        [--a-env QWEN3C_CPU=avx2] [--b-env ...] [--rounds 5] [--prompt 512] [--decode 64]
        [--threads N | --a-threads N --b-threads M] [--cpu-time]

--a / --b are directories that hold a `qwen3c` package with its compiled extension (a source
tree's python/ after tools/dev_build.sh, or a --target install). Each round runs A then B (then
B then A in the next round, so neither always goes first), each in a fresh process: load,
one warm-up forward, prefill --prompt tokens in one call (best of 2), decode --decode tokens one
at a time. --cpu-time measures the process's CPU time (with --threads 1: the time it computed,
not the time it waited for a core). Prints every round and the median of the per-round B/A speed ratios, which is what a
shared, noisy machine can compare (the absolute speeds move by 2x within minutes).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np
import qwen3c
path, threads, n_prompt, n_decode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
clock = time.process_time if sys.argv[5] == "cpu" else time.perf_counter
info = qwen3c.cpu_info() if hasattr(qwen3c, "cpu_info") else {}
with qwen3c.Model(path, n_ctx=n_prompt + n_decode + 8, n_threads=threads) as m:
    rng = np.random.default_rng(0)
    toks = [int(t) for t in rng.integers(0, m.config.vocab_size, size=n_prompt)]
    m.forward(toks[:16], pos=0)                     # warm-up (page faults, thread start)
    best = 1e9
    for _ in range(2):
        t0 = clock()
        logits = m.forward(toks, pos=0)
        best = min(best, clock() - t0)
    tok = int(np.argmax(logits))
    t0 = clock()
    for i in range(n_decode):
        tok = int(np.argmax(m.forward([tok], pos=n_prompt + i)))
    dec = clock() - t0
    tier = getattr(m, "cpu_tier", info.get("tier", "?"))
print(json.dumps({"prefill": n_prompt / best, "decode": n_decode / dec, "tier": tier}))
"""


def run(pythonpath: str, env_extra: list, threads: int, args) -> dict:
    env = dict(os.environ, PYTHONPATH=pythonpath)
    for kv in env_extra:
        k, _, v = kv.partition("=")
        env[k] = v
    out = subprocess.run([sys.executable, "-c", CHILD, args.model, str(threads), str(args.prompt),
                          str(args.decode), "cpu" if args.cpu_time else "wall"], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--a", required=True, help="PYTHONPATH of build A")
    ap.add_argument("--b", required=True, help="PYTHONPATH of build B")
    ap.add_argument("--a-env", action="append", default=[], metavar="K=V")
    ap.add_argument("--b-env", action="append", default=[], metavar="K=V")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="threads of both (0 = all cores)")
    ap.add_argument("--a-threads", type=int, help="threads of A (e.g. 1 vs --b-threads 2: scaling)")
    ap.add_argument("--b-threads", type=int)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--decode", type=int, default=64)
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with the process's CPU time instead of the wall clock: steadier on a "
                         "busy machine (use with --threads 1: with more, it counts spinning threads)")
    args = ap.parse_args(argv)
    ratios = {"prefill": [], "decode": []}
    print(f"{'round':>5} {'A prefill':>10} {'B prefill':>10} {'B/A':>6} {'A decode':>9} {'B decode':>9} {'B/A':>6}  tiers")
    for r in range(args.rounds):
        order = ("a", "b") if r % 2 == 0 else ("b", "a")
        res = {}
        for side in order:
            threads = getattr(args, f"{side}_threads")
            res[side] = run(getattr(args, side), getattr(args, f"{side}_env"),
                            args.threads if threads is None else threads, args)
        a, b = res["a"], res["b"]
        for k in ratios:
            ratios[k].append(b[k] / a[k])
        print(f"{r + 1:5d} {a['prefill']:10.1f} {b['prefill']:10.1f} {b['prefill'] / a['prefill']:6.3f} "
              f"{a['decode']:9.2f} {b['decode']:9.2f} {b['decode'] / a['decode']:6.3f}  {a['tier']}/{b['tier']}",
              flush=True)
    print(f"median B/A: prefill {statistics.median(ratios['prefill']):.3f} "
          f"(min {min(ratios['prefill']):.3f}, max {max(ratios['prefill']):.3f}), "
          f"decode {statistics.median(ratios['decode']):.3f} "
          f"(min {min(ratios['decode']):.3f}, max {max(ratios['decode']):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
