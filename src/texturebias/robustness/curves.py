"""Robustness of a model to the parametric distortions, compared with humans (Geirhos et al. 2018/2019/2021).

:func:`robustness_trials` distorts every image of a clean dataset at every level on the fly (seeded per image
and level) and classifies it:

- a folder of the **16 categories** (``<category>/<file>``) gives 16-class decisions written as trials in the
  human schema (``subj, session, trial, rt, object_response, category, condition, imagename``), so the human
  raw data and the model results go through the same analysis;
- an **ImageNet** folder (``<wnid>/<file>``, classes matched by WordNet id) gives 1000-class top-1/top-5 per
  level (columns ``subj, condition, imagename, category, prediction, top1, top5``).

Pre-distorted folders (``texturebias distort`` output or a model-vs-human release tarball) are evaluated by
:func:`texturebias.robustness.benchmark.evaluate_dataset` instead. :func:`run_robustness` writes CSVs and the
accuracy-vs-level curves with the human accuracies of every condition (PNG and PDF).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from texturebias.data.images import (
    UnreadableImage,
    describe_unreadable,
    find_images,
    image_to_array,
    load_image,
    readable_or_failed,
    write_failed_csv,
)
from texturebias.data.labels import CATEGORIES, class_index, imagenet_wnids
from texturebias.data.loader import prefetch_batches
from texturebias.errors import DataError
from texturebias.evaluate.cue_conflict import safe_name
from texturebias.evaluate.mapping import Aggregation, logits_to_decisions, resolve_mapping
from texturebias.evaluate.trials import TRIAL_COLUMNS, model_imagename, write_trials
from texturebias.models import Preprocessing, load_model
from texturebias.robustness.benchmark import accuracy_by_condition, human_trials_for
from texturebias.robustness.distortions import get_distortion
from texturebias.robustness.figures import plot_accuracy_curves
from texturebias.robustness.manipulations import to_uint8
from texturebias.utils.device import autocast, inference_forward, resolve_device
from texturebias.utils.io import atomic_open, prepare_output_dir
from texturebias.utils.progress import get_logger, progress
from texturebias.utils.seed import rng_for


def _folder_kind(root: Path) -> str:

    folders = [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not folders:
        raise DataError(f"{root}: no class sub-folders")
    if all(f.lower() in CATEGORIES for f in folders):
        return "16"
    wnids = set(imagenet_wnids())
    if all(f in wnids for f in folders):
        return "imagenet"
    bad = [f for f in folders if f.lower() not in CATEGORIES and f not in wnids]
    raise DataError(
        f"{root}: class folders must be the 16 categories or ImageNet WordNet ids; unknown: {', '.join(bad[:5])}"
    )


def _prepare_224(img: object, size: int = 224) -> np.ndarray:
    """PIL image → float [0, 1] array at size×size (Resize(256) + CenterCrop(224) unless already 224²)."""
    from PIL import Image

    assert isinstance(img, Image.Image)
    if img.size != (size, size):
        import torchvision.transforms as T

        img = T.CenterCrop(size)(T.Resize(round(size * 256 / 224), interpolation=T.InterpolationMode.BILINEAR)(img))
    return image_to_array(img)


def robustness_trials(
    model_name: str,
    data_dir: str | os.PathLike[str],
    distortion: str,
    *,
    levels: Sequence[str] | None = None,
    seed: int = 0,
    phase_mode: str = "faithful",
    checkpoint: str | os.PathLike[str] | None = None,
    mapping: str | None = None,
    aggregation: Aggregation = "mean",
    batch_size: int = 32,
    device: str = "auto",
    precision: str = "fp32",
    max_images: int | None = None,
    subject: str | None = None,
    model: object | None = None,
    preprocessing_overrides: Mapping[str, Any] | None = None,
    failed: list[UnreadableImage] | None = None,
) -> pd.DataFrame:
    """Classify every image of ``data_dir`` under ``distortion`` at every level.

    Each image is brought to 224×224 (Resize(256) + CenterCrop(224) unless it already is), distorted with a
    generator seeded by (seed, relative path, distortion, level), truncated to uint8 as the original, and fed
    without further resizing with the model's normalisation.

    Args:
        model_name: Registry name.
        data_dir: ``<category>/<file>`` (16 categories) or ``<wnid>/<file>`` (ImageNet) folder.
        distortion: Distortion name (:func:`~texturebias.robustness.distortions.get_distortion`).
        levels: Conditions (any spelling :meth:`Distortion.normalise_condition` accepts); default all.
        seed: Job seed.
        phase_mode: "faithful" or "corrected" (phase scrambling only).
        checkpoint, mapping, aggregation, batch_size, device, precision: As in
            :func:`~texturebias.robustness.benchmark.evaluate_dataset`.
        max_images: Use only the first N images (sorted), e.g. for a quick look.
        subject: ``subj`` value (default: the model name).
        model: An already built model (tests).
        preprocessing_overrides: Fields replacing the model's preprocessing (``mean``, ``std``, ``input_size``,
            ``crop_pct`` or ``resize_size``, ``interpolation``); see :func:`~texturebias.models.resolve_preprocessing`.
        failed: Collects the images that cannot be read (once each), which are then left out of the results;
            ``None``: the first one raises :class:`~texturebias.errors.ImageReadError`.

    Returns:
        16-category folders: trials in the human schema. ImageNet folders: ``subj, condition, imagename,
        category, prediction, top1, top5``.
    """
    import torch
    from PIL import Image

    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    kind = _folder_kind(root)
    dist = get_distortion(distortion, phase_mode=phase_mode)  # type: ignore[arg-type]
    conditions = [dist.normalise_condition(c) for c in levels] if levels else list(dist.conditions)
    paths = find_images(root)
    if max_images is not None:
        paths = paths[:max_images]
    if not paths:
        raise DataError(f"{root}: no images found")
    dev = resolve_device(device)
    if model is None:
        model, preprocessing = load_model(model_name, checkpoint, preprocessing_overrides=preprocessing_overrides)
        transform = preprocessing.eval_transform("auto")
    else:
        transform = Preprocessing().with_overrides(preprocessing_overrides).eval_transform("auto")
    net = model.to(dev).eval()  # type: ignore[attr-defined]
    jobs = [(p, c) for c in conditions for p in paths]
    rows: list[dict[str, object]] = []
    resolved = None

    def prepare(job: tuple[Path, str]) -> torch.Tensor:
        # Each image draws from its own seeded generator, so loading in threads changes nothing.
        path, cond = job
        rel = path.relative_to(root).as_posix()
        img = _prepare_224(load_image(path))
        out = to_uint8(dist.apply(img, cond, rng_for(seed, rel, dist.name, cond)))
        pil = Image.fromarray(out, mode="L" if out.ndim == 2 else "RGB").convert("RGB")
        return transform(pil)

    load = prepare if failed is None else readable_or_failed(prepare, lambda job: job[0])
    batches = prefetch_batches(jobs, load, batch_size=batch_size)
    total = math.ceil(len(jobs) / batch_size)
    unreadable: dict[Path, UnreadableImage] = {}
    with torch.inference_mode():
        for start, loaded in zip(range(0, len(jobs), batch_size),
                                 progress(batches, total=total, desc=f"{model_name} {dist.name}", unit="batch"),
                                 strict=True):  # fmt: skip
            chunk, batch = [], []
            for job, x in zip(jobs[start : start + batch_size], loaded, strict=True):
                if isinstance(x, UnreadableImage):
                    unreadable.setdefault(x.path, x)  # the same file fails at every level: record it once
                else:
                    chunk.append(job)
                    batch.append(x)
            if not batch:
                continue
            with autocast(dev, precision):  # type: ignore[arg-type]
                logits = inference_forward(net, torch.stack(batch).to(dev)).float()
            if kind == "16":
                if resolved is None:
                    resolved = resolve_mapping(mapping, int(logits.shape[-1]))
                decisions, _ = logits_to_decisions(logits, resolved, aggregation)
                for (path, cond), decision in zip(chunk, decisions, strict=True):
                    cat = path.parent.name.lower()
                    n = len(rows) + 1
                    rows.append({"subj": subject or model_name, "session": 1, "trial": n, "rt": math.nan,
                                 "object_response": decision, "category": cat, "condition": cond.lower(),
                                 "imagename": model_imagename(n, dist.code, cond, cat, path.name)})  # fmt: skip
            else:
                top5 = logits.topk(min(5, logits.shape[-1]), dim=-1).indices.cpu().numpy()
                for (path, cond), pred in zip(chunk, top5, strict=True):
                    target = class_index(path.parent.name)
                    rows.append({"subj": subject or model_name, "condition": cond, "imagename": path.name,
                                 "category": path.parent.name, "prediction": int(pred[0]),
                                 "top1": int(pred[0] == target), "top5": int(target in pred)})  # fmt: skip
    if failed is not None:
        failed.extend(unreadable.values())
    if not rows:
        raise DataError(
            f"{root}: none of the {len(paths)} images could be read: {describe_unreadable(list(unreadable.values()))}"
        )
    if kind == "16":
        return pd.DataFrame(rows, columns=list(TRIAL_COLUMNS))
    return pd.DataFrame(rows)


def imagenet_accuracy_by_condition(results: pd.DataFrame) -> pd.DataFrame:
    """Top-1/top-5 per (subj, condition) of :func:`robustness_trials` output for ImageNet folders."""
    g = results.groupby(["subj", "condition"], sort=False)
    return g.agg(n=("top1", "size"), top1=("top1", "mean"), top5=("top5", "mean")).reset_index()


@dataclass
class RobustnessResult:
    """Outcome of :func:`run_robustness`: the accuracy table (model and humans), the files written, and the
    images that could not be read (left out, listed in ``failed.csv``)."""

    accuracy: pd.DataFrame
    files: list[Path]
    failed: list[UnreadableImage]


def run_robustness(
    models: Sequence[str],
    data_dir: str | os.PathLike[str],
    distortions: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    human_data: str | os.PathLike[str] | None = None,
    with_humans: bool = True,
    **kwargs: object,
) -> RobustnessResult:
    """Robustness curves of models for several distortions, with the human accuracies per condition.

    Writes ``<out>/<distortion>/<distortion>_<model>_session_1.csv`` (trials; ImageNet folders:
    ``..._imagenet.csv``), ``<out>/robustness_accuracy.csv``, ``<out>/<distortion>_accuracy.png/.pdf`` and
    ``<out>/failed.csv`` (the images that could not be read, ``input, reason``; they are left out, the rest go on).
    Human accuracies come from the model-vs-human raw data (``human_data`` or the ``mvh-humans/<name>``
    registry entry) for the distortions that are part of model-vs-human.

    Args:
        models: Registry names.
        data_dir: Clean dataset folder (see :func:`robustness_trials`).
        distortions: Distortion names.
        out_dir: Output folder.
        human_data: MVH ``raw-data`` folder.
        with_humans: Add the human curves (skipped with a note when the data is unavailable).
        **kwargs: Passed to :func:`robustness_trials` (levels, seed, device, checkpoint, ...).

    Raises:
        DataError: a ``checkpoint`` with several models (it would be loaded into every one of them).
    """

    if kwargs.get("checkpoint") is not None and len(models) != 1:
        raise DataError("--checkpoint needs exactly one model")

    out = prepare_output_dir(out_dir)
    tables, files = [], []
    unreadable: dict[Path, UnreadableImage] = {}
    for name in distortions:
        dist = get_distortion(name)
        per_dist = []
        for model_name in models:
            failed: list[UnreadableImage] = []
            res = robustness_trials(model_name, data_dir, dist.name, failed=failed, **kwargs)  # type: ignore[arg-type]
            unreadable.update((f.path, f) for f in failed)
            stem = f"{dist.name}_{safe_name(model_name).replace('_', '-')}_session_1"  # file-safe: timm/..., file.py:f
            if "object_response" in res.columns:
                path = write_trials(out / dist.name / f"{stem}.csv", res)
                table = accuracy_by_condition(res, dist.conditions)
            else:
                path = out / dist.name / f"{stem}_imagenet.csv"
                with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
                    res.to_csv(fh, index=False, lineterminator="\n")
                table = imagenet_accuracy_by_condition(res).rename(columns={"top1": "accuracy"})
            files.append(path)
            per_dist.append(table.assign(distortion=dist.name))
        if with_humans and dist.in_mvh:
            try:
                humans = human_trials_for(dist.name, human_data).assign(subj="humans")
                per_dist.append(accuracy_by_condition(humans, dist.conditions).assign(distortion=dist.name))
            except DataError as exc:
                get_logger(__name__).warning("no human curve for %s: %s", dist.name, exc)
        table = pd.concat(per_dist, ignore_index=True)
        tables.append(table)
        files += plot_accuracy_curves(table, dist.name, out / f"{dist.name}_accuracy")
    accuracy = pd.concat(tables, ignore_index=True)
    cols = ["distortion"] + [c for c in accuracy.columns if c != "distortion"]
    accuracy = accuracy[cols]
    with atomic_open(out / "robustness_accuracy.csv", "w", encoding="utf-8", newline="") as fh:
        accuracy.to_csv(fh, index=False, float_format="%.6g", lineterminator="\n")
    files.append(out / "robustness_accuracy.csv")
    failed_list = sorted(unreadable.values())
    files.append(write_failed_csv(out, failed_list, root=data_dir))
    return RobustnessResult(accuracy, files, failed_list)
