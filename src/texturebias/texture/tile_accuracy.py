"""Top-1 accuracy versus tile size: how much of a model's decision survives tile shuffling.

Every image goes through the model's own evaluation transform (resize + centre crop), *then* its T×T tiles are
shuffled with a permutation seeded by (seed, image path, T) — the same permutation for every model, and tiles
aligned with the input grid (for BagNets: with their stride of 8). A tile as large as the input is the unshuffled
baseline. BagNets should stay nearly flat while T is much larger than their patch size q (Brendel & Bethge 2019).

Outputs: rows ``model, tile, images, top1`` (CSV) and a figure of top-1 against tile size, one line per model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import nn

from texturebias.data.images import index_image_folder, load_image
from texturebias.models import Preprocessing, load_model
from texturebias.report.figures import save_figure
from texturebias.texture.scramble import shuffle_tiles
from texturebias.train.validate import label_map_for
from texturebias.utils.device import resolve_device
from texturebias.utils.io import write_csv
from texturebias.utils.progress import progress
from texturebias.utils.seed import stable_hash

TILE_FIELDS: tuple[str, ...] = ("model", "tile", "images", "top1")
DEFAULT_TILES: tuple[int, ...] = (224, 112, 56, 32, 16, 8)


def tile_shuffle_accuracy(
    models: Sequence[str | tuple[str, nn.Module]],
    data_dir: str | os.PathLike[str],
    *,
    tiles: Sequence[int] = DEFAULT_TILES,
    seed: int = 0,
    checkpoints: dict[str, str | os.PathLike[str]] | None = None,
    batch_size: int = 32,
    device: str = "auto",
    limit: int | None = None,
    out_dir: str | os.PathLike[str] | None = None,
) -> list[dict[str, Any]]:
    """Top-1 accuracy of each model on an ImageFolder for each tile size.

    Args:
        models: Registered model names (pretrained weights, or ``checkpoints[name]``), or ``(label, module)`` pairs
            of ready models (ImageNet preprocessing is assumed for those).
        data_dir: ImageFolder whose class folders are ImageNet WordNet ids (or as many classes as model outputs).
        tiles: Tile sides in pixels; a side ≥ the input size means "not shuffled".
        seed: Seed of the permutations.
        checkpoints: Optional local checkpoint per model name.
        batch_size: Images per forward pass.
        device: "auto", "cpu", "cuda", ...
        limit: Only the first ``limit`` images (quick trials).
        out_dir: If given, write ``tile_accuracy.csv`` and ``tile_accuracy.png``/``.pdf`` there.

    Returns:
        One row per (model, tile): ``{"model", "tile", "images", "top1"}``.
    """

    index = index_image_folder(data_dir)
    samples = list(index.samples)[:limit] if limit else list(index.samples)
    dev = resolve_device(device)
    rows: list[dict[str, Any]] = []
    for spec in models:
        if isinstance(spec, str):
            label = spec
            ckpt = (checkpoints or {}).get(spec)
            model, pre = load_model(spec, ckpt)
        else:
            label, model = spec
            pre = Preprocessing()
        model = model.eval().to(dev)
        transform = pre.eval_transform()
        correct = {t: 0 for t in tiles}
        label_map: torch.Tensor | None = None
        for start in progress(range(0, len(samples), batch_size), desc=f"tiles ({label})", unit="batch"):
            chunk = samples[start : start + batch_size]
            x = torch.stack([transform(load_image(p)) for p, _ in chunk])
            targets = torch.tensor([c for _, c in chunk])
            rels = [p.relative_to(index.root).as_posix() for p, _ in chunk]
            for t in tiles:
                if t >= min(x.shape[-2:]):
                    xt = x
                else:
                    xt = torch.stack(
                        [shuffle_tiles(img, t, stable_hash(seed, rel, t)) for img, rel in zip(x, rels, strict=True)]
                    )
                with torch.no_grad():
                    logits = model(xt.to(dev)).float().cpu()
                if label_map is None:
                    label_map = label_map_for(index.classes, logits.shape[1], None)
                # Restrict to the dataset's classes (16-class or subset evaluations), as `texturebias evaluate`.
                pred = logits[:, label_map].argmax(dim=1)
                correct[t] += int((pred == targets).sum())
        rows += [{"model": label, "tile": t, "images": len(samples), "top1": correct[t] / len(samples)} for t in tiles]
    if out_dir is not None:
        out = Path(out_dir)
        write_csv(out / "tile_accuracy.csv", rows, TILE_FIELDS)
        plot_tile_accuracy(rows, out / "tile_accuracy")
    return rows


def plot_tile_accuracy(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> list[Path]:
    """Top-1 against tile size (log axis, large tiles left), one line per model; writes ``path``.png and .pdf."""

    fig = Figure(figsize=(4.5, 3.2))
    ax = fig.add_subplot()
    for model in dict.fromkeys(r["model"] for r in rows):
        pts = sorted((r["tile"], r["top1"]) for r in rows if r["model"] == model)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=model)
    ax.set_xscale("log", base=2)
    ax.invert_xaxis()
    ax.set_xlabel("tile size T (px)")
    ax.set_ylabel("top-1 accuracy")
    ax.set_ylim(0, 1)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=150)
