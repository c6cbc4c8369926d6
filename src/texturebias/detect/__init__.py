"""DETECT: detection transfer — Faster R-CNN on Pascal VOC from any texturebias backbone (REFERENCE §6).

The SIN paper's Table 2 as one workflow: :mod:`~texturebias.detect.voc` reads and writes the devkit layout
(1-based boxes, difficult flags, declared archives), :mod:`~texturebias.detect.model` builds torchvision's
Faster R-CNN with a ResNet-FPN (or feature-map) body transferred strictly from a registry classifier,
:mod:`~texturebias.detect.train` fine-tunes it (the VOC recipe, DDP, exact resume),
:mod:`~texturebias.detect.evaluate` is the devkit's evaluation (VOC07 11-point and all-point AP) and results
format, :mod:`~texturebias.detect.inference` runs detectors on image sets and files, and
:mod:`~texturebias.detect.synthetic` writes a generated VOC-layout world for offline experiments.

May import: ``errors``, ``utils``, ``models``, ``train`` (exact-resume helpers), ``report`` (figures, inside
the plotting function). Importing this package does no work; submodules are imported on use.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Detection",
    "DetectTrainConfig",
    "VOC_CLASSES",
    "detection_model",
    "evaluate_detections",
    "evaluate_voc",
    "load_detector",
    "load_voc",
    "train_detector",
    "write_synthetic_voc",
]

_WHERE = {
    "Detection": "evaluate",
    "evaluate_detections": "evaluate",
    "DetectTrainConfig": "train",
    "train_detector": "train",
    "VOC_CLASSES": "voc",
    "load_voc": "voc",
    "detection_model": "model",
    "load_detector": "model",
    "evaluate_voc": "inference",
    "write_synthetic_voc": "synthetic",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"texturebias.detect.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'texturebias.detect' has no attribute {name!r}")
