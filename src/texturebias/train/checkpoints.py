"""A training run's records: checkpoints (what resume needs), metrics.csv, config.json, and the resume check."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch

from texturebias.errors import CheckpointError, first_line
from texturebias.models import Preprocessing
from texturebias.train.data import (
    LabeledImages,
)
from texturebias.train.recipes import TrainConfig
from texturebias.utils.distributed import DistInfo
from texturebias.utils.io import write_json

CHECKPOINT_FORMAT = "texturebias-train-v1"


METRICS_FIELDS = (
    "epoch", "lr", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5",
    "images_per_s", "epoch_time_s", "wall_time_s",
)  # fmt: skip


def read_metrics(path: Path, upto_epoch: int, *, int_fields: tuple[str, ...] = ("epoch",)) -> list[dict[str, Any]]:
    """Rows of ``metrics.csv`` up to ``upto_epoch`` (a resumed run drops the rows past its checkpoint)."""
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [
        {k: int(v) if k in int_fields else float(v) if v else "" for k, v in row.items()}
        for row in rows
        if int(row["epoch"]) <= upto_epoch
    ]


_RESUME_MUST_MATCH = ("model", "data", "batch_size", "seed", "augment", "input_size", "resize_size", "model_kwargs")


def check_resume_config(saved: dict[str, Any], current: TrainConfig) -> None:
    """Refuse ``--resume`` with settings that would change what the finished epochs meant (model, data, batch ...)."""
    now = current.to_json()
    diffs = [f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in _RESUME_MUST_MATCH if saved.get(k) != now[k]]
    if diffs:
        raise CheckpointError("cannot resume with a different setup (" + "; ".join(diffs) + ")")


def format_row(row: dict[str, Any]) -> str:
    """One epoch's metrics as a log line."""
    text = f"epoch {row['epoch']}: lr {row['lr']:.4g} train loss {row['train_loss']:.4f} top-1 {row['train_top1']:.2%}"
    if row["val_top1"] != "":
        text += f" | val loss {row['val_loss']:.4f} top-1 {row['val_top1']:.2%} top-5 {row['val_top5']:.2%}"
    return text + f" | {row['images_per_s']:.1f} img/s"


def preprocessing_json(pre: Preprocessing) -> dict[str, Any]:
    """A :class:`Preprocessing` as JSON (stored in checkpoints so every command measures with it)."""
    return {"mean": list(pre.mean), "std": list(pre.std), "input_size": pre.input_size,
            "resize_size": pre.resize_size, "interpolation": pre.interpolation}  # fmt: skip


def write_config(
    path: Path, cfg: TrainConfig, info: DistInfo, classes: tuple[str, ...], pre: Preprocessing, images: LabeledImages
) -> None:
    """``config.json``: every setting, the classes, the preprocessing and the data set sizes of the run."""
    obj = cfg.to_json()
    obj["run"] = {
        "world_size": info.world_size,
        "batch_per_process": cfg.batch_size // info.world_size,
        "num_classes": len(classes),
        "classes": list(classes),
        "train_images": {str(r): n for r, n in zip(images.roots, images.counts, strict=True)},
        "preprocessing": preprocessing_json(pre),
        "torch": torch.__version__,
    }
    write_json(path, obj)


def load_training_checkpoint(path: Path, *, fmt: str = CHECKPOINT_FORMAT, command: str = "train") -> dict[str, Any]:
    """``checkpoint_last.pt`` of a ``texturebias <command>`` run (format tag ``fmt``), or one clear error."""
    try:
        ck = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable training checkpoint ({first_line(exc)})") from None
    if not isinstance(ck, dict) or ck.get("format") != fmt or "optimizer" not in ck:
        raise CheckpointError(f"{path}: not a {command} checkpoint (checkpoint_last.pt of `texturebias {command}`)")
    return ck
