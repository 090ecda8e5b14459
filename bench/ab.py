"""Same-run A/B of two qwen3c builds: bench/bench.py alternately against each, then the ratios.

    python bench/ab.py --a /path/to/base/python --b python --runs 6 -- --model x.gguf --threads 2

--a / --b are directories that hold a built `qwen3c` package (e.g. a checkout's python/ after
tools/dev_build.sh). The runs alternate (a, b, a, b, ...) so both see the same machine load;
each figure is the median over the runs of that build, and B / A is printed per figure and per
adjacent pair (the spread of the pair ratios says how noisy the machine was). Everything after
`--` goes to bench/bench.py (use --rounds 1: the alternation here replaces its rounds).
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROUND = re.compile(r"round \d+: prefill ([\d.]+) tok/s, decode ([\d.]+) tok/s \(at \d+: ([\d.]+)\)")
FIGURES = ("prefill tok/s", "decode tok/s", "decode @prompt tok/s")


def run_once(pkg_dir: str, bench_args: list) -> tuple:
    env = dict(os.environ, PYTHONPATH=str(Path(pkg_dir).resolve()))
    r = subprocess.run([sys.executable, str(Path(__file__).with_name("bench.py")), *bench_args],
                       capture_output=True, text=True, env=env, check=True)
    out = r.stdout + r.stderr  # the per-round lines go to stderr
    rounds = [tuple(map(float, m.groups())) for m in ROUND.finditer(out)]
    if not rounds:
        raise SystemExit(f"no round line in bench.py's output:\n{out}")
    return tuple(max(r[i] for r in rounds) for i in range(3))


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True, help="package directory of build A (the base)")
    ap.add_argument("--b", required=True, help="package directory of build B (the change)")
    ap.add_argument("--runs", type=int, default=6, help="runs per build (default 6)")
    args = ap.parse_args(own)
    res = {"a": [], "b": []}
    for i in range(args.runs):
        for k in ("a", "b"):
            res[k].append(run_once(getattr(args, k), rest))
            print(f"run {i + 1} {k}: " + ", ".join(f"{f} {v:.2f}" for f, v in zip(FIGURES, res[k][-1])),
                  flush=True)
    print(f"\n| figure | A median | B median | B / A | pair ratios min..max |\n|---|---|---|---|---|")
    for j, f in enumerate(FIGURES):
        a = statistics.median(r[j] for r in res["a"])
        b = statistics.median(r[j] for r in res["b"])
        pairs = [rb[j] / ra[j] for ra, rb in zip(res["a"], res["b"])]
        print(f"| {f} | {a:.2f} | {b:.2f} | {b / a:.3f} | {min(pairs):.3f}..{max(pairs):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
