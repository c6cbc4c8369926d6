"""Shape-bias figures (MEASURE): the paper's matrix plot and a compact summary (matplotlib, PNG + PDF, no LaTeX).

- :func:`plot_shape_bias_matrix` — Geirhos et al., ICLR 2019, Fig. 4: one row per shape category (sorted by
  the human value), x = fraction of texture decisions with the fraction of shape decisions on the top axis,
  one marker per decision maker and category, a vertical line per decision maker at its overall shape bias.
- :func:`plot_shape_bias_summary` — one horizontal bar per decision maker with its bootstrap CI.

Both take plain data (``{name: ShapeBias}``) and write ``<stem>.png`` and ``<stem>.pdf`` atomically. Figures
are built with :class:`matplotlib.figure.Figure` (no pyplot state, works headless).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from texturebias.data.labels import CATEGORIES
from texturebias.evaluate.metrics import ShapeBias
from texturebias.report.figures import HUMAN_NAMES, paper_style, save_figure


def _category_order(results: Mapping[str, ShapeBias], categories: Sequence[str]) -> list[str]:
    """Categories sorted by the human value (most shape-biased first), else by the first decision maker."""
    ref = next((r for n, r in results.items() if n.lower() in HUMAN_NAMES), next(iter(results.values())))

    def key(c: str) -> float:
        v = ref.per_category.get(c, math.nan)
        return -v if not math.isnan(v) else math.inf

    return sorted(categories, key=key)


def plot_shape_bias_matrix(
    results: Mapping[str, ShapeBias],
    stem: str | os.PathLike[str],
    *,
    categories: Sequence[str] = CATEGORIES,
    title: str | None = None,
) -> list[Path]:
    """The paper's shape-bias matrix plot for any number of decision makers.

    Args:
        results: Decision maker → shape-bias result (``"humans"`` drawn as red diamonds, and sets the row order).
        stem: Output path without extension.
        categories: Rows (default: the 16 categories).
        title: Optional title.

    Returns:
        The PNG and PDF paths.
    """
    if not results:
        raise ValueError("nothing to plot")
    order = _category_order(results, categories)
    styles = paper_style(list(results))
    fig = Figure(figsize=(4.2, 0.32 * len(order) + 1.4))
    ax = fig.add_subplot()
    y = {c: i for i, c in enumerate(order)}
    for name, r in results.items():
        color, marker = styles[name]
        xs = [1 - r.per_category.get(c, math.nan) for c in order]
        ys = [y[c] for c in order]
        ax.scatter(xs, ys, marker=marker, s=36, color=color, edgecolor="white", linewidth=0.4, label=name, zorder=3)
        if not math.isnan(r.shape_bias):
            ax.axvline(1 - r.shape_bias, color=color, linewidth=1.2, alpha=0.8, zorder=2)
    ax.set_yticks(range(len(order)), order)
    ax.set_ylim(len(order) - 0.5, -0.5)  # first category on top
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("fraction of 'texture' decisions")
    ax.grid(axis="y", color="0.9", linewidth=0.6)
    top = ax.secondary_xaxis("top", functions=(lambda v: 1 - v, lambda v: 1 - v))
    top.set_xlabel("fraction of 'shape' decisions")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=min(3, len(results)), frameon=False, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, stem)


def plot_shape_bias_summary(
    results: Mapping[str, ShapeBias],
    stem: str | os.PathLike[str],
    *,
    ci: Mapping[str, tuple[float, float]] | None = None,
    title: str | None = None,
) -> list[Path]:
    """Compact summary: one horizontal bar per decision maker (shape bias, with its CI when given)."""
    if not results:
        raise ValueError("nothing to plot")
    names = list(results)
    styles = paper_style(names)
    fig = Figure(figsize=(4.6, 0.38 * len(names) + 1.0))
    ax = fig.add_subplot()
    for i, n in enumerate(names):
        v = results[n].shape_bias
        ax.barh(i, 0 if math.isnan(v) else v, color=styles[n][0], height=0.6)
        label_x = 0.0 if math.isnan(v) else v
        if ci and n in ci and not any(math.isnan(x) for x in ci[n]):
            lo, hi = ci[n]
            ax.errorbar(v, i, xerr=[[v - lo], [hi - v]], color="black", capsize=3, linewidth=1)
            label_x = hi
        ax.text(min(label_x, 1) + 0.015, i, "n/a" if math.isnan(v) else f"{v:.3f}", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlim(0, 1.12)
    ax.axvline(0.5, color="0.6", linestyle=":", linewidth=1)
    ax.set_xlabel("shape bias (shape / (shape + texture) decisions)")
    if title:
        ax.set_title(title, fontsize=10)
    return save_figure(fig, stem)
