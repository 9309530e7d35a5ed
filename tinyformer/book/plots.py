"""The book's figures, in one style.

Sized for phones: 5 inches wide at 144 dpi with 12 pt text, so that when a
figure shrinks to a 390 px screen its labels stay about 12 px tall. Each
function draws one figure and returns it; the caller adds alt text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = [
    "use_book_style",
    "attention_heatmap",
    "attention_heads",
    "mask_figure",
    "positional_encoding_heatmap",
    "positional_encoding_curves",
    "rope_rotation_figure",
    "rope_relative_figure",
    "softmax_temperature_figure",
    "norm_comparison_figure",
    "loss_curves",
    "bar_figure",
    "line_figure",
]

# The theme's palette (assets/css/style.css): link blue, muted grey, accent.
BLUE, GREY, ACCENT, ORANGE, GREEN = "#0b66d0", "#666666", "#f5f7ff", "#d9730d", "#2e8540"
COLORS = [BLUE, ORANGE, GREEN, "#8a3ffc", "#c5283d", GREY]
WIDTH = 5.0  # inches


def use_book_style() -> None:
    """Set matplotlib defaults for every figure in the book."""
    plt.rcParams.update(
        {
            "figure.dpi": 144,
            "savefig.dpi": 144,
            "figure.figsize": (WIDTH, 3.4),
            "figure.facecolor": "white",
            "font.size": 12,
            "axes.titlesize": 13,
            "axes.labelsize": 12,
            "xtick.labelsize": 11,
            "ytick.labelsize": 11,
            "legend.fontsize": 11,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.prop_cycle": matplotlib.cycler(color=COLORS),
            "axes.grid": False,
            "image.cmap": "Blues",
            "figure.constrained_layout.use": True,
        }
    )


def _np(x) -> np.ndarray:
    return x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _heatmap(ax, matrix, row_labels, col_labels, annotate, vmin=0.0, vmax=1.0, cmap="Blues", fmt=".2f"):
    matrix = _np(matrix)
    im = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    if col_labels is not None:
        ax.set_xticks(range(len(col_labels)), labels=col_labels, rotation=90 if len(col_labels) > 6 else 0)
    if row_labels is not None:
        ax.set_yticks(range(len(row_labels)), labels=row_labels)
    if annotate and matrix.shape[0] * matrix.shape[1] <= 64:
        mid = (vmin + vmax) / 2
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=10,
                    color="white" if v > mid else "#111111")
    ax.spines[:].set_visible(False)
    return im


def attention_heatmap(weights, query_labels=None, key_labels=None, title=None, annotate=True):
    """One attention matrix ``(Tq, Tk)``: row i is query i's distribution over keys."""
    weights = _np(weights)
    n = max(weights.shape)
    side = min(WIDTH - 0.8, 1.6 + 0.5 * n)  # + 0.8 in for the colour bar
    fig, ax = plt.subplots(figsize=(side + 0.8, side))
    im = _heatmap(ax, weights, query_labels, key_labels if key_labels is not None else query_labels, annotate)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if title:
        ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def attention_heads(weights, labels=None, titles=None, ncols=2, annotate=False, key_labels=None):
    """Per-head panels ``(H, Tq, Tk)``. Two to a row keeps tick labels legible on a phone;
    four to a row (no labels) fits a whole layers x heads grid."""
    weights = _np(weights)
    H = weights.shape[0]
    ncols = min(ncols, H)
    nrows = int(np.ceil(H / ncols))
    panel = WIDTH / ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(WIDTH, panel * nrows * 1.05 + 0.3), squeeze=False)
    for h, ax in enumerate(axes.flat):
        if h >= H:
            ax.axis("off")
            continue
        _heatmap(ax, weights[h], labels, key_labels if key_labels is not None else labels, annotate)
        ax.set_title(titles[h] if titles else f"head {h}", fontsize=12 if ncols <= 2 else 10)
        if labels is None:
            ax.set_xticks([])
            ax.set_yticks([])
        elif len(labels) > 8:
            ax.tick_params(labelsize=8)
    return fig


def mask_figure(mask, labels=None, title=None):
    """A boolean mask: filled = may attend, white = blocked."""
    mask = _np(mask).astype(float)
    n = mask.shape[0]
    side = min(WIDTH * 0.75, 1.4 + 0.45 * n)
    fig, ax = plt.subplots(figsize=(side, side))
    _heatmap(ax, mask, labels, labels, annotate=False)
    for (i, j), v in np.ndenumerate(mask):
        if n <= 10:
            ax.text(j, i, "✓" if v else "–", ha="center", va="center", fontsize=11,
                    color="white" if v else GREY)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    if title:
        ax.set_title(title)
    return fig


def positional_encoding_heatmap(pe, title="Sinusoidal positional encoding"):
    """The ``(T, D)`` table: one row per position, one column per feature."""
    pe = _np(pe)
    fig, ax = plt.subplots(figsize=(WIDTH, 3.4))
    im = ax.imshow(pe, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xlabel("feature index")
    ax.set_ylabel("position")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.85)
    return fig


def positional_encoding_curves(pe, dims: Sequence[int] = (0, 2, 6, 10)):
    """A few columns of the table as waves: low features spin fast, high ones slowly."""
    pe = _np(pe)
    fig, ax = plt.subplots(figsize=(WIDTH, 3.2))
    for d in dims:
        ax.plot(pe[:, d], label=f"feature {d}", linewidth=2)
    ax.set_xlabel("position")
    ax.set_ylabel("value")
    ax.legend(loc="lower left", ncols=2, frameon=False)
    ax.set_ylim(-1.25, 1.35)
    return fig


def rope_rotation_figure(angles_per_position: Sequence[float], positions: Sequence[int]):
    """How one feature pair turns with position, for a fast and a slow frequency."""
    fig, axes = plt.subplots(1, len(angles_per_position), figsize=(WIDTH, 2.7), squeeze=False)
    for ax, omega in zip(axes.flat, angles_per_position):
        circle = np.linspace(0, 2 * np.pi, 200)
        ax.plot(np.cos(circle), np.sin(circle), color="#dddddd", linewidth=1)
        for p in positions:
            a = p * omega
            ax.annotate("", xy=(np.cos(a), np.sin(a)), xytext=(0, 0),
                        arrowprops=dict(arrowstyle="->", color=BLUE, alpha=0.35 + 0.65 * (p + 1) / (max(positions) + 1)))
            ax.text(1.22 * np.cos(a), 1.22 * np.sin(a), str(p), ha="center", va="center", fontsize=10)
        ax.set_aspect("equal")
        ax.set_xlim(-1.45, 1.45)
        ax.set_ylim(-1.45, 1.45)
        ax.axis("off")
        ax.set_title(f"{omega:.2g} rad / position", fontsize=12)
    return fig


def rope_relative_figure(scores, title="q_m · k_n with RoPE"):
    """Scores for every query position m and key position n: constant along diagonals."""
    scores = _np(scores)
    fig, ax = plt.subplots(figsize=(WIDTH * 0.85, WIDTH * 0.72))
    lim = np.abs(scores).max()
    im = ax.imshow(scores, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_xlabel("key position n")
    ax.set_ylabel("query position m")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.85)
    return fig


def softmax_temperature_figure(probs_by_temperature: Mapping[float, Sequence[float]], labels=None):
    """Grouped bars: the same logits as probabilities at several temperatures."""
    temps = list(probs_by_temperature)
    n = len(next(iter(probs_by_temperature.values())))
    x = np.arange(n)
    width = 0.8 / len(temps)
    fig, ax = plt.subplots(figsize=(WIDTH, 3.2))
    for i, t in enumerate(temps):
        ax.bar(x + (i - (len(temps) - 1) / 2) * width, _np(probs_by_temperature[t]), width, label=f"τ = {t:g}")
    ax.set_xticks(x, labels=labels if labels is not None else [str(i) for i in x])
    ax.set_ylabel("probability")
    ax.legend(frameon=False)
    return fig


def norm_comparison_figure(x, layer_out, rms_out, labels=None):
    """One vector before and after LayerNorm and RMSNorm."""
    x, layer_out, rms_out = _np(x), _np(layer_out), _np(rms_out)
    idx = np.arange(len(x))
    fig, ax = plt.subplots(figsize=(WIDTH, 3.2))
    w = 0.27
    ax.bar(idx - w, x, w, label="input", color=GREY)
    ax.bar(idx, layer_out, w, label="LayerNorm", color=BLUE)
    ax.bar(idx + w, rms_out, w, label="RMSNorm", color=ORANGE)
    ax.axhline(0, color="#111111", linewidth=0.8)
    ax.set_xticks(idx, labels=labels if labels is not None else [str(i) for i in idx])
    ax.set_xlabel("feature")
    ax.legend(frameon=False, ncols=3, loc="upper center", bbox_to_anchor=(0.5, 1.15))
    return fig


def loss_curves(log: Mapping[str, Sequence[float]], baselines: Mapping[str, float] | None = None):
    """Train/val loss against step, with horizontal lines for baselines."""
    fig, ax = plt.subplots(figsize=(WIDTH, 3.4))
    if "train_loss" in log:
        ax.plot(log["step"], log["train_loss"], label="train", color=BLUE, linewidth=1.5, alpha=0.8)
    if "val_loss" in log:
        ax.plot(log["val_step"], log["val_loss"], "o-", label="validation", color=ORANGE, linewidth=2)
    for (name, value), style in zip((baselines or {}).items(), ["--", ":", "-."]):
        ax.axhline(value, linestyle=style, color=GREY, linewidth=1.5)
        ax.text(ax.get_xlim()[1], value, f" {name}", va="bottom", ha="right", fontsize=10, color=GREY)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.legend(frameon=False)
    return fig


def bar_figure(values: Mapping[str, float], ylabel: str, title=None, fmt="{:.2f}", horizontal=False):
    """Labelled bars with their values printed on them."""
    names, vals = list(values), [float(v) for v in values.values()]
    fig, ax = plt.subplots(figsize=(WIDTH, 0.5 * len(names) + 1.2 if horizontal else 3.2))
    bars = ax.barh(names, vals, color=BLUE) if horizontal else ax.bar(names, vals, color=BLUE)
    ax.bar_label(bars, labels=[fmt.format(v) for v in vals], padding=2, fontsize=10)
    (ax.set_xlabel if horizontal else ax.set_ylabel)(ylabel)
    if horizontal:
        ax.invert_yaxis()
    if title:
        ax.set_title(title)
    return fig


def line_figure(x, series: Mapping[str, Sequence[float]], xlabel: str, ylabel: str, logx=False, logy=False, title=None):
    """Several named series against one x axis."""
    fig, ax = plt.subplots(figsize=(WIDTH, 3.3))
    for name, ys in series.items():
        ax.plot(x, ys, "o-", label=name, linewidth=2, markersize=4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    return fig
