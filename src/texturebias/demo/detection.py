"""The miniature detection transfer (issue 16): do shape-biased demo backbones make better detectors?

The Stylized-ImageNet paper's practical claim (Geirhos et al., ICLR 2019, Table 2; REFERENCE §6): a Faster
R-CNN whose ResNet-50 starts from shape-biased weights detects better on Pascal VOC 2007 (mAP50 70.7 with the
ImageNet backbone, 70.6 SIN, 74.0 SIN+IN, 75.1 SIN+IN→IN). The miniature, with the toolkit's own components:

1. scenes of several textured shapes of the generated world (:mod:`texturebias.demo.scenes`), written in the VOC
   devkit layout by :mod:`texturebias.detect.synthetic` (``detection/voc/VOC2007``);
2. one Faster R-CNN per demo backbone (the ``demo_cnn`` checkpoints of the demo's ``runs/``), fine-tuned with
   ``detect-train``'s code (:func:`texturebias.detect.train.train_detector`) under one recipe
   (:class:`~texturebias.demo.config.DetectionSizes`), plus a randomly initialised body as the control;
3. mAP on the test scenes with the devkit's rules (:mod:`texturebias.detect.evaluate`: VOC07 11-point and
   all-point, IoU > 0.5), and 95% bootstrap CIs over test images — for each backbone and for its difference
   to the natural backbone (paired: every backbone is scored on the same resampled image sets).

Everything lands in ``OUT/detection/`` (``detection.json`` is the step's result); finished detectors and their
evaluations are reused when the step runs again, and a folder made with other sizes or seed is refused.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from texturebias.demo import world
from texturebias.demo.config import CNN, DetectionSizes
from texturebias.demo.scenes import write_detection_voc
from texturebias.detect.evaluate import (
    ClassMatches,
    Detection,
    evaluate_detections,
    ground_truth_by_class,
    match_detections,
    read_results,
)
from texturebias.detect.train import DetectTrainConfig, train_detector
from texturebias.detect.voc import load_voc
from texturebias.errors import TextureBiasError
from texturebias.utils.io import finite_or_none, write_json
from texturebias.utils.progress import get_logger
from texturebias.utils.seed import rng_for

log = get_logger("demo")

#: Backbones are compared with this one (the "ImageNet" backbone of the miniature).
REFERENCE_BACKBONE = "cnn-natural"
#: A randomly initialised ``demo_cnn`` body: the control.
SCRATCH = "scratch"
#: Pascal VOC 2007 test mAP50 of the SIN paper's Table 2 (Faster R-CNN, ResNet-50).
PAPER_MAP50 = {"IN": 70.7, "SIN": 70.6, "SIN+IN": 74.0, "SIN+IN→IN": 75.1}
#: What each backbone is the miniature of.
ANALOGUES = {
    "cnn-natural": "IN (texture shortcut available)",
    "cnn-randomised": "the shape-only ideal SIN approximates",
    "cnn-natural+randomised": "SIN+IN (concatenated)",
    "cnn-stylized": "SIN (AdaIN-stylized natural set)",
    SCRATCH: "no pretraining (control)",
}
TEST_SET = "2007-test"
#: Test scenes drawn in the report, and the smallest score of a detection shown on them.
EXAMPLES = 6
EXAMPLE_SCORE = 0.5
TRAIN_SET = "2007-trainval"


# ------------------------------------------------------------------------------------------------ recipe
def detection_train_config(
    voc_root: Path, out: Path, checkpoint: Path | None, seed: int, sizes: DetectionSizes
) -> DetectTrainConfig:
    """The ``detect-train`` settings of one detector of the step (one recipe for every backbone)."""
    return DetectTrainConfig(
        backbone=CNN,
        voc_root=voc_root,
        out=out,
        train_sets=(TRAIN_SET,),
        checkpoint=checkpoint,
        epochs=sizes.epochs,
        batch_size=sizes.batch_size,
        lr=sizes.lr,
        warmup_iters=sizes.warmup_iters,
        lr_steps=(sizes.lr_step,),
        trainable_layers=sizes.trainable_layers,
        min_size=sizes.scene_size,
        max_size=sizes.scene_size,
        anchor_sizes=sizes.anchor_sizes,
        box_batch_size_per_image=sizes.box_batch_size_per_image,
        rpn_batch_size_per_image=sizes.rpn_batch_size_per_image,
        val_sets=(TEST_SET,),
        workers=0,
        device="cpu",
        seed=seed,
        resume=(out / "checkpoint_last.pt").exists(),
    )


def detection_command(cfg: DetectTrainConfig) -> str:
    """The ``texturebias detect-train`` command line equivalent to ``cfg``."""
    start = f"--checkpoint {cfg.checkpoint} " if cfg.checkpoint is not None else ""
    return (
        f"texturebias detect-train --backbone {cfg.backbone} {start}--voc-root {cfg.voc_root} "
        f"--train-sets {','.join(cfg.train_sets)} --val-sets {','.join(cfg.val_sets)} --out {cfg.out} "
        f"--epochs {cfg.epochs} --batch-size {cfg.batch_size} --lr {cfg.lr} --warmup-iters {cfg.warmup_iters} "
        f"--lr-steps {','.join(map(str, cfg.lr_steps))} --trainable-layers {cfg.trainable_layers} "
        f"--min-size {cfg.min_size} --max-size {cfg.max_size} "
        f"--anchor-sizes {','.join(map(str, cfg.anchor_sizes or ()))} "
        f"--box-batch-size {cfg.box_batch_size_per_image} "
        f"--rpn-batch-size {cfg.rpn_batch_size_per_image} --workers 0 --device cpu --seed {cfg.seed}"
    )


# --------------------------------------------------------------------------------------------- bootstrap
@dataclasses.dataclass(frozen=True)
class JudgedClass:
    """One class's judged detections (false positives and true positives only, in evaluation order).

    Attributes:
        image: Test-image index of each judged detection.
        tp: 1.0 for a true positive, 0.0 for a false positive.
        npos_per_image: Non-difficult ground-truth boxes of the class in each test image.
    """

    image: np.ndarray
    tp: np.ndarray
    npos_per_image: np.ndarray


def judge_class(
    ground_truth: Mapping[str, Sequence[Any]], detections: Sequence[Any], image_ids: Sequence[str]
) -> JudgedClass:
    """Match one class once with the toolkit's devkit matching (:func:`~texturebias.detect.evaluate.match_detections`).

    A detection's outcome depends only on its own image, so a bootstrap sample of images reuses it: an image
    drawn k times contributes each of its detections and ground-truth boxes k times.
    """
    position = {image_id: i for i, image_id in enumerate(image_ids)}
    gt = {i: ground_truth.get(i, ()) for i in image_ids}
    m: ClassMatches = match_detections(gt, detections)
    judged = m.outcome >= 0
    image = np.array([position[detections[int(k)].image_id] for k in m.order[judged]], dtype=np.int64)
    npos = np.array([sum(1 for g in gt[i] if not g.difficult) for i in image_ids], dtype=np.float64)
    return JudgedClass(image, (m.outcome[judged] == 1).astype(np.float64), npos)


def weighted_average_precision(judged: JudgedClass, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """VOC07 11-point and all-point AP of one class for each row of image ``weights`` (B x n_images).

    Row b scores the test set in which image i occurs ``weights[b, i]`` times; with all weights 1 this is the
    devkit's AP (:func:`texturebias.detect.evaluate.average_precision`, checked in the tests). Repeating an image
    repeats its detections next to each other in the score order, which leaves the precision envelope at every
    recall step unchanged, so weighting the cumulative counts gives the AP of the expanded set exactly (up to
    ties between the scores of different detections).

    Returns:
        ``(ap_voc07, ap_all)``, each of length B; NaN where the class has no ground truth in the sample.
    """
    from texturebias.detect.evaluate import VOC07_RECALL_THRESHOLDS

    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    npos = weights @ judged.npos_per_image
    missing = npos <= 0
    if len(judged.tp) == 0:  # no detections: AP 0 wherever the class has ground truth
        ap = np.where(missing, np.nan, 0.0)
        return ap, ap.copy()
    w = weights[:, judged.image]  # B x n_judged
    ctp = np.cumsum(w * judged.tp, axis=1)
    cfp = np.cumsum(w * (1.0 - judged.tp), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = ctp / npos[:, None]
    precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    # Precision envelope: the best precision at this or any later (higher-recall) point.
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    step = np.diff(np.concatenate([np.zeros((len(w), 1)), recall], axis=1), axis=1)
    ap_all = np.sum(step * envelope, axis=1)
    ap07 = np.zeros(len(w))
    for t in VOC07_RECALL_THRESHOLDS:
        reached = recall >= t
        first = reached.argmax(axis=1)
        any_reached = reached.any(axis=1)
        ap07 += np.where(any_reached, envelope[np.arange(len(w)), first], 0.0) / 11.0
    ap07[missing] = np.nan
    ap_all[missing] = np.nan
    return ap07, ap_all


def weighted_map(judged: Mapping[str, JudgedClass], weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mAP (VOC07, all-point) per weight row: the mean AP over the classes with ground truth in the sample."""
    per_class = [weighted_average_precision(j, weights) for j in judged.values()]
    ap07 = np.stack([p[0] for p in per_class])
    ap_all = np.stack([p[1] for p in per_class])
    return np.nanmean(ap07, axis=0), np.nanmean(ap_all, axis=0)


def bootstrap_weights(n_images: int, n_boot: int, seed: int) -> np.ndarray:
    """``n_boot`` x ``n_images`` counts: how often each test image occurs in each bootstrap sample."""
    rng = rng_for("texturebias-demo-detection-bootstrap", seed, n_images, n_boot)
    draws = rng.integers(0, n_images, size=(n_boot, n_images))
    counts = np.zeros((n_boot, n_images))
    np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1.0)
    return counts


def _ci(values: np.ndarray) -> list[float | None]:
    lo, hi = np.nanpercentile(values, [2.5, 97.5])
    return [finite_or_none(float(lo)), finite_or_none(float(hi))]


# ------------------------------------------------------------------------------------------------- step
def _check_folder(folder: Path, seed: int, sizes: DetectionSizes) -> None:
    """Refuse to mix runs: an existing detection folder must come from the same seed and sizes."""
    stamp = folder / "detection-config.json"
    want = {"seed": seed, "sizes": json.loads(json.dumps(dataclasses.asdict(sizes)))}
    if stamp.exists():
        have = json.loads(stamp.read_text(encoding="utf-8"))
        if have != want:
            raise TextureBiasError(
                f"{folder} holds a detection run with other settings (seed {have.get('seed')}, sizes "
                f"{have.get('sizes')}); delete it or choose another --out"
            )
    else:
        write_json(stamp, want)


def run_detection_transfer(
    out: Path,
    seed: int,
    sizes: DetectionSizes,
    checkpoints: Mapping[str, Path | None],
    *,
    commands: dict[str, str] | None = None,
    texture_scale: float = 1.0,
    texture_match: float = world.P_MATCH,
) -> dict[str, Any]:
    """Write the scenes, fine-tune one detector per backbone, evaluate with bootstrap CIs (module docstring).

    Args:
        out: The demo's output folder; everything goes to ``out/detection``.
        seed: Seed of the scenes, the detectors' initialisation and sampling, and the bootstrap.
        sizes: Scene counts and the recipe.
        checkpoints: Backbone name → its ``demo_cnn`` checkpoint (``None``: a randomly initialised body).
        commands: When given, the equivalent ``detect-train`` command lines are added to it.
        texture_scale: The world's texture scale (:mod:`texturebias.demo.world`); the demo's out folder is stamped
            with it.
        texture_match: The world's probability that a shape wears its class's texture (likewise).

    Returns:
        The step's result (also written to ``out/detection/detection.json``): per backbone the mAPs (VOC07
        11-point and all-point) with 95% bootstrap CIs, per-class APs, and the difference to the natural
        backbone with a paired bootstrap CI.
    """
    folder = Path(out) / "detection"
    folder.mkdir(parents=True, exist_ok=True)
    _check_folder(folder, seed, sizes)
    threads = torch.get_num_threads()
    torch.set_num_threads(sizes.torch_threads)
    try:
        return _run(folder, seed, sizes, checkpoints, commands, texture_scale, texture_match)
    finally:
        torch.set_num_threads(threads)


def _run(
    folder: Path,
    seed: int,
    sizes: DetectionSizes,
    checkpoints: Mapping[str, Path | None],
    commands: dict[str, str] | None,
    texture_scale: float,
    texture_match: float,
) -> dict[str, Any]:
    t0, c0 = time.perf_counter(), time.process_time()
    voc = write_detection_voc(folder / "voc", seed, splits={"trainval": sizes.n_train, "test": sizes.n_test},
                              size=sizes.scene_size, max_objects=sizes.max_objects,
                              texture_scale=texture_scale, p_match=texture_match)  # fmt: skip
    timings: dict[str, float] = {"scenes": round(time.perf_counter() - t0, 2)}
    test = load_voc(voc, (TEST_SET,))
    image_ids = [img.image_id for img in test.images]
    ground_truth = ground_truth_by_class(img.annotation for img in test.images)
    weights = bootstrap_weights(len(image_ids), sizes.n_boot, seed)

    backbones: dict[str, Any] = {}
    boot: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    kept: dict[str, Mapping[str, Sequence[Detection]]] = {}
    for name, checkpoint in checkpoints.items():
        t = time.perf_counter()
        run = folder / "runs" / name
        cfg = detection_train_config(voc, run, checkpoint, seed, sizes)
        if commands is not None:
            commands[f"detect-train {name}"] = detection_command(cfg)
        if not (run / "detector.pt").is_file() or not (run / "eval" / "detect-eval.json").is_file():
            train_detector(cfg)  # resumes an interrupted run from its checkpoint_last.pt
        # Score the devkit results files the training run wrote: the same files `detect-eval --results` reads.
        detections = read_results(run / "eval" / "results", test.classes, image_set="test")
        kept[name] = detections
        evaluation = evaluate_detections(ground_truth, detections, test.classes, image_ids)
        judged = {c: judge_class(ground_truth.get(c, {}), detections.get(c, []), image_ids) for c in test.classes}
        boot[name] = weighted_map(judged, weights)
        timings[name] = round(time.perf_counter() - t, 2)
        backbones[name] = {
            "checkpoint": None if checkpoint is None else str(checkpoint),
            "analogue": ANALOGUES.get(name, ""),
            "map_voc07": evaluation.map_voc07,
            "map_all": evaluation.map_all,
            "ci95_voc07": _ci(boot[name][0]),
            "ci95_all": _ci(boot[name][1]),
            # AP's precision envelope is a running maximum, so resampled mAPs sit a little above the point estimate.
            "bootstrap_mean_voc07": finite_or_none(float(np.nanmean(boot[name][0]))),
            "classes": {
                c: {"ap_voc07": r.ap_voc07, "ap_all": r.ap_all, "npos": r.npos, "detections": r.detections}
                for c, r in evaluation.classes.items()
            },  # fmt: skip
            "detector": str(run / "detector.pt"),
        }
        log.info("detection %s: VOC07 mAP %.3f %s, all-point %.3f", name, evaluation.map_voc07,
                 backbones[name]["ci95_voc07"], evaluation.map_all)  # fmt: skip

    differences: dict[str, Any] = {}
    if REFERENCE_BACKBONE in backbones:
        ref = backbones[REFERENCE_BACKBONE]
        for name, b in backbones.items():
            if name == REFERENCE_BACKBONE:
                continue
            d07 = boot[name][0] - boot[REFERENCE_BACKBONE][0]
            dall = boot[name][1] - boot[REFERENCE_BACKBONE][1]
            differences[name] = {
                "minus": REFERENCE_BACKBONE,
                "voc07": b["map_voc07"] - ref["map_voc07"],
                "ci95_voc07": _ci(d07),
                "all": b["map_all"] - ref["map_all"],
                "ci95_all": _ci(dall),
            }
    n_objects = sum(len(img.annotation.objects) for img in test.images)
    shown = image_ids[:EXAMPLES]
    examples = {
        name: [
            [
                [c, d.score, [v - 1.0 for v in d.box]]
                for c in test.classes
                for d in dets[c]
                if d.image_id == i and d.score >= EXAMPLE_SCORE
            ]  # fmt: skip
            for i in shown
        ]
        for name, dets in kept.items()
    }
    result: dict[str, Any] = {
        "sizes": dataclasses.asdict(sizes),
        "seed": seed,
        "voc_root": str(voc),
        "classes": list(world.SHAPES),
        "test_images": len(image_ids),
        "test_objects": n_objects,
        "n_boot": sizes.n_boot,
        "reference": REFERENCE_BACKBONE,
        "backbones": backbones,
        "differences": differences,
        "paper_map50": PAPER_MAP50,
        "examples": {"image_ids": shown, "min_score": EXAMPLE_SCORE, "detections": examples},
        "timings_s": {**timings, "total": round(time.perf_counter() - t0, 2)},
        "cpu_time_s": round(time.process_time() - c0, 2),
        "torch_threads": sizes.torch_threads,
    }
    write_json(folder / "detection.json", result)
    return result
