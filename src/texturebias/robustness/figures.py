"""Robustness figures: accuracy-vs-level curves and benchmark bars (humans in the paper's red)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from texturebias.evaluate.trials import canonical_condition
from texturebias.report.figures import HUMAN_COLOR, save_figure
from texturebias.robustness.distortions import DISTORTIONS, condition_x

CHANCE_16 = 1.0 / 16.0
_MODEL_COLOURS = ("#1f5fa6", "#2a9d8f", "#e9a23b", "#6d597a", "#555555", "#8ab17d", "#264653")


def plot_accuracy_curves(table: pd.DataFrame, distortion: str, stem: str | os.PathLike[str]) -> list[Path]:
    """Accuracy vs. condition, one line per decision maker (humans in red), chance level dashed.

    Args:
        table: Columns ``subj, condition, accuracy`` (e.g. from
            :func:`~texturebias.robustness.benchmark.accuracy_by_condition`).
        distortion: Distortion name (x positions and label from the registry).
        stem: Output path without extension; ``.png`` and ``.pdf`` are written.
    """

    dist = DISTORTIONS[distortion]
    keys = {canonical_condition(c): c for c in dist.conditions}
    fig = Figure(figsize=(4.2, 3.6))
    ax = fig.add_subplot()
    for i, (subj, g) in enumerate(table.groupby("subj", sort=False)):
        conds = [keys.get(canonical_condition(c), str(c)) for c in g["condition"]]
        pairs = sorted(
            (condition_x(distortion, c), a) for c, a in zip(conds, g["accuracy"], strict=True) if c in dist.conditions
        )
        if not pairs:
            continue
        xs, ys = zip(*pairs, strict=True)
        human = subj == "humans"
        ax.plot(xs, ys, marker="D" if human else "o", color=HUMAN_COLOR if human else _MODEL_COLOURS[i % 7],
                label=str(subj), lw=2 if human else 1.5, ms=5, zorder=3 if human else 2)  # fmt: skip
    xs_all = [condition_x(distortion, c) for c in dist.conditions]
    ax.set_xticks(xs_all)
    labels = [c.lstrip("c") if distortion == "contrast" else c for c in dist.conditions]
    if distortion.startswith("eidolon"):
        labels = [str(int(x)) for x in xs_all]  # log2 of the reach
    ax.set_xticklabels(labels, rotation=45 if len(labels) > 6 else 0)
    ax.axhline(CHANCE_16, ls="--", color="grey", lw=1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(dist.xlabel.replace("$_2$", "2"))
    ax.set_ylabel("classification accuracy")
    ax.set_title(distortion)
    ax.legend(frameon=False, fontsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    return save_figure(fig, stem, dpi=150)


def plot_benchmark_bars(
    per_dataset: pd.DataFrame, metric: str, stem: str | os.PathLike[str], *, label: str | None = None
) -> list[Path]:
    """Bar chart of a benchmark metric averaged over datasets, one bar per decision maker (humans in red).

    Dots show the per-dataset values. Sorted as model-vs-human: higher is better except accuracy difference.
    """

    means = per_dataset.groupby("subj", sort=False)[metric].mean()
    means = means.sort_values(ascending=metric == "accuracy_difference")
    fig = Figure(figsize=(max(3.0, 0.7 * len(means) + 1.5), 3.4))
    ax = fig.add_subplot()
    for i, (subj, value) in enumerate(means.items()):
        colour = HUMAN_COLOR if subj == "humans" else _MODEL_COLOURS[0]
        ax.bar(i, value, color=colour, alpha=0.85, width=0.7)
        pts = per_dataset.loc[per_dataset["subj"] == subj, metric].to_numpy(float)
        ax.scatter(np.full(len(pts), i) + np.linspace(-0.2, 0.2, len(pts)), pts, s=9, color="black", zorder=3)
    ax.set_xticks(range(len(means)))
    ax.set_xticklabels([str(s) for s in means.index], rotation=30, ha="right")
    ax.set_ylabel(label or metric)
    ax.axhline(0, color="black", lw=0.8)
    ax.spines[["top", "right"]].set_visible(False)
    return save_figure(fig, stem, dpi=150)
