"""The pictures (qwen3c.plots, the `viz` extra) and the commands that draw them: `next --plot`,
`attend --out`, `lens --plot`, `diff --plot`; the token labels; and every command without
matplotlib (tables, plus the install hint)."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import qwen3c
from qwen3c import attend, introspect, labels, lens

PKG_PARENT = str(Path(qwen3c.__file__).resolve().parent.parent)
TOKENS = "5,17,200,3,99,42,42,7,128,255"


def png_size(path: Path) -> tuple:
    """(width, height) from a PNG's IHDR chunk; fails for anything that is not a PNG."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def assert_sensible_png(path: Path, min_side=300, max_side=4000, min_bytes=8000):
    w, h = png_size(path)
    assert min_side <= w <= max_side and min_side <= h <= max_side, (w, h)
    assert min_bytes <= path.stat().st_size <= 2_000_000, path.stat().st_size


@pytest.fixture(scope="module")
def tiny(make_tiny_model):
    return make_tiny_model(num_hidden_layers=3, seed=7)


# ---- labels -----------------------------------------------------------------------------------

def test_token_label_makes_every_token_visible():
    assert labels.token_label(" Paris") == "\u2423Paris"
    assert labels.token_label("\n\n") == "\u21b5\u21b5"
    assert labels.token_label("\t") == "\u21e5"
    assert labels.token_label("a\x00b\x7f") == "a\\x00b\\x7f"
    assert labels.token_label("\u200b") == "\\u200b"        # zero-width space: invisible
    assert labels.token_label("\\xe4\\xbd") == "\\xe4\\xbd"  # token_text's byte escapes stay
    assert labels.token_label("你好") == "你好"
    assert labels.token_label(None, 42) == "#42"
    assert labels.token_label("abcdefghij", max_len=5) == "abcd\u2026"
    assert labels.token_label("") == "\u2205"


def test_plot_label_escapes_what_no_font_can_draw():
    pytest.importorskip("matplotlib")
    from qwen3c import plots
    families, cover = plots._fonts()
    assert plots.plot_label(" the") == "\u2423the"  # DejaVu Sans has the open-box sign
    assert plots.plot_label("\U00013000") == "\\U00013000"  # an Egyptian hieroglyph: no font here
    cjk = plots.plot_label("你好")
    if ord("你") in cover:  # a CJK font is installed (CI installs fonts-wqy-microhei)
        assert cjk == "你好" and len(families) > 1
    else:
        assert cjk == "\\u4f60\\u597d"


# ---- the pictures from the commands ---------------------------------------------------------------

def test_next_plot(tiny_chat_gguf, tmp_path, capsys):
    out = tmp_path / "next.png"
    rc = introspect.main_next(["--model", str(tiny_chat_gguf), "What is the capital of India?",
                               "-k", "8", "--plot", str(out)])
    assert rc == 0
    captured = capsys.readouterr()
    assert "rank" in captured.out and f"wrote {out}" in captured.err
    assert_sensible_png(out)


def test_attend_heads_grid_single_head_and_layers(tiny_chat_gguf, tmp_path, capsys):
    text = "The capital of France is Paris.\n你好 🙂"
    for name, extra in [("grid", []), ("one", ["--layer", "1", "--head", "3"]),
                        ("layers", ["--layer", "all"]), ("mean", ["--layer", "-1", "--head", "mean"])]:
        out = tmp_path / f"attn_{name}.png"
        assert attend.main_attend(["--model", str(tiny_chat_gguf), text, "--out", str(out),
                                   *extra]) == 0, name
        assert_sensible_png(out)
    table = capsys.readouterr().out
    assert "\u2423capital" in table and "\u21b5" in table  # visible space and newline


def test_attend_table_and_json(tiny, capsys):
    _, gguf_path = tiny
    assert attend.main_attend(["--model", str(gguf_path), "--tokens", TOKENS, "--layer", "0",
                               "--head", "1"]) == 0
    out = capsys.readouterr().out
    assert "10 tokens (token ids); attention of layer 0 of 3, head 1" in out
    assert "0:#5 1.00" in out  # the first token can only look at itself
    import json
    assert attend.main_attend(["--model", str(gguf_path), "--tokens", TOKENS, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["selection"] == "layer 2 of 3, 4 heads" and len(d["panels"]) == 4
    with qwen3c.Model(gguf_path, n_ctx=64) as m:
        want = m.attention([int(t) for t in TOKENS.split(",")])[2, 3]
    np.testing.assert_allclose(d["panels"][3]["attention"], want, atol=1e-6)


def test_select_attention():
    a = np.random.default_rng(0).random((3, 4, 5, 5))
    panels, table, what = attend.select_attention(a)
    assert len(panels) == 4 and what == "layer 2 of 3, 4 heads"
    np.testing.assert_allclose(table, a[2].mean(0))
    panels, table, what = attend.select_attention(a, "all")
    assert [n for n, _ in panels] == ["layer 0", "layer 1", "layer 2"]
    panels, table, _ = attend.select_attention(a, "all", 1)
    np.testing.assert_allclose(panels[2][1], a[2, 1])
    panels, table, _ = attend.select_attention(a, -3, 2)
    assert len(panels) == 1 and np.array_equal(table, a[0, 2])
    with pytest.raises(IndexError, match="the model has 3 layers"):
        attend.select_attention(a, 3)
    with pytest.raises(IndexError, match="4 heads"):
        attend.select_attention(a, 0, 4)


@pytest.mark.parametrize("args, msg", [(["--layer", "3"], "the model has 3 layers"),
                                       (["--head", "9"], "4 heads"),
                                       (["--layer", "x"], "'all'"),
                                       (["--head", "avg"], "'mean'"),
                                       (["--out", "a.jpg"], "must end in")])
def test_attend_usage_errors(tiny, capsys, args, msg):
    _, gguf_path = tiny
    with pytest.raises(SystemExit) as e:
        attend.main_attend(["--model", str(gguf_path), "--tokens", TOKENS, *args])
    assert e.value.code == 2 and msg in capsys.readouterr().err


def test_lens_plot(tiny_chat_gguf, tmp_path):
    out = tmp_path / "lens.svg"
    assert lens.main_lens(["--model", str(tiny_chat_gguf), "--raw", "The capital of France is",
                           "--plot", str(out)]) == 0
    assert out.read_text().lstrip().startswith("<?xml") and "<svg" in out.read_text()
    png = tmp_path / "lens.png"
    assert lens.main_lens(["--model", str(tiny_chat_gguf), "--raw", "The capital of France is",
                           "--plot", str(png), "-k", "6"]) == 0
    assert_sensible_png(png)


def test_diff_plot(tiny, tmp_path, capsys):
    hf_dir, gguf_path = tiny
    out = tmp_path / "diff.png"
    rc = introspect.main_diff(["--model", str(gguf_path), "--hf", str(hf_dir), "--tokens", TOKENS,
                               "--plot", str(out)])
    assert rc == 0 and "all stages within tolerance" in capsys.readouterr().out
    assert_sensible_png(out)


def test_plot_functions_refuse_empty_data(tmp_path):
    pytest.importorskip("matplotlib")
    from qwen3c import plots
    with pytest.raises(ValueError):
        plots.plot_next([], tmp_path / "x.png", vocab_size=10)
    with pytest.raises(ValueError):
        plots.plot_attention([], [], tmp_path / "x.png")
    with pytest.raises(ValueError, match="2 tokens for 3 keys"):
        plots.plot_attention([("a", np.eye(3))], [(1, "a"), (2, "b")], tmp_path / "x.png")


# ---- without matplotlib ----------------------------------------------------------------------------

NO_MATPLOTLIB = ("import sys\n"
                 "sys.modules['matplotlib'] = None  # `import matplotlib` now raises ImportError\n"
                 "from qwen3c.__main__ import main\n"
                 "sys.exit(main(sys.argv[1:]))\n")


def run_without_matplotlib(args, cwd):
    env = dict(os.environ, PYTHONPATH=PKG_PARENT)
    return subprocess.run([sys.executable, "-c", NO_MATPLOTLIB, *args], capture_output=True,
                          text=True, timeout=300, env=env, cwd=cwd)


def test_every_command_works_without_matplotlib(tiny, tiny_chat_gguf, tmp_path):
    hf_dir, gguf_path = tiny
    m, chat = str(gguf_path), str(tiny_chat_gguf)
    runs = {
        "next": ["next", "--model", chat, "Hi", "--plot", "next.png"],
        "attend": ["attend", "--model", m, "--tokens", TOKENS, "--out", "attn.png"],
        "lens": ["lens", "--model", m, "--tokens", TOKENS, "--plot", "lens.png"],
        "diff": ["diff", "--model", m, "--hf", str(hf_dir), "--tokens", TOKENS, "--plot", "diff.png"],
    }
    tables = {"next": "rank", "attend": "attends to", "lens": "embedding", "diff": "final norm"}
    for name, args in runs.items():
        r = run_without_matplotlib(args, tmp_path)
        assert r.returncode == 0, (name, r.stderr)
        assert tables[name] in r.stdout, name
        assert "pip install 'qwen3c[viz]'" in r.stderr and "no picture written" in r.stderr, name
        assert "Traceback" not in r.stderr
    assert not list(tmp_path.glob("*.png"))
    # the explain page needs no matplotlib at all
    r = run_without_matplotlib(["explain", "--model", chat, "--prompt", "Hi", "--max-tokens", "3",
                                "--out", "e.html"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "e.html").stat().st_size > 1000
    r = run_without_matplotlib(["--help"], tmp_path)
    assert r.returncode == 0 and "lens, attend, explain" in r.stdout
