"""Regenerate tests/data/golden/: tiny Qwen3 GGUF files, one per weight type, and their logits.

    PYTHONPATH=python python tools/gen_golden.py [--out tests/data/golden]

Each file is a one-layer Qwen3 (dim 64, 2 heads of 32, 1 kv head, vocab 64, tied embeddings)
with random weights of one stored type: F32, F16, BF16, Q8_0, Q4_0, Q4_1 (every matrix), or
Q4_K / Q5_K / Q6_K (the matrices whose rows are whole 256-element super-blocks: ffn_down, with
hidden 256; the others Q8_0 / Q4_0, as K-quant files mix types). Float and 32-block types are
quantized from Gaussian weights with gguf.quants; the K-quant blocks are random valid blocks
(gguf.quants cannot quantize them) with roughly zero-mean values.

Their logits are computed by the scalar tier (QWEN3C_CPU=scalar: the plain C reference
kernels) of the qwen3c on PYTHONPATH: a prefill of N_PROMPT tokens (all logits) and then
N_DECODE single-token steps, written as raw little-endian float32 (rows x vocab) next to each
file, and golden.txt lists file, tolerance and tokens. tests/c/test_golden.c reloads every file
on every CPU tier the machine runs (natively, under qemu-x86_64 / qemu-aarch64, and the mingw
build under wine) and requires max |logit - golden| <= tol * max |golden|.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CONFIG = dict(n_layers=1, dim=64, hidden_dim=64, n_heads=2, n_kv_heads=1, head_dim=32,
              vocab_size=64, context_length=256, rope_theta=1_000_000.0, norm_eps=1e-6)
N_PROMPT, N_DECODE = 12, 4  # a batched prefill (>= 8 tokens), then decode steps
WEIGHT_STD = 0.05
# relative tolerance per stored type: float32 rounding of the same sums (FMA or not, summation
# order, q24 on tiers that run it) is ~1e-6 of the largest logit; 20x headroom
TOL = {"F32": 2e-5, "F16": 2e-5, "BF16": 2e-5, "Q8_0": 2e-5, "Q4_0": 2e-5, "Q4_1": 2e-5,
       "Q4_K": 2e-5, "Q5_K": 2e-5, "Q6_K": 2e-5}


def _make_model_module():
    """bench/make_model.py (the tensor list and the qwen3.* keys are the same for any shape)."""
    spec = importlib.util.spec_from_file_location("make_model", ROOT / "bench" / "make_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _f16(x) -> np.ndarray:
    return np.asarray(x, np.float16).view(np.uint8).reshape(-1, 2)


def random_k_blocks(tname: str, rows: int, cols: int, rng) -> np.ndarray:
    """Random valid Q4_K / Q5_K / Q6_K blocks (rows, cols / 256 * type_size) with values of
    standard deviation ~WEIGHT_STD around 0 (dmin * min ~ the mean of d * scale * q)."""
    nb = rows * cols // 256
    if tname == "Q6_K":  # ql[128] qh[64] int8 scales[16] f16 d: d * sc * (q - 32)
        blk = rng.integers(0, 256, (nb, 210), dtype=np.uint8)
        blk[:, 208:210] = _f16(WEIGHT_STD / (74 * 18.5) * rng.uniform(0.75, 1.25, nb))
        return blk.reshape(rows, -1)
    ts, qmax = (144, 15) if tname == "Q4_K" else (176, 31)
    blk = rng.integers(0, 256, (nb, ts), dtype=np.uint8)  # scales, (qh,) qs: random bits
    d = WEIGHT_STD / (31.5 * qmax / 2 * 1.2) * rng.uniform(0.75, 1.25, nb)
    blk[:, 0:2] = _f16(d)
    blk[:, 2:4] = _f16(d * qmax / 2)  # dmin: E[d sc q] = d 31.5 qmax/2 = E[dmin mn] = dmin 31.5
    return blk.reshape(rows, -1)


def write_file(path: Path, tname: str, seed: int) -> None:
    import gguf
    from gguf import GGMLQuantizationType as GQT
    from gguf.quants import quantize

    mm = _make_model_module()
    k_quant = tname.endswith("_K")
    cfg = dict(CONFIG, hidden_dim=256 if k_quant else CONFIG["hidden_dim"])
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "qwen3")
    w.add_name(f"qwen3c-golden-{tname.lower()}")
    mm.write_qwen3_hparams(w, n_layers=cfg["n_layers"], context_length=cfg["context_length"],
                           dim=cfg["dim"], hidden_dim=cfg["hidden_dim"], n_heads=cfg["n_heads"],
                           n_kv_heads=cfg["n_kv_heads"], head_dim=cfg["head_dim"],
                           rope_theta=cfg["rope_theta"], norm_eps=cfg["norm_eps"])
    for name, shape in mm._tensor_shapes(cfg):
        if len(shape) == 1:  # norms: F32, around 1
            w.add_tensor(name, (1 + 0.1 * rng.standard_normal(shape)).astype(np.float32))
            continue
        rows, cols = shape
        ttype = tname
        if k_quant:  # K-quants where a row is whole super-blocks, else what such files mix in
            ttype = tname if cols % 256 == 0 else ("Q4_0" if "ffn" in name else "Q8_0")
        if ttype.endswith("_K"):
            w.add_tensor(name, random_k_blocks(ttype, rows, cols, rng), raw_dtype=GQT[ttype])
            continue
        x = (WEIGHT_STD * rng.standard_normal((rows, cols))).astype(np.float32)
        if ttype == "F32":
            w.add_tensor(name, x)
        elif ttype == "F16":
            w.add_tensor(name, x.astype(np.float16))
        else:
            w.add_tensor(name, quantize(x, GQT[ttype]), raw_dtype=GQT[ttype])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def golden_logits(path: Path, tokens: list) -> np.ndarray:
    """(N_PROMPT + N_DECODE, vocab) float32 logits from the scalar tier."""
    os.environ["QWEN3C_CPU"] = "scalar"
    import qwen3c

    with qwen3c.Model(str(path), n_ctx=64, n_threads=1) as m:
        assert m.cpu_tier == "scalar"
        rows = [m.forward(tokens[:N_PROMPT], pos=0, all_logits=True)]
        for i in range(N_PROMPT, N_PROMPT + N_DECODE):
            rows.append(m.forward(tokens[i:i + 1], pos=i)[None])
    return np.concatenate(rows).astype("<f4")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "tests" / "data" / "golden"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tokens = [int(t) for t in np.random.default_rng(19).integers(0, CONFIG["vocab_size"], N_PROMPT + N_DECODE)]
    lines = ["# tests/c/test_golden.c: file  relative-tolerance  n_prompt  n_decode  tokens...",
             "# written by tools/gen_golden.py (logits: the scalar tier's, <file>.logits, float32 LE)"]
    for i, tname in enumerate(TOL):
        name = f"qwen3-tiny-{tname.lower()}.gguf"
        write_file(out / name, tname, seed=100 + i)
        logits = golden_logits(out / name, tokens)
        assert np.isfinite(logits).all() and logits.std() > 0, tname
        (out / (name + ".logits")).write_bytes(logits.tobytes())
        lines.append(f"{name} {TOL[tname]:g} {N_PROMPT} {N_DECODE} " + " ".join(map(str, tokens)))
        print(f"{name}: {(out / name).stat().st_size / 1e3:.1f} KB, logits std {logits.std():.3f}")
    (out / "golden.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
