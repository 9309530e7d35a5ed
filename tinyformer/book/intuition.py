"""Pictures for the intuition behind attention: figures and one distance, in the book's style.

- :func:`qk_plane_figure`: one query and several keys as arrows in a 2-D plane, each key's
  shadow on the query's direction marked, so that a score reads as length times alignment.
- :func:`temperature_figure`: one row of scores as weights at several temperatures.
- :func:`total_variation`: how far apart two attention rows are (0 equal, 1 disjoint).
- :func:`context_rows_figure`: one head's weights for the same character in two contexts.

Every figure is at most :data:`tinyformer.book.plots.WIDTH` inches wide with text of at least
10 pt, so on a 390 px phone screen its smallest label stays about 10 px tall; the caller adds
alt text (:func:`tinyformer.book.claims.describe_figure`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .plots import BLUE, COLORS, GREY, ORANGE, WIDTH, use_book_style

__all__ = ["total_variation", "qk_plane_figure", "temperature_figure", "context_rows_figure", "show_char"]


def total_variation(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Total variation distance between distributions along the last axis: half the L1 distance.

    0 when the rows are equal, 1 when they put their weight on disjoint positions. Broadcasts
    like ``p - q``.
    """
    p, q = torch.as_tensor(p), torch.as_tensor(q)
    if p.shape[-1] != q.shape[-1]:
        raise ValueError(f"total_variation needs rows of the same length, got {p.shape[-1]} and {q.shape[-1]}")
    return 0.5 * (p - q).abs().sum(-1)


def show_char(ch: str) -> str:
    """A character as a tick label: space and newline made visible."""
    return {"\n": "⏎", " ": "␣"}.get(ch, ch)


def _np(x) -> np.ndarray:
    return x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)


def qk_plane_figure(query, keys, key_labels: Sequence[str], query_label: str = "query"):
    """A query ``(2,)`` and keys ``(N, 2)`` as arrows from the origin.

    Each key's shadow on the query's line is drawn as a dotted drop to that line: the dot
    product is the query's length times the signed length of that shadow.
    """
    q, k = _np(query), _np(keys)
    if q.shape != (2,) or k.ndim != 2 or k.shape[1] != 2:
        raise ValueError(f"qk_plane_figure draws 2-D vectors: query (2,), keys (N, 2); got {q.shape} and {k.shape}")
    if len(key_labels) != len(k):
        raise ValueError(f"{len(k)} keys but {len(key_labels)} labels")
    use_book_style()
    fig, ax = plt.subplots(figsize=(WIDTH, WIDTH * 0.7))
    lim = 1.25 * max(np.abs(k).max(), np.abs(q).max())
    unit = q / np.linalg.norm(q)
    ax.axline((0, 0), tuple(unit), color="#dddddd", linewidth=1, zorder=0)  # the query's direction
    arrow = dict(arrowstyle="-|>", linewidth=2, mutation_scale=14, shrinkA=0, shrinkB=0)
    def label_at(vec, text, color, away_from, **kw):
        """Beside the arrow's tip, on the side turned away from ``away_from``, so labels clear the arrows."""
        direction = vec / np.linalg.norm(vec)
        side = np.sign(away_from[0] * vec[1] - away_from[1] * vec[0]) or 1.0  # which way vec turns from it
        offset = 0.06 * lim * (direction + side * np.array([-direction[1], direction[0]]))
        x, y = vec + offset
        ax.text(x, y, text, ha="left" if offset[0] >= 0 else "right", va="bottom" if offset[1] >= 0 else "top",
                fontsize=12, color=color, **kw)

    for vec, label in zip(k, key_labels):
        shadow = (vec @ unit) * unit
        ax.plot([vec[0], shadow[0]], [vec[1], shadow[1]], ":", color=GREY, linewidth=1.2)
        ax.annotate("", xy=tuple(vec), xytext=(0, 0), arrowprops={**arrow, "color": BLUE})
        label_at(vec, label, BLUE, q)
    ax.annotate("", xy=tuple(q), xytext=(0, 0), arrowprops={**arrow, "color": ORANGE, "linewidth": 3})
    nearest = k[np.argmax(k @ q / np.linalg.norm(k, axis=1))]  # the key closest in angle: label away from it
    label_at(q, query_label, ORANGE, nearest, fontweight="bold")
    ax.set_xlim(-1.5 * lim, 1.5 * lim)  # room for the labels beside the tips
    ax.set_ylim(-1.02 * lim, 1.02 * lim)
    ax.set_aspect("equal")
    ax.axhline(0, color="#eeeeee", linewidth=0.8, zorder=0)
    ax.axvline(0, color="#eeeeee", linewidth=0.8, zorder=0)
    ax.axis("off")  # the two features of a random projection have no meaning of their own: no scales
    return fig


def temperature_figure(weights_by_label: Mapping[str, Sequence[float]], key_labels: Sequence[str],
                       ylabel: str = "attention weight"):
    """Grouped bars: the same scores' softmax weights under each label (e.g. "τ = √8")."""
    labels = list(weights_by_label)
    n = len(key_labels)
    if any(len(_np(w)) != n for w in weights_by_label.values()):
        raise ValueError(f"every row of weights needs {n} values, one per key label")
    use_book_style()
    x = np.arange(n)
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(WIDTH, 3.2))
    for i, (label, color) in enumerate(zip(labels, COLORS)):
        ax.bar(x + (i - (len(labels) - 1) / 2) * width, _np(weights_by_label[label]), width, label=label, color=color)
    ax.set_xticks(x, labels=list(key_labels))
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.legend(frameon=False, ncols=len(labels), loc="upper center", bbox_to_anchor=(0.5, 1.16))
    return fig


def context_rows_figure(rows, contexts: Sequence[str], titles: Sequence[str]):
    """One attention row per context (``(2, W)``: the last character's weights over the W
    characters of its window), as bars under each window's characters, one panel per context.
    The reading character (the last) is marked in orange, bar and tick label."""
    rows = _np(rows)
    if rows.ndim != 2 or rows.shape[0] != len(contexts) or len(titles) != len(contexts):
        raise ValueError("context_rows_figure needs one row, one context and one title per panel")
    if any(len(c) != rows.shape[1] for c in contexts):
        raise ValueError(f"every context needs {rows.shape[1]} characters, one per weight")
    use_book_style()
    n = len(contexts)
    fig, axes = plt.subplots(n, 1, figsize=(WIDTH, 1.9 * n + 0.3), sharey=True, squeeze=False)
    for ax, row, text, title in zip(axes.flat, rows, contexts, titles):
        x = np.arange(len(text))
        colors = [ORANGE if i == len(text) - 1 else BLUE for i in x]
        ax.bar(x, row, color=colors, width=0.8)
        ax.set_xticks(x, labels=[show_char(c) for c in text], fontsize=10)
        ax.tick_params(axis="x", length=0, pad=2)
        reader = ax.get_xticklabels()[-1]  # the character that reads: its own bar may be too small to see
        reader.set_color(ORANGE)
        reader.set_fontweight("bold")
        ax.set_xlim(-0.6, len(text) - 0.4)
        ax.set_ylim(0, 1)
        ax.set_title(title, fontsize=12, loc="left")
        ax.set_ylabel("weight")
    return fig
