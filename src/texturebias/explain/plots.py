"""Heatmap figures in the paper's convention: RdBu_r, symmetric limits at the 99th percentile of |heat|,
the image's edges in grey (Brendel & Bethge, ICLR 2019, Fig. 2)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from texturebias.report.figures import save_figure

# ----------------------------------------------------------------------------------------------------------------
# Figures (paper convention: RdBu_r, symmetric limits at the 99th percentile of |heat|, image edges in grey)


def heat_limit(heat: np.ndarray | torch.Tensor, percentile: float = 99.0) -> float:
    """Symmetric colour limit: the ``percentile`` of |heat| (never 0, so a flat map still plots)."""
    a = np.abs(np.asarray(heat, dtype=np.float64))
    lim = float(np.percentile(a, percentile)) if a.size else 0.0
    return lim if lim > 0 else 1e-12


def image_edges(image: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Canny edges of an H x W x 3 image in [0, 1] as float with NaN off the edges (for a grey overlay)."""
    from skimage import feature

    grey = image.mean(axis=-1) if image.ndim == 3 else image
    edges = feature.canny(grey, sigma=sigma).astype(np.float64)
    edges[edges < 0.5] = np.nan
    return edges


def plot_heatmap(
    ax: Any,
    heat: np.ndarray | torch.Tensor,
    image: np.ndarray | None = None,
    *,
    percentile: float = 99.0,
    edge_alpha: float = 0.35,
) -> Any:
    """Draw one class-evidence map on a matplotlib axis as in Brendel & Bethge (2019), Fig. 3.

    Args:
        ax: Matplotlib axis.
        heat: H x W map.
        image: The image (H x W x 3 in [0, 1]) whose edges are overlaid in grey; ``None`` for no overlay.
        percentile: Colour limits are +-this percentile of |heat| (99, as in the paper).
        edge_alpha: Opacity of the edge overlay.

    Returns:
        The ``AxesImage`` of the heatmap (for a colorbar).
    """
    import matplotlib

    h = np.asarray(heat, dtype=np.float32)
    lim = heat_limit(h, percentile)
    im = ax.imshow(h, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="none")
    if image is not None and image.shape[:2] == h.shape:
        # Edges are 1 (dark in "Greys"; with alpha they read as grey), everything else NaN = transparent.
        greys = matplotlib.colormaps["Greys"].with_extremes(bad=(0, 0, 0, 0))
        ax.imshow(image_edges(image), cmap=greys, alpha=edge_alpha, interpolation="none", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def heatmap_grid(
    stem: str | os.PathLike[str],
    images: Sequence[np.ndarray],
    heats: Sequence[Sequence[np.ndarray]],
    titles: Sequence[Sequence[str]],
    row_labels: Sequence[str] | None = None,
) -> list[Path]:
    """Grid figure: one row per image (the image, then one heatmap per class), PNG + PDF.

    Args:
        stem: Output path without extension.
        images: H x W x 3 images in [0, 1].
        heats: Per image, its maps (same H x W as the image).
        titles: Per image, one title per map.
        row_labels: Optional label for each row (e.g. the file name).
    """
    cols = 1 + max((len(h) for h in heats), default=0)
    rows = len(images)
    fig = Figure(figsize=(2.4 * cols, 2.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, (img, maps, names) in enumerate(zip(images, heats, titles, strict=True)):
        axes[r, 0].imshow(np.clip(img, 0, 1))
        axes[r, 0].set_xticks([])
        axes[r, 0].set_yticks([])
        if row_labels is not None:
            axes[r, 0].set_title(row_labels[r], fontsize=8)
        for c in range(1, cols):
            ax = axes[r, c]
            if c - 1 < len(maps):
                plot_heatmap(ax, maps[c - 1], img)
                ax.set_title(names[c - 1], fontsize=8)
            else:
                ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, stem, dpi=150)
