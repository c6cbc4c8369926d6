"""Pascal VOC detection evaluation with the devkit's exact semantics (REFERENCE §6), and its results files.

Per class (Everingham et al., IJCV 2010; the devkit's ``VOCevaldet.m`` and its Python port ``voc_eval``):

1. ``npos`` = number of non-difficult ground-truth boxes of the class.
2. Detections sorted by descending score (a *stable* sort, like MATLAB's ``sort``: equal scores keep file
   order).
3. Each detection takes the ground-truth box of its image with maximal IoU, computed with the "+1" pixel
   convention (width = xmax − xmin + 1). IoU > 0.5 (strictly): a difficult box → ignored (neither TP nor FP);
   an unmatched box → TP, marked; an already matched box → FP (duplicate). Otherwise FP.
4. Cumulative TP/FP → recall = TP / npos, precision = TP / max(TP + FP, eps).
5. AP: VOC07 11-point (mean over t of the best precision at recall ≥ t) or all-point (area under the
   monotone precision envelope, VOC2010+).

mAP averages over the classes that have ground truth (``npos > 0``); a class without ground truth gets
AP 0.0 in the per-class table and does not enter the mean.

Coordinates here are the devkit's: 1-based, as in the XML and the results files. The IoU is translation
invariant, so 0-based boxes give the same numbers as long as detections and ground truth agree.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from texturebias.errors import DataError
from texturebias.utils.io import atomic_open

#: The thresholds of the 11-point AP exactly as ``voc_eval`` (and detectron2, mmdetection) build them:
#: ``np.arange(0, 1.1, 0.1)``, whose 4th, 7th and 8th values are 0.30000000000000004, 0.6000000000000001 and
#: 0.7000000000000001 — a recall of exactly 0.3 does *not* reach the 0.3 threshold. Kept on purpose, so
#: our numbers equal those tools' to the last digit.
VOC07_RECALL_THRESHOLDS: np.ndarray = np.arange(0.0, 1.1, 0.1)

_EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class Detection:
    """One detection of one class: image id, score and a devkit (1-based) box ``(xmin, ymin, xmax, ymax)``."""

    image_id: str
    score: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class GroundTruth:
    """A ground-truth box (devkit coordinates) and its difficult flag."""

    box: tuple[float, float, float, float]
    difficult: bool = False


@dataclass
class ClassResult:
    """Evaluation of one class.

    Attributes:
        ap_voc07: VOC07 11-point AP.
        ap_all: All-point AP (VOC2010+).
        npos: Non-difficult ground-truth boxes.
        detections: Detections of the class (all, including ignored ones).
        recall: Cumulative recall after each non-ignored detection (sorted by score).
        precision: Cumulative precision, same length.
    """

    ap_voc07: float
    ap_all: float
    npos: int
    detections: int
    recall: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    precision: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))


@dataclass
class VocEvaluation:
    """Per-class results and the two mAPs (over classes with ground truth)."""

    classes: dict[str, ClassResult]
    map_voc07: float
    map_all: float

    def to_json(self) -> dict[str, object]:
        """The documented ``detect-eval.json`` object (exactly these keys)."""
        return {
            "classes": {
                name: {"ap_voc07": r.ap_voc07, "ap_all": r.ap_all, "npos": r.npos, "detections": r.detections}
                for name, r in self.classes.items()
            },
            "map_voc07": self.map_voc07,
            "map_all": self.map_all,
        }


def box_iou_plus1(box: Sequence[float], gt: np.ndarray) -> np.ndarray:
    """IoU of one box with each row of ``gt`` (N×4) using the devkit's "+1" pixel convention."""
    ixmin = np.maximum(gt[:, 0], box[0])
    iymin = np.maximum(gt[:, 1], box[1])
    ixmax = np.minimum(gt[:, 2], box[2])
    iymax = np.minimum(gt[:, 3], box[3])
    iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
    ih = np.maximum(iymax - iymin + 1.0, 0.0)
    inter = iw * ih
    union = (
        (box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
        + (gt[:, 2] - gt[:, 0] + 1.0) * (gt[:, 3] - gt[:, 1] + 1.0)
        - inter
    )
    return inter / union


def average_precision(recall: np.ndarray, precision: np.ndarray, *, voc07: bool) -> float:
    """AP from cumulative recall/precision, as ``voc_ap`` of the devkit's Python port.

    Args:
        recall: Cumulative recall (non-decreasing).
        precision: Cumulative precision.
        voc07: 11-point interpolation (VOC2007) instead of the area under the precision envelope.
    """
    rec = np.asarray(recall, dtype=np.float64)
    prec = np.asarray(precision, dtype=np.float64)
    if voc07:
        ap = 0.0
        for t in VOC07_RECALL_THRESHOLDS:
            reached = rec >= t
            p = float(np.max(prec[reached])) if reached.any() else 0.0
            ap += p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


@dataclass(frozen=True)
class ClassMatches:
    """How each detection of one class was judged (steps 1-3 of the module docstring).

    Attributes:
        order: Indices into the detections, in evaluation order (descending score, stable).
        outcome: Per detection in that order: 1 true positive, 0 false positive, -1 ignored (matched a
            difficult box).
        npos: Non-difficult ground-truth boxes.
    """

    order: np.ndarray
    outcome: np.ndarray
    npos: int


def match_detections(
    ground_truth: Mapping[str, Sequence[GroundTruth]],
    detections: Sequence[Detection],
    *,
    iou_threshold: float = 0.5,
) -> ClassMatches:
    """Judge the detections of one class against its ground truth (REFERENCE §6, steps 1-3).

    A detection's outcome depends only on the detections of its own image (the greedy matching never crosses
    images), which is what lets a bootstrap over images reuse one matching.

    Args:
        ground_truth: Every image of the test set → its boxes of this class (an image without any may be
            absent or map to an empty list).
        detections: The class's detections, in any order.
        iou_threshold: Overlap needed for a match; strictly greater, as in the devkit.
    """
    gt_boxes = {k: np.array([g.box for g in v], dtype=np.float64).reshape(-1, 4) for k, v in ground_truth.items()}
    gt_difficult = {k: np.array([g.difficult for g in v], dtype=bool) for k, v in ground_truth.items()}
    matched = {k: np.zeros(len(v), dtype=bool) for k, v in ground_truth.items()}
    npos = int(sum(int((~d).sum()) for d in gt_difficult.values()))
    scores = np.array([d.score for d in detections], dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    outcome = np.zeros(len(order), dtype=np.int8)
    for k, idx in enumerate(order):
        det = detections[int(idx)]
        boxes = gt_boxes.get(det.image_id)
        ovmax, jmax = -math.inf, -1
        if boxes is not None and len(boxes):
            ious = box_iou_plus1(det.box, boxes)
            jmax = int(np.argmax(ious))
            ovmax = float(ious[jmax])
        if ovmax > iou_threshold:
            if gt_difficult[det.image_id][jmax]:
                outcome[k] = -1  # matched a difficult box: neither TP nor FP
            elif not matched[det.image_id][jmax]:
                matched[det.image_id][jmax] = True
                outcome[k] = 1
            # else: a duplicate detection of a matched box, a false positive (outcome 0)
    return ClassMatches(order, outcome, npos)


def evaluate_class(
    ground_truth: Mapping[str, Sequence[GroundTruth]],
    detections: Sequence[Detection],
    *,
    iou_threshold: float = 0.5,
) -> ClassResult:
    """Evaluate the detections of one class against its ground truth (REFERENCE §6, steps 1-5).

    Args:
        ground_truth: Every image of the test set → its boxes of this class (an image without any may be
            absent or map to an empty list).
        detections: The class's detections, in any order.
        iou_threshold: Overlap needed for a match; strictly greater, as in the devkit.

    Raises:
        DataError: a detection on an image that is not in ``ground_truth``'s image set is only possible when
            the caller passes that check itself (see :func:`evaluate_detections`).
    """
    m = match_detections(ground_truth, detections, iou_threshold=iou_threshold)
    judged = m.outcome[m.outcome >= 0]
    ctp = np.cumsum((judged == 1).astype(np.float64))
    cfp = np.cumsum((judged == 0).astype(np.float64))
    precision = ctp / np.maximum(ctp + cfp, _EPS)
    npos = m.npos
    if npos == 0:
        return ClassResult(0.0, 0.0, 0, len(detections), np.zeros_like(ctp), precision)
    recall = ctp / float(npos)
    return ClassResult(
        ap_voc07=average_precision(recall, precision, voc07=True),
        ap_all=average_precision(recall, precision, voc07=False),
        npos=npos,
        detections=len(detections),
        recall=recall,
        precision=precision,
    )


def evaluate_detections(
    ground_truth: Mapping[str, Mapping[str, Sequence[GroundTruth]]],
    detections: Mapping[str, Sequence[Detection]],
    classes: Sequence[str],
    image_ids: Iterable[str],
) -> VocEvaluation:
    """Evaluate every class and average AP over the classes with ground truth.

    Args:
        ground_truth: class → image id → ground-truth boxes of that class.
        detections: class → detections (a class may be missing: no detections).
        classes: Class names, in the order of the output.
        image_ids: The test set's image ids.

    Raises:
        DataError: a detection names an image that is not in the test set (the devkit refuses it too).
    """
    ids = set(image_ids)
    results: dict[str, ClassResult] = {}
    for name in classes:
        dets = list(detections.get(name, ()))
        unknown = next((d.image_id for d in dets if d.image_id not in ids), None)
        if unknown is not None:
            raise DataError(f"detection of class {name!r} on image {unknown!r}, which is not in the test set")
        gt = {i: ground_truth.get(name, {}).get(i, ()) for i in ids}
        results[name] = evaluate_class(gt, dets)
    with_gt = [r for r in results.values() if r.npos > 0]
    map07 = float(np.mean([r.ap_voc07 for r in with_gt])) if with_gt else 0.0
    map_all = float(np.mean([r.ap_all for r in with_gt])) if with_gt else 0.0
    return VocEvaluation(results, map07, map_all)


def ground_truth_by_class(annotations: Iterable[object]) -> dict[str, dict[str, list[GroundTruth]]]:
    """class → image id → devkit boxes, from :class:`~texturebias.detect.voc.VocAnnotation` objects.

    The annotations' 0-based boxes are shifted back to the devkit's 1-based coordinates.
    """
    out: dict[str, dict[str, list[GroundTruth]]] = {}
    for ann in annotations:
        for obj in ann.objects:  # type: ignore[attr-defined]
            box = tuple(v + 1.0 for v in obj.box)
            out.setdefault(obj.name, {}).setdefault(ann.image_id, []).append(GroundTruth(box, obj.difficult))  # type: ignore[attr-defined,arg-type]
    return out


# ------------------------------------------------------------------------------------------- results files


def results_filename(name: str, image_set: str = "test", competition: str = "comp4") -> str:
    """The devkit's results file name: ``comp4_det_<image set>_<class>.txt``."""
    return f"{competition}_det_{image_set}_{name}.txt"


def format_detection(det: Detection) -> str:
    """One results-file line: ``<image id> <score> <xmin> <ymin> <xmax> <ymax>`` (devkit coordinates).

    Scores keep 6 decimals and boxes 2; :func:`read_results` of what this writes gives back exactly the values
    an evaluation of the written files uses.
    """
    x1, y1, x2, y2 = det.box
    return f"{det.image_id} {det.score:.6f} {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f}"


def write_results(
    folder: str | os.PathLike[str],
    detections: Mapping[str, Sequence[Detection]],
    classes: Sequence[str],
    *,
    image_set: str = "test",
) -> list[Path]:
    """Write one devkit results file per class (atomically; a class without detections gets an empty file)."""
    paths = []
    for name in classes:
        path = Path(folder) / results_filename(name, image_set)
        with atomic_open(path, "w", encoding="utf-8") as fh:
            for det in detections.get(name, ()):
                fh.write(format_detection(det) + "\n")
        paths.append(path)
    return paths


def read_results_file(path: str | os.PathLike[str]) -> list[Detection]:
    """Parse one devkit results file.

    Raises:
        DataError: a malformed line (named by file and line number).
    """
    out = []
    p = Path(path)
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 6:
            raise DataError(f"{p}:{n}: expected '<image id> <score> <xmin> <ymin> <xmax> <ymax>', got {line!r}")
        try:
            score, x1, y1, x2, y2 = (float(v) for v in parts[1:])
        except ValueError:
            raise DataError(f"{p}:{n}: score and box must be numbers, got {line!r}") from None
        if not all(math.isfinite(v) for v in (score, x1, y1, x2, y2)):
            raise DataError(f"{p}:{n}: non-finite value in {line!r}")
        out.append(Detection(parts[0], score, (x1, y1, x2, y2)))
    return out


def read_results(
    folder: str | os.PathLike[str], classes: Sequence[str], *, image_set: str = "test"
) -> dict[str, list[Detection]]:
    """Read ``comp4_det_<image set>_<class>.txt`` for every class (also accepts ``comp4_det_test_*``).

    A missing file means no detections of that class.

    Raises:
        DataError: the folder is missing or holds no results file for any class.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"results folder not found: {root}")
    out: dict[str, list[Detection]] = {}
    for name in classes:
        for candidate in (results_filename(name, image_set), results_filename(name, "test")):
            if (root / candidate).is_file():
                out[name] = read_results_file(root / candidate)
                break
    if not out:
        raise DataError(
            f"no results files in {root} (expected {results_filename(classes[0], image_set)} ... one per class)"
        )
    return out
