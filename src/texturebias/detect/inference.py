"""Running a detector: on a VOC image set (results files, ``detect-eval``) and on single images (``detect``).

:func:`evaluate_voc` is the library behind ``texturebias detect-eval``: it evaluates devkit results files
(``--results DIR``) or a trained detector (``--checkpoint PATH``; its detections are first written as devkit
results files under ``OUT/results/`` and evaluated from there, so both routes give the same numbers for the
same detections) and writes ``OUT/detect-eval.json`` (the documented schema), ``OUT/detect-eval.csv`` and
``OUT/pr-curves.png``/``.pdf``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from texturebias.data.loader import worker_init
from texturebias.detect.data import VocDetectionDataset, collate, read_rgb
from texturebias.detect.evaluate import (
    Detection,
    VocEvaluation,
    evaluate_detections,
    ground_truth_by_class,
    read_results,
    write_results,
)
from texturebias.detect.voc import VocSet, load_image_set, load_voc
from texturebias.errors import DataError
from texturebias.utils.device import autocast, resolve_device
from texturebias.utils.distributed import dist_info
from texturebias.utils.io import atomic_path, write_csv, write_json
from texturebias.utils.progress import progress

EVAL_CSV_FIELDS = ("class", "ap_voc07", "ap_all", "npos", "detections")


def load_eval_set(
    voc_root: str | os.PathLike[str],
    image_set: str,
    *,
    classes: Sequence[str] | None = None,
    require_images: bool = True,
    skip_bad: bool = False,
) -> VocSet:
    """The test set of ``detect-eval``: ``--voc-root VOCdevkit/VOC2007 --image-set test`` or
    ``--voc-root VOCdevkit --image-set 2007-test``.
    """
    root = Path(voc_root)
    year, sep, name = image_set.partition("-")
    if sep and year.isdigit() and len(year) == 4:
        return load_voc(root, image_set, classes=classes, skip_bad=skip_bad, require_images=require_images)
    if not (root / "Annotations").is_dir():
        raise DataError(f"{root} is not a VOC year folder (no Annotations/); pass VOCdevkit/VOC2007 or --image-set "
                        "<year>-<set>")  # fmt: skip
    return load_image_set(root, image_set, classes=classes, skip_bad=skip_bad, require_images=require_images)


@torch.no_grad()
def detect_voc_set(
    detector: nn.Module,
    vocset: VocSet,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 4,
    workers: int = 0,
    amp: bool = False,
    desc: str = "detect",
) -> dict[str, list[Detection]]:
    """Detections of every image of ``vocset`` in devkit (1-based) coordinates, per class.

    Under ``torchrun`` every rank detects its share of the images and rank 0 receives all detections (the other
    ranks get the same dict).
    """
    device = torch.device(device)
    info = dist_info()
    sharded = info.distributed and dist.is_available() and dist.is_initialized()
    indices = list(range(len(vocset)))[info.rank :: info.world_size] if sharded else list(range(len(vocset)))
    dataset = VocDetectionDataset([vocset.images[i] for i in indices], vocset.classes)
    loader = torch.utils.data.DataLoader(
        dataset, worker_init_fn=worker_init, batch_size=batch_size, num_workers=workers, collate_fn=collate
    )
    detector.eval()
    rows: list[tuple[str, float, tuple[float, float, float, float], int]] = []
    for images, _targets, idx in progress(loader, desc=desc, unit="batch", leave=False):
        with autocast(device, "fp16" if amp else "fp32"):  # type: ignore[arg-type]
            outputs = detector([im.to(device) for im in images])
        for k, out in zip(idx, outputs, strict=True):
            image_id = dataset.images[k].image_id
            for box, label, score in zip(out["boxes"].float().cpu().tolist(), out["labels"].cpu().tolist(),
                                         out["scores"].float().cpu().tolist(), strict=True):  # fmt: skip
                rows.append((image_id, float(score), tuple(v + 1.0 for v in box), int(label)))  # type: ignore[arg-type]
    if sharded:
        gathered: list[Any] = [None] * info.world_size
        dist.all_gather_object(gathered, rows)
        rows = [r for part in gathered for r in part]
    by_class: dict[str, list[Detection]] = {name: [] for name in vocset.classes}
    for image_id, score, box, label in rows:
        if 1 <= label <= len(vocset.classes):
            by_class[vocset.classes[label - 1]].append(Detection(image_id, score, box))
    return by_class


@dataclass
class EvalOutputs:
    """What :func:`evaluate_voc` wrote."""

    evaluation: VocEvaluation
    json: Path
    csv: Path
    figures: list[Path]
    results_dir: Path | None


def evaluate_voc(
    voc_root: str | os.PathLike[str],
    image_set: str,
    out: str | os.PathLike[str],
    *,
    results: str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    classes: Sequence[str] | None = None,
    device: str = "auto",
    batch_size: int = 4,
    workers: int = 0,
    amp: bool = False,
    skip_bad: bool = False,
    figure: bool = True,
) -> EvalOutputs:
    """Evaluate devkit results files or a trained detector on a VOC image set (module docstring).

    Args:
        voc_root: A year folder (with ``--image-set test``) or ``VOCdevkit`` (with ``2007-test``).
        image_set: Image-set name.
        out: Output folder.
        results: Folder with ``comp4_det_<set>_<class>.txt``.
        checkpoint: A detector from ``detect-train`` (exactly one of ``results`` / ``checkpoint``).
        classes: Class names (default: the year folder's ``classes.txt``, else the 20 VOC classes).
        device: Device for ``checkpoint``.
        batch_size: Images per forward pass.
        workers: Data-loading processes.
        amp: fp16 autocast (CUDA only).
        skip_bad: Leave out images with problems (reported) instead of failing.
        figure: Also draw the precision-recall curves.

    Raises:
        TextureBiasError: bad data, results files or checkpoint (see messages).
    """
    from texturebias.detect.model import load_detector

    if (results is None) == (checkpoint is None):
        raise DataError("pass exactly one of results (a folder of devkit results files) or checkpoint")
    out = Path(out)
    dev = resolve_device(device)
    if amp and dev.type != "cuda":
        raise DataError("--amp needs a CUDA device")
    name = image_set.rpartition("-")[2] if "-" in image_set else image_set
    vocset = load_eval_set(voc_root, image_set, classes=classes, require_images=checkpoint is not None,
                           skip_bad=skip_bad)  # fmt: skip
    results_dir: Path | None = None
    if checkpoint is not None:
        detector, spec = load_detector(checkpoint)
        if spec.classes and tuple(spec.classes) != vocset.classes:
            raise DataError(f"{checkpoint} detects {', '.join(spec.classes)}, but {voc_root} names "
                            f"{', '.join(vocset.classes)}")  # fmt: skip
        detections = detect_voc_set(detector.to(dev), vocset, device=dev, batch_size=batch_size, workers=workers,
                                    amp=amp)  # fmt: skip
        results_dir = out / "results"
        if dist_info().is_main:
            write_results(results_dir, detections, vocset.classes, image_set=name)
        results = results_dir
    assert results is not None
    if not dist_info().is_main:
        return EvalOutputs(VocEvaluation({}, 0.0, 0.0), out / "detect-eval.json", out / "detect-eval.csv", [],
                           results_dir)  # fmt: skip
    dets = read_results(results, vocset.classes, image_set=name)
    evaluation = evaluate_detections(
        ground_truth_by_class(img.annotation for img in vocset.images), dets, vocset.classes,
        [img.image_id for img in vocset.images],
    )  # fmt: skip
    json_path = write_json(out / "detect-eval.json", evaluation.to_json())
    rows: list[dict[str, Any]] = [{"class": n, "ap_voc07": r.ap_voc07, "ap_all": r.ap_all, "npos": r.npos,
                                   "detections": r.detections} for n, r in evaluation.classes.items()]  # fmt: skip
    rows.append({"class": "mAP", "ap_voc07": evaluation.map_voc07, "ap_all": evaluation.map_all,
                 "npos": sum(r.npos for r in evaluation.classes.values()),
                 "detections": sum(r.detections for r in evaluation.classes.values())})  # fmt: skip
    csv_path = write_csv(out / "detect-eval.csv", rows, EVAL_CSV_FIELDS)
    figures = plot_precision_recall(evaluation, out / "pr-curves") if figure else []
    if vocset.bad:
        write_json(out / "bad-files.json", [{"image": i, "problem": m} for i, m in vocset.bad])
    return EvalOutputs(evaluation, json_path, csv_path, figures, results_dir)


def plot_precision_recall(evaluation: VocEvaluation, stem: str | os.PathLike[str]) -> list[Path]:
    """One precision-recall panel per class (all-point curve; both APs in the title); PNG + PDF."""
    import math

    from matplotlib.figure import Figure

    from texturebias.report.figures import save_figure

    names = list(evaluation.classes)
    cols = min(5, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig = Figure(figsize=(2.6 * cols, 2.3 * rows), constrained_layout=True)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names, strict=False):
        r = evaluation.classes[name]
        if len(r.recall):
            ax.step(r.recall, r.precision, where="post", lw=1.2)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{name}\nAP07 {r.ap_voc07:.3f} · AP {r.ap_all:.3f}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("recall", fontsize=7)
        ax.set_ylabel("precision", fontsize=7)
    fig.suptitle(f"VOC07 mAP {evaluation.map_voc07:.4f} · all-point mAP {evaluation.map_all:.4f}", fontsize=10)
    return save_figure(fig, stem)


def detect_images(
    images: Sequence[str | os.PathLike[str]],
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    threshold: float = 0.5,
    device: str = "auto",
) -> list[Path]:
    """Detect objects in image files: ``OUT/<stem>.json`` (boxes) and ``OUT/<stem>.png`` (boxes drawn).

    JSON: ``{"image", "width", "height", "detections": [{"class", "label", "score", "box", "box_voc"}]}`` with
    ``box`` 0-based ``x1 y1 x2 y2`` (torchvision) and ``box_voc`` the devkit's 1-based values; detections with
    score >= ``threshold``, highest first.

    Returns:
        The JSON files written.

    Raises:
        ImageReadError, CheckpointError: unreadable image or checkpoint.
    """
    from texturebias.detect.model import load_detector

    detector, spec = load_detector(checkpoint)
    dev = resolve_device(device)
    detector.to(dev)
    classes = spec.classes or tuple(f"class{i}" for i in range(1, spec.num_classes))
    out = Path(out)
    written = []
    stems: dict[str, int] = {}
    for path in progress(list(images), desc="detect", unit="img"):
        image = read_rgb(path)
        with torch.no_grad():
            result = detector([image.to(dev)])[0]
        keep = result["scores"] >= threshold
        dets = []
        for box, label, score in zip(result["boxes"][keep].cpu().tolist(), result["labels"][keep].cpu().tolist(),
                                     result["scores"][keep].cpu().tolist(), strict=True):  # fmt: skip
            name = classes[label - 1] if 1 <= label <= len(classes) else f"class{label}"
            dets.append({"class": name, "label": int(label), "score": float(score), "box": [float(v) for v in box],
                         "box_voc": [float(v) + 1.0 for v in box]})  # fmt: skip
        stem = Path(path).stem
        stems[stem] = stems.get(stem, 0) + 1
        if stems[stem] > 1:
            stem = f"{stem}-{stems[stem]}"  # two inputs with the same name from different folders
        h, w = image.shape[-2:]
        written.append(write_json(out / f"{stem}.json", {"image": str(path), "width": int(w), "height": int(h),
                                                        "detections": dets}))  # fmt: skip
        draw_detections(image, dets, out / f"{stem}.png")
    return written


_PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
            (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128))  # fmt: skip


def draw_detections(image: torch.Tensor, detections: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Draw 0-based ``box`` rectangles with class and score on an RGB [0, 1] tensor; write a PNG atomically."""
    from PIL import Image, ImageDraw

    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    img = Image.fromarray(pixels)
    draw = ImageDraw.Draw(img)
    for det in detections:
        colour = _PALETTE[(int(det["label"]) - 1) % len(_PALETTE)]
        x1, y1, x2, y2 = det["box"]
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=max(1, round(min(img.size) / 150)))
        draw.text((x1 + 2, y1 + 1), f"{det['class']} {det['score']:.2f}", fill=colour)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)
