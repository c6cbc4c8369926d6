"""Files in, maps and figures out: what ``texturebias heatmap`` runs (class evidence of every image)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from texturebias.data.images import (
    UnreadableImage,
    describe_unreadable,
    load_image,
    readable_or_failed,
    write_failed_csv,
)
from texturebias.data.labels import class_names
from texturebias.errors import DataError, ImageReadError, TextureBiasError
from texturebias.explain.evidence import DensePlan, HeatPrecision, class_evidence
from texturebias.explain.plots import heatmap_grid, plot_heatmap
from texturebias.models import resolve_model
from texturebias.models.bagnet import is_bagnet
from texturebias.report.figures import save_figure
from texturebias.utils.device import resolve_device, strict_fp32
from texturebias.utils.io import atomic_path, prepare_output_dir, write_csv
from texturebias.utils.progress import progress

# ----------------------------------------------------------------------------------------------------------------
# Files in, maps and figures out (what `texturebias heatmap` runs)


@dataclass(frozen=True)
class HeatmapResult:
    """One saved map."""

    image: Path
    class_index: int
    class_name: str
    image_logit: float
    npy: Path
    figure: Path


def _slug(text: str) -> str:
    keep = "".join(ch if ch.isalnum() else "_" for ch in text.strip().lower())
    return "_".join(p for p in keep.split("_") if p) or "class"


def heatmaps_for_images(
    paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    model: str | nn.Module = "bagnet33",
    checkpoint: str | os.PathLike[str] | None = None,
    targets: Sequence[int] | None = None,
    top_k: int = 1,
    precision: HeatPrecision = "fp32",
    resize: Literal["always", "never", "auto"] = "always",
    device: str = "auto",
    preprocessing_overrides: Mapping[str, Any] | None = None,
    failed: list[UnreadableImage] | None = None,
) -> list[HeatmapResult]:
    """Class-evidence maps of image files: ``<stem>_<class>.npy`` + figures, a grid figure and an index CSV.

    Args:
        paths: Image files.
        out_dir: Output folder (created).
        model: A registered BagNet's name, or a BagNet module (ImageNet preprocessing).
        checkpoint: Local weights instead of the declared pretrained ones.
        targets: Classes to explain (same for every image); ``None``: each image's ``top_k`` predicted classes.
        top_k: Predicted classes per image when ``targets`` is ``None``.
        precision: "fp32" or "bf16" (see :func:`class_evidence`).
        resize: Preprocessing: "always" (Resize 256 + CenterCrop 224, the paper's setting), "never" (the whole
            image at its own size), "auto".
        device: "auto", "cpu", "cuda", ...
        preprocessing_overrides: Fields replacing the model's preprocessing (``mean``, ``std``, ``input_size``,
            ``crop_pct`` or ``resize_size``, ``interpolation``); see :func:`~texturebias.models.resolve_preprocessing`.
        failed: Collects the images that cannot be read; they are skipped and listed in ``failed.csv``.
            ``None``: the first one raises :class:`~texturebias.errors.ImageReadError`.

    Returns:
        One :class:`HeatmapResult` per (image, class), in order. Also writes ``heatmaps.csv``, ``grid.png/pdf``
        and ``failed.csv`` (``input, reason``).
    """
    out = prepare_output_dir(out_dir)
    dev = resolve_device(device)
    model, prep, model_name = resolve_model(model, checkpoint, preprocessing_overrides=preprocessing_overrides)
    model = model.to(dev)
    if not is_bagnet(model):
        raise TextureBiasError(f"{model_name} is not a BagNet; heatmaps need bagnet9/17/33 or another BagNet")
    plan = DensePlan(model, precision)
    transform = prep.eval_transform(resize)
    names = class_names(plan.num_classes)
    if targets is not None and any(not 0 <= t < plan.num_classes for t in targets):
        raise TextureBiasError(f"target class out of range 0..{plan.num_classes - 1}")
    results: list[HeatmapResult] = []
    grid_images, grid_heats, grid_titles, grid_rows = [], [], [], []
    used_stems: dict[str, int] = {}
    load = readable_or_failed(lambda p: transform(load_image(p)))
    unreadable: list[UnreadableImage] = []
    for path in progress([Path(p) for p in paths], desc="heatmaps", unit="img"):
        loaded = load(path)
        if isinstance(loaded, UnreadableImage):
            if failed is None:
                raise ImageReadError(f"{path}: {loaded.reason}")
            unreadable.append(loaded)
            continue
        x = loaded.unsqueeze(0).to(dev)
        with strict_fp32(), torch.inference_mode():
            logits = model(x)[0].float().cpu() if min(x.shape[-2:]) >= plan.receptive_field else None
        if targets is not None:
            classes = list(targets)
        elif logits is not None:
            classes = logits.topk(min(top_k, plan.num_classes)).indices.tolist()
        else:
            raise TextureBiasError(f"{path}: smaller than the receptive field; give --target explicitly")
        with strict_fp32():
            heat = class_evidence(plan, x, [classes]).cpu()[0]
        stem = path.stem
        used_stems[stem] = used_stems.get(stem, 0) + 1
        if used_stems[stem] > 1:  # two files with the same name in different folders
            stem = f"{stem}-{used_stems[stem]}"
        image = prep.denormalize(x[0].cpu()).clamp(0, 1).permute(1, 2, 0).numpy()
        maps, titles = [], []
        for j, cls in enumerate(classes):
            name = f"{stem}_{_slug(names[cls])}"
            npy = out / f"{name}.npy"
            with atomic_path(npy) as tmp, open(tmp, "wb") as fh:
                np.save(fh, heat[j].numpy())
            fig = Figure(figsize=(4.2, 3.6))
            ax = fig.add_subplot()
            im = plot_heatmap(ax, heat[j].numpy(), image)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="logit")
            ax.set_title(f"{path.name}: {names[cls]} ({cls})", fontsize=8)
            fig_paths = save_figure(fig, out / name, dpi=150)
            logit = float(logits[cls]) if logits is not None else float("nan")
            results.append(HeatmapResult(path, cls, names[cls], logit, npy, fig_paths[0]))
            maps.append(heat[j].numpy())
            titles.append(f"{names[cls]} ({cls})")
        grid_images.append(image)
        grid_heats.append(maps)
        grid_titles.append(titles)
        grid_rows.append(path.name)
    write_csv(
        out / "heatmaps.csv",
        (
            {
                "image": str(r.image),
                "class_index": r.class_index,
                "class_name": r.class_name,
                "image_logit": f"{r.image_logit:.6g}",
                "npy": r.npy.name,
                "figure": r.figure.name,
            }
            for r in results
        ),
        ["image", "class_index", "class_name", "image_logit", "npy", "figure"],
    )
    write_failed_csv(out, unreadable)
    if failed is not None:
        failed.extend(unreadable)
    if paths and not results:
        raise DataError(f"none of the {len(paths)} images could be read: {describe_unreadable(unreadable)}")
    if grid_images:
        heatmap_grid(out / "grid", grid_images, grid_heats, grid_titles, grid_rows)
    return results
