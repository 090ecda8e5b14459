"""Pictures of what the engine computes, drawn with matplotlib (the `viz` extra).

    pip install 'qwen3c[viz]'

This is the only module that imports matplotlib, and only inside its functions: `import
qwen3c.plots` works without it, and `require()` raises MissingDependencyError with the install
hint. Every picture is drawn from the numbers the public API returns, so a picture is also a
test of that API:

    plot_next(top, path, vocab_size=...)      next-token probabilities (Model.top_k)
    plot_attention(panels, labels, path)      attention heatmaps (Model.attention)
    plot_lens(report, path)                   the logit lens (qwen3c.lens.logit_lens)
    plot_diff(report, path, tol=1e-4)         C vs PyTorch per layer (introspect.layer_diff)

Figures are made with matplotlib's object API (no pyplot, no global backend switch), so
plotting from a notebook or a server thread leaves the caller's matplotlib state alone.

Token labels show whitespace (qwen3c.labels.token_label). Characters the fonts cannot draw
(CJK without a CJK font, emoji, ...) are written as \\uXXXX escapes instead of empty boxes;
installed CJK fonts (WenQuanYi, Noto CJK, Droid Sans Fallback, ...) are used when present.
"""
from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .labels import token_label

__all__ = ["require", "plot_label", "plot_next", "plot_attention", "plot_lens", "plot_diff",
           "INSTALL_HINT"]

INSTALL_HINT = "pip install 'qwen3c[viz]'"
# the fallback fonts for labels, by family name and by file name (when matplotlib's font cache
# predates the font's installation)
_EXTRA_FAMILIES = ("Noto Sans CJK JP", "Noto Sans CJK SC", "Source Han Sans", "WenQuanYi Micro Hei",
                   "WenQuanYi Zen Hei", "Droid Sans Fallback", "AR PL UMing CN")
_EXTRA_FILES = ("notosanscjk", "sourcehansans", "wqy-microhei", "wqy-zenhei", "droidsansfallback",
                "uming")

ACCENT = "#d9480f"    # the chosen / target token
BAR = "#4c72b0"
MUTED = "#adb5bd"


def _import_error():
    """MissingDependencyError, from introspect (which does not import this module)."""
    from .introspect import MissingDependencyError
    return MissingDependencyError


def require():
    """Import matplotlib, or raise MissingDependencyError saying how to install it."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError as e:
        raise _import_error()(f"the pictures need matplotlib ({e}): {INSTALL_HINT}") from None


# ---- fonts and labels ------------------------------------------------------------------------

_font_cache: dict = {}


def _fonts() -> Tuple[List[str], frozenset]:
    """(font families for labels, the code points they can draw), found once per process."""
    if "fonts" in _font_cache:
        return _font_cache["fonts"]
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    def charmap(path):
        try:
            return set(FT2Font(str(path)).get_charmap())
        except (OSError, RuntimeError, ValueError):
            return set()

    families = ["DejaVu Sans"]
    cover = charmap(font_manager.findfont("DejaVu Sans"))
    found = False
    for fam in _EXTRA_FAMILIES:
        try:
            path = font_manager.findfont(fam, fallback_to_default=False)
        except ValueError:
            continue
        families.append(fam)
        cover |= charmap(path)
        found = True
    if not found:  # the cache may predate a font installed since: look at the files
        for path in font_manager.findSystemFonts():
            if any(k in Path(path).name.lower().replace("-", "").replace("_", "")
                   for k in (f.replace("-", "") for f in _EXTRA_FILES)):
                try:
                    font_manager.fontManager.addfont(path)
                    fam = FT2Font(path).family_name
                except (OSError, RuntimeError, ValueError):
                    continue
                if fam not in families:
                    families.append(fam)
                cover |= charmap(path)
    _font_cache["fonts"] = (families, frozenset(cover))
    return _font_cache["fonts"]


def plot_label(text: Optional[str], token_id: Optional[int] = None, max_len: int = 18) -> str:
    """token_label(text), with every character the label fonts cannot draw as an escape."""
    label = token_label(text, token_id, max_len)
    _, cover = _fonts()
    out = []
    for ch in label:
        o = ord(ch)
        out.append(ch if o < 0x80 or o in cover else
                   (f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"))
    return "".join(out)


def _figure(width: float, height: float):
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig, path) -> Path:
    """Write the figure (the format from the suffix; inside _rc()) and return the path."""
    path = Path(path)
    fig.savefig(path, facecolor="white")
    return path


@contextlib.contextmanager
def _rc():
    """The settings every picture is drawn and saved under: the label fonts with their
    fallbacks (matplotlib's note that a fallback font has no bold face is silenced)."""
    import matplotlib
    families, _ = _fonts()
    log = logging.getLogger("matplotlib.font_manager")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with matplotlib.rc_context({"font.family": families, "axes.spines.top": False,
                                    "axes.spines.right": False, "svg.fonttype": "path"}):
            yield
    finally:
        log.setLevel(level)


# ---- next-token probabilities -----------------------------------------------------------------

def plot_next(top: Sequence[tuple], path, *, vocab_size: int, chosen: Optional[int] = None,
              title: Optional[str] = None) -> Path:
    """Bar chart of the top-k next-token probabilities.

    top: [(token_id, token_text, prob), ...] most likely first (Model.top_k). chosen: the token
    the sampler picked, marked in the accent colour (default: the most likely one, the greedy
    pick). A last grey bar holds the probability of all the other vocab_size - k tokens."""
    require()
    if not top:
        raise ValueError("plot_next needs at least one token")
    chosen = top[0][0] if chosen is None else int(chosen)
    rest = max(0.0, 1.0 - sum(p for _, _, p in top))
    labels = [plot_label(t, i) for i, t, _ in top] + [f"the other {vocab_size - len(top):,}"]
    probs = [p for _, _, p in top] + [rest]
    colors = [ACCENT if i == chosen else BAR for i, _, _ in top] + [MUTED]
    with _rc():
        fig = _figure(7.5, 1.0 + 0.36 * len(labels))
        ax = fig.add_subplot()
        y = np.arange(len(labels))
        ax.barh(y, probs, color=colors, height=0.72)
        ax.set_yticks(y, labels, fontsize=10)
        ax.invert_yaxis()
        ax.set_xlim(0, max(probs) * 1.22 + 1e-9)
        ax.set_xlabel("probability")
        for yi, p, (i, *_) in zip(y, probs, top + [(None,)]):
            note = f"{p:.1%}" + ("   \u2190 chosen (greedy)" if i == chosen else "")
            ax.text(p + max(probs) * 0.01, yi, note, va="center", fontsize=9,
                    color=ACCENT if i == chosen else "#333333")
        ax.set_title(title or f"next token: the top {len(top)} of {vocab_size:,} probabilities",
                     fontsize=11, loc="left")
        return _save(fig, path)


# ---- attention --------------------------------------------------------------------------------

def plot_attention(panels: Sequence[Tuple[str, np.ndarray]], tokens: Sequence[tuple], path, *,
                   title: str = "", gamma: float = 0.5) -> Path:
    """Attention heatmaps: one big panel, or a grid of small ones (heads of a layer, or layers).

    panels: [(panel title, (n_queries, n_keys) probabilities), ...]; tokens: the keys'
    [(token_id, token_text), ...] (the queries are the last n_queries of them), as labels.
    Rows are queries (the token that looks),
    columns keys (the token looked at); the future (masked) triangle is grey. gamma < 1 brightens
    small weights, which the first tokens' large share would otherwise hide."""
    require()
    from matplotlib import colors as mcolors
    if not panels:
        raise ValueError("plot_attention needs at least one panel")
    nq, nk = panels[0][1].shape
    if len(tokens) != nk:
        raise ValueError(f"{len(tokens)} tokens for {nk} keys")
    labels = [plot_label(t, i, 14) for i, t in tokens]
    qlabels = labels[nk - nq:]
    single = len(panels) == 1
    ncols = 1 if single else min(len(panels), 4 if len(panels) <= 16 else 6)
    nrows = math.ceil(len(panels) / ncols)
    cell = 0.32 if single else min(0.16, 3.2 / max(nk, 1))
    side = max(4.5 if single else 2.4, 1.6 + cell * nk)
    # a long text: the figure stops growing at 20 inches and the labels shrink with the cells
    # (a point is 1/72 inch); below 3 points they are left out
    cell_pt = 72 * (min(side, 20.0) - 1.6) / max(nk, 1)  # (single panel)
    fs_single = min(9.0, 0.8 * cell_pt)
    show_ticks = (single and fs_single >= 3) or (not single and nk <= 24)
    with _rc():
        side = min(side, 20.0 / max(ncols, nrows))
        fig = _figure(ncols * side + 1.2, nrows * side + 0.8)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        cmap = _cmap("Blues")
        norm = mcolors.PowerNorm(gamma, vmin=0.0, vmax=1.0)
        im = None
        for k, ax in enumerate(axes.flat):
            if k >= len(panels):
                ax.set_axis_off()
                continue
            name, a = panels[k]
            a = np.asarray(a, dtype=np.float64)
            masked = np.ma.masked_where(np.triu(np.ones_like(a, bool), nk - nq + 1), a)
            im = ax.imshow(masked, cmap=cmap, norm=norm, aspect="equal", interpolation="nearest")
            if not (single and title):
                ax.set_title(name, fontsize=10 if single else 8)
            r, c = divmod(k, ncols)
            fs = fs_single if single else 6
            if show_ticks and (single or c == 0):
                ax.set_yticks(range(nq), qlabels, fontsize=fs)
            else:
                ax.set_yticks([])
            if show_ticks and (single or r == nrows - 1 or k + ncols >= len(panels)):
                ax.set_xticks(range(nk), labels, fontsize=fs, rotation=90)
            else:
                ax.set_xticks([])
            for s in ax.spines.values():
                s.set_visible(False)
        if single:
            axes[0, 0].set_xlabel("key: the token looked at")
            axes[0, 0].set_ylabel("query: the token looking")
        cb = fig.colorbar(im, ax=axes, shrink=0.6 if single else 0.4, pad=0.02)
        cb.set_label("attention probability" + (f" (colour ~ p^{gamma:g})" if gamma != 1 else ""))
        if title:
            fig.suptitle(title, fontsize=11)
        return _save(fig, path)


def _cmap(name):
    import matplotlib
    return matplotlib.colormaps[name].with_extremes(bad="#eeeeee")


# ---- the logit lens ---------------------------------------------------------------------------

def plot_lens(report, path, *, title: Optional[str] = None) -> Path:
    """The logit lens as a grid: one row per layer (embedding at the bottom, the last layer at
    the top), the top-k tokens in columns, each cell shaded by its probability; a first column
    holds the probability of the target token, and cells showing the target are outlined."""
    require()
    rows = report.rows
    k = len(rows[-1].top)
    probs = np.zeros((len(rows), k + 1))
    texts = [["" for _ in range(k + 1)] for _ in rows]
    for r, row in enumerate(rows):
        probs[r, 0] = row.target_prob
        texts[r][0] = f"{row.target_prob:.2f}" + ("" if row.target_rank == 1 else f"  #{row.target_rank}")
        for c, (i, t, p) in enumerate(row.top, 1):
            probs[r, c] = p
            texts[r][c] = f"{plot_label(t, i, 12)}\n{p:.2f}"
    target = plot_label(report.target_text, report.target, 16)
    with _rc():
        fig = _figure(1.6 + 1.15 * (k + 1), max(3.0, 1.2 + 0.42 * len(rows)))
        ax = fig.add_subplot()
        cmap = _cmap("YlGnBu")
        ax.imshow(probs, cmap=cmap, vmin=0, vmax=1, aspect="auto", origin="lower",
                  interpolation="nearest")
        for r in range(len(rows)):
            for c in range(k + 1):
                dark = probs[r, c] > 0.55
                is_target = c > 0 and rows[r].top[c - 1][0] == report.target
                ax.text(c, r, texts[r][c], ha="center", va="center", fontsize=7.5,
                        color="white" if dark else "#222222",
                        fontweight="bold" if is_target or c == 0 else "normal")
                if is_target:
                    ax.add_patch(_rect(c, r, ACCENT))
        ax.set_yticks(range(len(rows)), [row.name for row in rows], fontsize=8)
        ax.set_xticks(range(k + 1), [f"p({target})"] + [f"top {c}" for c in range(1, k + 1)],
                      fontsize=8)
        ax.xaxis.tick_top()
        ax.axvline(0.5, color="white", linewidth=3)
        for s in ax.spines.values():
            s.set_visible(False)
        ax.set_title(title or f"logit lens: the next token at every layer (target {target})",
                     fontsize=11, loc="left")
        return _save(fig, path)


def _rect(c, r, color):
    from matplotlib.patches import Rectangle
    return Rectangle((c - 0.47, r - 0.45), 0.94, 0.9, fill=False, edgecolor=color, linewidth=1.8)


# ---- C vs PyTorch -----------------------------------------------------------------------------

def plot_diff(report, path, *, tol: float = 1e-4, title: Optional[str] = None) -> Path:
    """The per-stage relative error of `qwen3c diff` (max |C - PyTorch| / max |PyTorch|) on a
    log scale, with the tolerance line; exact stages (error 0) sit on the floor, marked."""
    require()
    stages = list(report.stages) + [report.logits]
    names = [s.name for s in stages]
    rel = np.array([s.rel for s in stages], dtype=np.float64)
    mean = np.array([s.mean_abs / s.ref_max if s.ref_max > 0 else 0.0 for s in stages])
    positive = np.concatenate([rel[rel > 0], mean[mean > 0], [tol]])
    floor = 10 ** math.floor(math.log10(positive.min())) / 10
    first = report.first_over(tol)
    with _rc():
        fig = _figure(max(6.0, 0.42 * len(stages) + 2.5), 4.2)
        ax = fig.add_subplot()
        x = np.arange(len(stages))
        ax.plot(x, np.where(rel > 0, rel, floor), "o-", color=BAR, label="max |d| / max |ref|")
        ax.plot(x, np.where(mean > 0, mean, floor), "s--", color=MUTED, markersize=4,
                label="mean |d| / max |ref|")
        for xi, r in zip(x, rel):
            if r == 0:
                ax.annotate("exact", (xi, floor), textcoords="offset points", xytext=(0, 6),
                            ha="center", fontsize=7, color="#555555")
        over = [i for i, s in enumerate(stages) if s.index >= 0 and not s.rel <= tol]
        if over:
            ax.plot(x[over], rel[over], "o", color=ACCENT, label="over tolerance")
        ax.axhline(tol, color=ACCENT, linestyle=":", linewidth=1, label=f"tolerance {tol:g}")
        ax.set_yscale("log")
        ax.set_ylim(floor / 2, max(positive.max(), tol) * 5)
        ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("relative error (log scale)")
        ax.legend(fontsize=8, loc="lower right", frameon=True, framealpha=0.9, edgecolor="white")
        what = "all stages within tolerance" if first is None else f"first over tolerance: {first.name}"
        ax.set_title(title or f"qwen3c vs PyTorch, stage by stage ({what})", fontsize=11, loc="left")
        ax.grid(axis="y", which="major", color="#e9ecef")
        return _save(fig, path)
