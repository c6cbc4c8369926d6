"""Top-1/top-5 accuracy of a classifier on an ImageFolder (ImageNet validation protocol).

The standard protocol: Resize(256) + CenterCrop(224) from the model's preprocessing (or the preprocessing
a texturebias training checkpoint records), ImageNet mean/std. The same counting code scores the
validation set during training, so ``texturebias evaluate`` on ``checkpoint_best.pt`` reproduces the
``val_top1`` of ``metrics.csv``.

Folder classes are mapped to model outputs by name: through the class list a training checkpoint
carries, through ImageNet WordNet ids (``n01440764``) for 1000-way ImageNet models, or else in sorted
order when the folder has exactly as many classes as the model has outputs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from texturebias.data.images import UnreadableImage, describe_unreadable, write_failed_csv
from texturebias.data.labels import imagenet_wnids
from texturebias.data.loader import worker_init
from texturebias.errors import CheckpointError, DataError, first_line
from texturebias.models import load_model
from texturebias.models.preprocessing import Preprocessing
from texturebias.models.weights import training_checkpoint_info
from texturebias.train.data import ImageDataset, LabeledBatches, collate_labeled, index_training_folders
from texturebias.utils.device import Precision, autocast, inference_forward, resolve_device, strict_fp32
from texturebias.utils.io import prepare_output_dir, write_csv, write_json
from texturebias.utils.progress import progress

_WNID = re.compile(r"^n\d{8}$")


@dataclass(frozen=True)
class ClassificationMetrics:
    """Accuracy of a classifier on a labelled set.

    Attributes:
        n: Number of images.
        loss: Mean cross-entropy.
        top1: Top-1 accuracy in [0, 1].
        top5: Top-5 accuracy in [0, 1] (top-k with k = min(5, classes)).
        per_class: One dict per label with ``label``, ``class``, ``n``, ``top1``, ``top5`` (accuracies in [0, 1]).
    """

    n: int
    loss: float
    top1: float
    top5: float
    per_class: tuple[dict[str, Any], ...] = ()


class MetricAccumulator:
    """Sums of loss and correct counts, kept on the device (no host sync per batch), reducible across ranks."""

    def __init__(self, num_labels: int, device: torch.device) -> None:
        self.num_labels = num_labels
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        # Rows: images, top-1 correct, top-5 correct; one column per label.
        self.counts = torch.zeros(3, num_labels, dtype=torch.int64, device=device)

    def update(self, logits: torch.Tensor, targets: torch.Tensor, loss_sum: torch.Tensor | None = None) -> None:
        """Add a batch; ``loss_sum`` is the summed (not mean) loss, computed here when not given."""
        logits = logits.detach().float()
        if loss_sum is None:
            loss_sum = F.cross_entropy(logits, targets, reduction="sum")
        self.loss_sum += loss_sum.detach().double()
        k = min(5, logits.shape[-1])
        top = logits.topk(k, dim=-1).indices
        hit = top == targets[:, None]
        labels = targets.long()
        self.counts[0].index_add_(0, labels, torch.ones_like(labels))
        self.counts[1].index_add_(0, labels, hit[:, 0].long())
        self.counts[2].index_add_(0, labels, hit.any(dim=-1).long())

    def all_reduce(self) -> None:
        """Sum over all ranks (no-op without an initialised process group)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(self.loss_sum)
            dist.all_reduce(self.counts)

    def result(self, class_names: Sequence[str] | None = None) -> ClassificationMetrics:
        counts = self.counts.cpu().tolist()
        n = sum(counts[0])
        if n == 0:
            return ClassificationMetrics(n=0, loss=float("nan"), top1=float("nan"), top5=float("nan"))
        per_class = tuple(
            {
                "label": i,
                "class": class_names[i] if class_names is not None else str(i),
                "n": counts[0][i],
                "top1": counts[1][i] / counts[0][i] if counts[0][i] else float("nan"),
                "top5": counts[2][i] / counts[0][i] if counts[0][i] else float("nan"),
            }
            for i in range(self.num_labels)
        )
        return ClassificationMetrics(
            n=n,
            loss=float(self.loss_sum.item()) / n,
            top1=sum(counts[1]) / n,
            top5=sum(counts[2]) / n,
            per_class=per_class,
        )


@torch.no_grad()
def score_batches(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    num_labels: int,
    device: torch.device,
    precision: Precision = "fp32",
    channels_last: bool = False,
    label_map: torch.Tensor | None = None,
    desc: str = "evaluate",
) -> MetricAccumulator:
    """Run ``model`` (switched to eval mode) over labelled batches and accumulate accuracy and loss.

    Args:
        model: The classifier (not DDP-wrapped: ranks may see different numbers of batches).
        batches: ``(images, labels)`` batches; labels index the dataset's classes.
        num_labels: Number of dataset classes (per-class counts).
        device: Where to run.
        precision: Autocast precision.
        channels_last: Feed channels-last inputs.
        label_map: Dataset label → model output index (``None``: identity).
        desc: Progress-bar label.

    Returns:
        The accumulator (call :meth:`MetricAccumulator.all_reduce` in distributed runs, then ``result``).
    """
    was_training = model.training
    model.eval()
    acc = MetricAccumulator(num_labels, device)
    lmap = label_map.to(device) if label_map is not None else None
    fp32_guard = strict_fp32() if precision == "fp32" and device.type == "cuda" else _null()
    try:
        with fp32_guard:
            for images, labels in progress(batches, desc=desc, unit="batch", leave=False):
                images = images.to(device, non_blocking=True)
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                labels = labels.to(device, non_blocking=True)
                with autocast(device, precision):
                    logits = inference_forward(model, images)
                logits = logits.float()
                if lmap is None:
                    acc.update(logits, labels)
                else:
                    # Loss and top-k over the model's own outputs, counted per dataset label.
                    targets = lmap[labels]
                    loss = F.cross_entropy(logits, targets, reduction="sum")
                    _update_mapped(acc, logits, targets, labels, loss)
    finally:
        model.train(was_training)
    return acc


def _update_mapped(
    acc: MetricAccumulator, logits: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor, loss: torch.Tensor
) -> None:
    acc.loss_sum += loss.double()
    k = min(5, logits.shape[-1])
    hit = logits.topk(k, dim=-1).indices == targets[:, None]
    labels = labels.long()
    acc.counts[0].index_add_(0, labels, torch.ones_like(labels))
    acc.counts[1].index_add_(0, labels, hit[:, 0].long())
    acc.counts[2].index_add_(0, labels, hit.any(dim=-1).long())


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def label_map_for(folder_classes: Sequence[str], num_outputs: int, model_classes: Sequence[str] | None) -> torch.Tensor:
    """Map folder class names to model output indices.

    Args:
        folder_classes: Sorted class sub-folder names of the evaluation set.
        num_outputs: Number of model outputs.
        model_classes: Class names of the model's outputs (from a training checkpoint), if known.

    Raises:
        DataError: a folder class the model does not know, or no way to match the labels.
    """
    if model_classes is not None:
        pos = {c: i for i, c in enumerate(model_classes)}
        unknown = [c for c in folder_classes if c not in pos]
        if unknown:
            raise DataError(
                f"{len(unknown)} evaluation class(es) are not among the model's training classes: "
                + ", ".join(unknown[:5])
            )
        return torch.tensor([pos[c] for c in folder_classes], dtype=torch.long)
    if num_outputs == 1000 and all(_WNID.match(c) for c in folder_classes):
        wnid_pos = {w: i for i, w in enumerate(imagenet_wnids())}
        unknown = [c for c in folder_classes if c not in wnid_pos]
        if unknown:
            raise DataError(f"unknown ImageNet WordNet id(s): {', '.join(unknown[:5])}")
        return torch.tensor([wnid_pos[c] for c in folder_classes], dtype=torch.long)
    if len(folder_classes) == num_outputs:
        return torch.arange(num_outputs)
    raise DataError(
        f"cannot match {len(folder_classes)} class folders to a model with {num_outputs} outputs: name the folders "
        "by ImageNet WordNet id (n01440764 ...), or evaluate a texturebias training checkpoint (it records its classes)"
    )


@dataclass(frozen=True)
class EvaluationResult:
    """Result of :func:`evaluate_classifier`.

    Attributes:
        model: Model name.
        checkpoint: Checkpoint evaluated (``None``: declared pretrained weights).
        data: Evaluation folder.
        metrics: Overall and per-class accuracy.
        preprocessing: The eval preprocessing used.
        failed: The images that could not be read (left out of every number; ``failed.csv``).
    """

    model: str
    checkpoint: Path | None
    data: Path
    metrics: ClassificationMetrics
    preprocessing: Preprocessing
    failed: tuple[UnreadableImage, ...] = ()

    def summary(self) -> dict[str, Any]:
        """JSON-ready overall numbers."""
        return {
            "model": self.model,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "data": str(self.data),
            "n": self.metrics.n,
            "top1": self.metrics.top1,
            "top5": self.metrics.top5,
            "loss": self.metrics.loss,
            "input_size": self.preprocessing.input_size,
            "resize_size": self.preprocessing.resize_size,
            "preprocessing": self.preprocessing.to_dict(),
            "n_failed": len(self.failed),
        }


PER_CLASS_FIELDS = ("label", "class", "n", "top1", "top5")


def evaluate_classifier(
    model_name: str,
    data: str | os.PathLike[str],
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    workers: int = 4,
    device: str = "auto",
    precision: Precision = "fp32",
    channels_last: bool = False,
    out: str | os.PathLike[str] | None = None,
    preprocessing_overrides: Mapping[str, Any] | None = None,
) -> EvaluationResult:
    """Top-1/top-5 accuracy of a model on an ImageFolder with the Resize + CenterCrop protocol.

    Args:
        model_name: Registered model name.
        data: ImageFolder root (``data/<class>/<image>``).
        checkpoint: Local checkpoint (any format ``create_model`` loads, including ``texturebias train``
            checkpoints); ``None`` uses the model's declared pretrained weights.
        batch_size: Images per forward pass.
        workers: Data-loading worker processes.
        device: ``auto``, ``cpu``, ``cuda`` ...
        precision: ``fp32`` (strict, no TF32), ``bf16`` or ``fp16``.
        channels_last: Channels-last inputs and weights.
        out: Folder to write ``summary.json``, ``per_class.csv`` and ``failed.csv`` (the images that could not be
            read, which are left out) into (atomically); ``None`` writes nothing.
        preprocessing_overrides: Fields replacing the model's preprocessing (``mean``, ``std``, ``input_size``,
            ``crop_pct`` or ``resize_size``, ``interpolation``); see :func:`~texturebias.models.resolve_preprocessing`.

    Raises:
        DataError, CheckpointError, UnknownModelError: see messages.
    """

    dev = resolve_device(device)
    out_dir = prepare_output_dir(out) if out is not None else None
    info = training_checkpoint_info(checkpoint) if checkpoint is not None else None
    model, pre = load_model(model_name, checkpoint, preprocessing_overrides=preprocessing_overrides)
    model = model.to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    images = index_training_folders([data])
    num_outputs = _num_outputs(model, pre, dev)
    lmap = label_map_for(images.classes, num_outputs, info.get("classes") if info else None)
    dataset = ImageDataset(images, pre.eval_transform("always"))
    # Unreadable images come back from the workers as records (collate_labeled): recorded, not fatal.
    loader = LabeledBatches(
        torch.utils.data.DataLoader(
            dataset, worker_init_fn=worker_init,
            batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=dev.type == "cuda",
            collate_fn=collate_labeled,
        )
    )  # fmt: skip
    acc = score_batches(
        model, loader, num_labels=len(images.classes), device=dev, precision=precision,
        channels_last=channels_last, label_map=lmap,
    )  # fmt: skip
    result = EvaluationResult(
        model=model_name,
        checkpoint=Path(checkpoint) if checkpoint is not None else None,
        data=Path(data),
        metrics=acc.result(images.classes),
        preprocessing=pre,
        failed=tuple(loader.failed),
    )
    if result.metrics.n == 0:
        raise DataError(
            f"none of the {len(images)} images of {data} could be read: {describe_unreadable(loader.failed)}"
        )
    if out_dir is not None:
        write_csv(out_dir / "per_class.csv", result.metrics.per_class, PER_CLASS_FIELDS)
        write_failed_csv(out_dir, loader.failed, root=data)
        write_json(out_dir / "summary.json", result.summary())
    return result


@torch.no_grad()
def _num_outputs(model: nn.Module, pre: Preprocessing, device: torch.device) -> int:
    was_training = model.training
    model.eval()
    try:
        out = model(torch.zeros(1, 3, pre.input_size, pre.input_size, device=device))
    except RuntimeError as exc:
        raise CheckpointError(f"model fails on a {pre.input_size}px input: {first_line(exc)}") from None
    finally:
        model.train(was_training)
    return int(out.shape[-1])
