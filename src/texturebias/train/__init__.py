"""Training recipes: IN, SIN, SIN+IN and fine-tuning, in one process or under ``torchrun``.

Python API::

    from texturebias.train import TrainConfig, train

    result = train(TrainConfig(
        model="resnet50",                   # any registered model (create_model)
        data=["/data/sin/train", "/data/imagenet/train"],   # several roots = concatenated, one label space
        val="/data/imagenet/val",           # optional; same class folder names
        out="runs/sin-in",                  # config.json, metrics.csv, checkpoint_last.pt, checkpoint_best.pt
        recipe="sin-in45",                  # in90 | sin60 | sin-in45 | finetune60 (REFERENCE §4), or None
        batch_size=256,                     # GLOBAL batch; lr defaults to recipe lr x batch/256
    ))
    result.best_top1, result.metrics[-1]["val_top1"], result.model   # trained nn.Module, eval mode

Small models on small images (e.g. a 32x32 demo CNN) train the same way: the crop size comes from the
model's registered :class:`~texturebias.models.preprocessing.Preprocessing` (or ``input_size=32``), and
``augment="flip"`` (resize/centre-crop + flip) or ``"none"`` replaces RandomResizedCrop, which would
destroy shapes in tiny images. Every field of :class:`TrainConfig` left ``None`` is filled from the
recipe; anything given explicitly wins. ``pretrained=True`` / ``init=PATH`` start from weights (the
classifier is replaced when the class count differs); ``num_classes`` always comes from the data.

Outputs in ``out`` (written by rank 0 only, each file atomically):

- ``config.json`` — the resolved :class:`TrainConfig` plus a ``run`` block (world size, classes, preprocessing).
- ``metrics.csv`` — one row per epoch: epoch, lr, train_loss, train_top1, val_loss, val_top1, val_top5,
  images_per_s, epoch_time_s, wall_time_s (accuracies in [0, 1]).
- ``checkpoint_last.pt`` — ``{"format": "texturebias-train-v1", "model": state_dict (no DDP prefix),
  "optimizer", "scheduler", "scaler", "epoch", "rng", "config", "classes", "preprocessing", ...}``;
  ``resume=True`` continues from it exactly (bitwise on CPU with a fixed seed).
- ``checkpoint_best.pt`` — the same minus the optimiser state, at the best validation top-1.

Both checkpoints load with ``create_model(name, checkpoint=PATH)`` (class count inferred from the head),
so a trained model goes straight into ``texturebias shape-bias --checkpoint``, ``heatmap``, ``evaluate``.

Distributed: launch the same command with ``torchrun --nproc_per_node=N``; DDP uses NCCL on GPU and
gloo on CPU, the global batch is split evenly, metrics are summed over ranks, and the per-sample
augmentation is seeded by (seed, epoch, index), so N processes reproduce the 1-process run when the
model has no batch-statistics layers (BatchNorm statistics are per process, as in the reference script).
"""

import importlib
from typing import Any

# Resolved on first use, so that `texturebias train --help` can read RECIPES without importing torch.
_HOMES = {
    "ImageDataset": "data", "LabeledImages": "data", "index_training_folders": "data", "train_transform": "data",
    "StepDecay": "loop", "Trainer": "loop", "TrainResult": "loop", "build_model": "builders",
    "replace_classifier": "builders", "train": "loop",
    "RECIPES": "recipes", "Recipe": "recipes", "TrainConfig": "recipes", "get_recipe": "recipes",
    "resolve_config": "recipes",
}  # fmt: skip

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"texturebias.train.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'texturebias.train' has no attribute {name!r}")
