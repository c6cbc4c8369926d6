"""Figures of the demo report (matplotlib, PNG + PDF, no LaTeX); free functions taking plain data."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from texturebias.data.images import find_images, load_image
from texturebias.demo import world
from texturebias.explain.plots import plot_heatmap
from texturebias.report.figures import save_figure


def plot_samples(samples: Mapping[str, Sequence[world.Sample]], stem: str | os.PathLike[str]) -> list[Path]:
    """One row of example images per generated set, labelled with shape (and texture)."""
    rows = list(samples)
    ncol = max(len(v) for v in samples.values())
    fig = Figure(figsize=(0.9 * ncol, 1.05 * len(rows) + 0.3))
    for r, name in enumerate(rows):
        for c, s in enumerate(samples[name]):
            ax = fig.add_subplot(len(rows), ncol, r * ncol + c + 1)
            ax.imshow(s.image, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            tex = world.TEXTURES[s.texture] if s.texture >= 0 else ""
            ax.set_title(f"{world.SHAPES[s.shape]}\n{tex}", fontsize=5.5, pad=1.5)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.subplots_adjust(wspace=0.05, hspace=0.55)
    return save_figure(fig, stem, dpi=130)


def plot_stylized_pairs(natural_dir: Path, stylized_dir: Path, stem: str | os.PathLike[str], n: int = 12) -> list[Path]:
    """Natural test images (top) and their AdaIN-stylized versions (bottom)."""
    stylized = find_images(stylized_dir)
    pick = [stylized[i] for i in np.linspace(0, len(stylized) - 1, min(n, len(stylized))).astype(int)]
    fig = Figure(figsize=(0.9 * len(pick), 2.2))
    for c, path in enumerate(pick):
        rel = path.relative_to(stylized_dir)
        nat = natural_dir / rel.parent / (rel.stem.split("_s")[0] + ".png")
        for r, img in enumerate((load_image(nat) if nat.exists() else None, load_image(path))):
            ax = fig.add_subplot(2, len(pick), r * len(pick) + c + 1)
            if img is not None:
                ax.imshow(np.asarray(img), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel("natural" if r == 0 else "stylized", fontsize=8)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return save_figure(fig, stem, dpi=130)


def plot_accuracy_grid(accuracy: Mapping[str, Mapping[str, float]], stem: str | os.PathLike[str]) -> list[Path]:
    """Table-1-style grid: rows = model (train set), columns = test set, cell = top-1 accuracy."""
    rows = list(accuracy)
    cols = list(next(iter(accuracy.values())))
    a = np.array([[accuracy[r][c] for c in cols] for r in rows])
    fig = Figure(figsize=(1.1 * len(cols) + 2.4, 0.45 * len(rows) + 1.2))
    ax = fig.add_subplot()
    im = ax.imshow(a, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, f"{a[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if a[i, j] > 0.6 else "white")  # fmt: skip
    ax.set_xticks(range(len(cols)), cols, rotation=20, fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel("test set (cue-conflict: shape label)")
    fig.colorbar(im, ax=ax, fraction=0.04, label="top-1 accuracy")
    return save_figure(fig, stem, dpi=130)


def plot_probes(probes: Mapping[str, Any], stem: str | os.PathLike[str]) -> list[Path]:
    """Shape-probe and texture-probe accuracy on natural vs stylized test images, with chance."""
    fig = Figure(figsize=(4.4, 2.6))
    ax = fig.add_subplot()
    names = ["shape_probe", "texture_probe"]
    x = np.arange(2)
    for k, (which, color) in enumerate((("natural", "#4c72b0"), ("stylized", "#dd8452"))):
        vals = [probes[n][which] for n in names]
        ax.bar(x + (k - 0.5) * 0.36, vals, width=0.34, color=color, label=which)
        for xi, v in zip(x, vals, strict=True):
            ax.text(xi + (k - 0.5) * 0.36, v + 0.02, f"{v:.2f}", ha="center", fontsize=7)
    ax.axhline(probes["chance"], color="0.3", linestyle=":", linewidth=1, label="chance")
    ax.set_xticks(x, ["shape probe\n(CNN on randomised)", "texture probe\n(texture classifier)"], fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7, frameon=False, ncol=3, loc="upper center")
    return save_figure(fig, stem, dpi=130)


def most_informative_patches(heat: np.ndarray, q: int, k: int = 3) -> list[tuple[int, int, float]]:
    """The ``k`` patch centres (row, col, evidence) with the highest class evidence, at least q/2 apart."""
    h = heat.copy()
    out = []
    for _ in range(k):
        r, c = np.unravel_index(int(np.nanargmax(h)), h.shape)
        out.append((int(r), int(c), float(heat[r, c])))
        r0, c0 = max(0, r - q // 2), max(0, c - q // 2)
        h[r0 : r + q // 2 + 1, c0 : c + q // 2 + 1] = -np.inf
    return out


def plot_bagnet_heatmaps(
    images: Sequence[Image.Image],
    heat: np.ndarray,
    targets: Sequence[str],
    stem: str | os.PathLike[str],
    *,
    q: int = 11,
) -> list[Path]:
    """Image, class-evidence heatmap (red: for the true class, blue: against) and its top-3 patches.

    The patches are the q x q windows centred on the three highest-evidence pixels (at least q/2 apart): the
    per-image version of the BagNet paper's most informative patches.
    """
    n = len(images)
    fig = Figure(figsize=(1.45 * n, 4.3))
    for i, (img, hm, t) in enumerate(zip(images, heat, targets, strict=True)):
        arr = np.asarray(img)
        ax = fig.add_subplot(3, n, i + 1)
        ax.imshow(arr, interpolation="nearest")
        ax.set_title(t, fontsize=8)
        ax.set_axis_off()
        ax = fig.add_subplot(3, n, n + i + 1)
        # The BagNet paper's convention (RdBu_r, +-99th percentile, grey edges), as `texturebias heatmap` draws it.
        plot_heatmap(ax, hm, arr / 255.0, edge_alpha=0.25)
        ax.set_axis_off()
        patches = most_informative_patches(hm, q)
        strip = np.full((q, 3 * q + 4, 3), 255, dtype=np.uint8)
        padded = np.pad(arr, ((q // 2, q // 2), (q // 2, q // 2), (0, 0)), mode="constant", constant_values=255)
        for j, (r, c, _v) in enumerate(patches):
            strip[:, j * (q + 2) : j * (q + 2) + q] = padded[r : r + q, c : c + q]
        ax = fig.add_subplot(3, n, 2 * n + i + 1)
        ax.imshow(strip, interpolation="nearest")
        ax.set_axis_off()
    fig.text(0.005, 0.82, "image", fontsize=8, rotation=90, va="center")
    fig.text(0.005, 0.5, "evidence", fontsize=8, rotation=90, va="center")
    fig.text(0.005, 0.2, "top patches", fontsize=8, rotation=90, va="center")
    fig.subplots_adjust(wspace=0.08, hspace=0.15, left=0.03)
    return save_figure(fig, stem, dpi=130)


def plot_detection_map(detection: Mapping[str, Any], stem: str | os.PathLike[str]) -> list[Path]:
    """mAP of the detector fine-tuned from each backbone (VOC07 11-point and all-point) with 95% bootstrap CIs."""
    backbones = detection["backbones"]
    names = list(backbones)
    fig = Figure(figsize=(1.0 * len(names) + 2.2, 2.8))
    ax = fig.add_subplot()
    x = np.arange(len(names))
    for k, (metric, label, color) in enumerate((("voc07", "VOC07 11-point", "#4c72b0"),
                                                ("all", "all-point", "#dd8452"))):  # fmt: skip
        vals = np.array([backbones[n][f"map_{metric}"] for n in names])
        ci = np.array([[np.nan if c is None else c for c in backbones[n][f"ci95_{metric}"]] for n in names])
        err = np.abs(np.stack([vals - ci[:, 0], ci[:, 1] - vals]))
        pos = x + (k - 0.5) * 0.36
        ax.bar(pos, vals, width=0.34, color=color, label=label, yerr=err, capsize=2, error_kw={"linewidth": 0.8})
        for xi, v, top in zip(pos, vals, np.nan_to_num(ci[:, 1], nan=0.0), strict=True):
            ax.text(xi, max(v, top) + 0.02, f"{v:.2f}", ha="center", fontsize=6.5)
    ax.set_xticks(x, names, fontsize=8, rotation=10)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mAP (IoU > 0.5)")
    ax.legend(fontsize=7, frameon=False, ncol=2, loc="upper center")
    return save_figure(fig, stem, dpi=130)


def plot_detection_scenes(
    images: Sequence[np.ndarray],
    truth: Sequence[Sequence[tuple[str, Sequence[float]]]],
    detected: Mapping[str, Sequence[Sequence[tuple[str, float, Sequence[float]]]]],
    stem: str | os.PathLike[str],
) -> list[Path]:
    """Test scenes with their ground-truth boxes (top row) and each backbone's detections (one row each).

    Args:
        images: H x W x 3 uint8 scenes.
        truth: Per scene, ``(class, 0-based box)`` of each object.
        detected: Backbone → per scene, ``(class, score, 0-based box)`` of each shown detection.
        stem: Output path without suffix.
    """
    from matplotlib.patches import Rectangle

    rows = {"ground truth": [[(c, 1.0, b) for c, b in t] for t in truth], **detected}
    n = len(images)
    fig = Figure(figsize=(1.25 * n + 0.4, 1.3 * len(rows)))
    for r, (name, per_image) in enumerate(rows.items()):
        for i, (img, boxes) in enumerate(zip(images, per_image, strict=True)):
            ax = fig.add_subplot(len(rows), n, r * n + i + 1)
            ax.imshow(img, interpolation="nearest")
            for cls, score, (x1, y1, x2, y2) in boxes:
                color = "white" if r == 0 else "#ffcc00"
                ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1 + 1, y2 - y1 + 1, fill=False, edgecolor=color,
                                       linewidth=0.8))  # fmt: skip
                label = cls if r == 0 else f"{cls} {score:.2f}"
                ax.text(x1, y1 - 1, label, fontsize=4.5, color=color, va="bottom")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(name, fontsize=6.5)
    fig.subplots_adjust(wspace=0.04, hspace=0.08, left=0.06)
    return save_figure(fig, stem, dpi=150)
