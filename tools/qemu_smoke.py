"""Smoke test of the installed qwen3c on other x86-64 CPUs, emulated by qemu-user.

    python tools/qemu_smoke.py [--cpu Haswell=avx2:avx2-novnni --cpu Nehalem=sse ...]

For each emulated CPU model (qemu-x86_64 -cpu MODEL: Haswell has AVX2 but no AVX-512, Nehalem
SSE4.2 but no AVX), a child Python process runs under qemu: it imports qwen3c (and numpy), checks
that the kernel tier picked is the expected one, loads three golden files (tests/data/golden:
F16, Q8_0, Q4_K) and runs a prefill and a few decode steps. Passing means no Illegal instruction
anywhere in the library's import and compute paths, and logits bit-identical to the same kernels
forced natively (QWEN3C_CPU: Haswell's avx2 tier is the AVX2 table without AVX-VNNI, which
this CPU runs as avx2-novnni) and within the golden tolerance of the committed logits. No torch,
few files: Python under qemu-user is slow (~10 s per model here).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from wheel_check import GOLDEN, golden_logits, manifest  # (tools/ is this script's sys.path[0])

TOOLS = Path(__file__).resolve().parent
FILES = ("qwen3-tiny-f16.gguf", "qwen3-tiny-q8_0.gguf", "qwen3-tiny-q4_k.gguf")

CHILD = r"""
import sys
import numpy as np
import qwen3c
from wheel_check import run_file
expected, out, files = sys.argv[1], sys.argv[2], sys.argv[3:]
info = qwen3c.cpu_info()
assert info["tier"] == expected, (info["tier"], expected, info["features"])
rows = []
for spec in files:
    path, n_prompt, toks = spec.split("|")
    rows.append(run_file(path, int(n_prompt), [int(t) for t in toks.split(",")]))
np.save(out, np.concatenate(rows))
print("ok", info["tier"], " ".join(info["features"]))
"""


def run_child(prefix: list, expected: str, out: Path, specs: list, env: dict) -> str:
    env = dict(env, PYTHONPATH=os.pathsep.join(filter(None, [str(TOOLS), env.get("PYTHONPATH")])))
    r = subprocess.run([*prefix, sys.executable, "-c", CHILD, expected, str(out), *specs],
                       capture_output=True, text=True, env=env, timeout=600)
    stderr = "\n".join(l for l in r.stderr.splitlines() if "TCG doesn't support" not in l)
    if r.returncode != 0:
        sys.exit(f"qemu_smoke: {' '.join(prefix) or 'native'} (tier {expected}) failed with exit "
                 f"status {r.returncode}:\n{stderr}")
    return r.stdout.strip()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", action="append", metavar="MODEL=TIER[:NATIVE]",
                    help="qemu CPU model, the tier expected on it and the QWEN3C_CPU that runs "
                         "the same kernels natively, if another name (default: "
                         "Haswell=avx2:avx2-novnni, Nehalem=sse)")
    args = ap.parse_args(argv)
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        sys.exit("qemu_smoke: qemu-x86_64 not found (Debian: apt install qemu-user)")
    man = manifest()
    specs = [f"{GOLDEN / f}|{man[f][1]}|{','.join(map(str, man[f][3]))}" for f in FILES]
    golden = np.concatenate([golden_logits(f, man[f][1] + man[f][2]) for f in FILES])
    tol = max(man[f][0] for f in FILES)
    env = {k: v for k, v in os.environ.items() if k != "QWEN3C_CPU"}
    with tempfile.TemporaryDirectory() as tmp:
        for pair in args.cpu or ["Haswell=avx2:avx2-novnni", "Nehalem=sse"]:
            model, tiers = pair.split("=")
            tier, native = (tiers.split(":") + [tiers])[:2]
            emu, nat = Path(tmp) / f"{model}.npy", Path(tmp) / f"{model}-native.npy"
            said = run_child([qemu, "-cpu", model], tier, emu, specs, env)
            run_child([], native, nat, specs, dict(env, QWEN3C_CPU=native))
            a, b = np.load(emu), np.load(nat)
            if not np.array_equal(a, b):
                sys.exit(f"qemu_smoke: -cpu {model}: logits differ from native {native} by "
                         f"{np.abs(a - b).max():.3g}")
            rel = float(np.abs(a - golden).max() / np.abs(golden).max())
            if not rel <= tol:
                sys.exit(f"qemu_smoke: -cpu {model}: {rel:.3g} from the golden logits (tol {tol:g})")
            print(f"qemu-x86_64 -cpu {model}: {said.split()[1]} tier, logits = native "
                  f"QWEN3C_CPU={native} bit for bit, {rel:.1e} from golden")
    return 0


if __name__ == "__main__":
    sys.exit(main())
