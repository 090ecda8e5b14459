"""Check an installed qwen3c (a wheel, typically) against the committed golden logits.

    python tools/wheel_check.py [--no-openmp-ok]

Prints what qwen3c.cpu_info() reports, then runs every file of tests/data/golden (one per weight
type) on the tier qwen3c picks: a prefill and decode steps, within golden.txt's tolerance of
the scalar tier's logits. Needs numpy and qwen3c only (no compiler, no torch, no shell): the
test command of the cibuildwheel configuration (pyproject.toml) on every platform, and used by
tools/wheel_smoke.sh. Exit status 1 on a mismatch, or when the build lacks OpenMP (unless
--no-openmp-ok).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "data" / "golden"


def manifest(golden: Path = GOLDEN) -> dict:
    """golden.txt: file -> (tol, n_prompt, n_decode, tokens)."""
    out = {}
    for line in (golden / "golden.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, tol, n_prompt, n_decode, *toks = line.split()
        out[name] = (float(tol), int(n_prompt), int(n_decode), [int(t) for t in toks])
    return out


def run_file(path, n_prompt: int, tokens: list, n_threads: int = 2) -> np.ndarray:
    """The golden protocol: prefill n_prompt tokens (all logits), then one token at a time."""
    import qwen3c

    with qwen3c.Model(str(path), n_ctx=64, n_threads=n_threads) as m:
        rows = [m.forward(tokens[:n_prompt], pos=0, all_logits=True)]
        for i in range(n_prompt, len(tokens)):
            rows.append(m.forward(tokens[i:i + 1], pos=i)[None])
    return np.concatenate(rows)


def golden_logits(name: str, n_rows: int, golden: Path = GOLDEN) -> np.ndarray:
    return np.fromfile(golden / (name + ".logits"), "<f4").reshape(n_rows, -1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-openmp-ok", action="store_true", help="accept a single-threaded build")
    args = ap.parse_args(argv)
    import qwen3c

    info = qwen3c.cpu_info()
    print(f"qwen3c {qwen3c.__version__} at {Path(qwen3c.__file__).parent}: tier {info['tier']} of "
          f"{' '.join(info['tiers'])}; {info['threads']} thread(s), "
          f"{'OpenMP' if info['openmp'] else 'no OpenMP'}; {info['compiler']}")
    bad = 0
    for name, (tol, n_prompt, n_decode, tokens) in manifest().items():
        got = run_file(GOLDEN / name, n_prompt, tokens)
        ref = golden_logits(name, n_prompt + n_decode)
        rel = float(np.abs(got - ref).max() / np.abs(ref).max())
        ok = rel <= tol
        bad += not ok
        print(f"  {name:24s} {rel:.2e} (tol {tol:g}) {'ok' if ok else 'FAIL'}")
    if not info["openmp"] and not args.no_openmp_ok:
        print("this build has no OpenMP (one thread)", file=sys.stderr)
        bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
