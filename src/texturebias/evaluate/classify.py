"""Classify images with any registered model: top-k ImageNet classes with names and probabilities."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from texturebias.data.images import UnreadableImage, describe_unreadable, load_image, readable_or_failed
from texturebias.data.labels import imagenet_categories
from texturebias.errors import DataError
from texturebias.models import get_model_entry, load_model
from texturebias.models.preprocessing import ResizeMode
from texturebias.utils.device import inference_forward, resolve_device
from texturebias.utils.progress import progress


@dataclass(frozen=True)
class Prediction:
    """Top-k prediction for one image."""

    path: Path
    indices: tuple[int, ...]
    labels: tuple[str, ...]
    probabilities: tuple[float, ...]


def label_names(model_name: str, num_classes: int) -> list[str]:
    """Class names for a model's outputs: ImageNet names for 1000-way models, else ``class_<i>``."""
    entry = get_model_entry(model_name)
    space = entry.weights.label_space if entry.weights is not None else "imagenet1k"
    if num_classes == 1000 and space == "imagenet1k":
        return list(imagenet_categories())
    return [f"class_{i}" for i in range(num_classes)]


@torch.inference_mode()
def classify_images(
    paths: Sequence[str | os.PathLike[str]],
    model_name: str = "efficientnet_lite0",
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    top_k: int = 5,
    batch_size: int = 16,
    resize: ResizeMode = "always",
    device: str = "auto",
    preprocessing_overrides: Mapping[str, Any] | None = None,
    failed: list[UnreadableImage] | None = None,
) -> list[Prediction]:
    """Classify image files with a registered model (pretrained weights unless ``checkpoint`` is given).

    Args:
        paths: Image files.
        model_name: Registry name.
        checkpoint: Local weights instead of the declared pretrained ones.
        top_k: Classes to return per image.
        batch_size: Images per forward pass.
        resize: Preprocessing resize mode (see :meth:`Preprocessing.eval_transform`).
        device: "auto", "cpu", "cuda", ...
        preprocessing_overrides: Fields replacing the model's preprocessing (``mean``, ``std``, ``input_size``,
            ``crop_pct`` or ``resize_size``, ``interpolation``); see :func:`~texturebias.models.resolve_preprocessing`.
        failed: Collects the images that cannot be read, which are skipped; ``None``: the first one raises
            :class:`~texturebias.errors.ImageReadError`.

    Returns:
        One :class:`Prediction` per readable path, in order.

    Raises:
        DataError: none of the images can be read (with ``failed`` given).
    """
    if top_k < 1:
        raise ValueError("top_k must be >= 1")
    dev = resolve_device(device)
    model, preprocessing = load_model(model_name, checkpoint, preprocessing_overrides=preprocessing_overrides)
    model = model.to(dev)
    transform = preprocessing.eval_transform(resize)

    def transform_image(path: Path) -> torch.Tensor:
        return transform(load_image(path))

    files = [Path(p) for p in paths]
    out: list[Prediction] = []
    names: list[str] | None = None
    load = transform_image if failed is None else readable_or_failed(transform_image)
    unreadable: list[UnreadableImage] = []
    for start in progress(range(0, len(files), batch_size), desc="classify", unit="batch"):
        chunk, images = [], []
        for p in files[start : start + batch_size]:
            x = load(p)
            if isinstance(x, UnreadableImage):
                unreadable.append(x)
            else:
                chunk.append(p)
                images.append(x)
        if not images:
            continue
        x = torch.stack(images).to(dev)
        probs = inference_forward(model, x).float().softmax(dim=-1)
        if names is None:
            names = label_names(model_name, probs.shape[-1])
        k = min(top_k, probs.shape[-1])
        values, indices = probs.topk(k, dim=-1)
        for p, v, i in zip(chunk, values.tolist(), indices.tolist(), strict=True):
            out.append(Prediction(p, tuple(i), tuple(names[j] for j in i), tuple(v)))
    if failed is not None:
        failed.extend(unreadable)
    if files and not out:
        raise DataError(f"none of the {len(files)} images could be read: {describe_unreadable(unreadable)}")
    return out
