"""Every torchvision ImageNet classifier, under its plain torchvision name (``resnet50``, ``vgg16`` ...).

The weight records are derived from torchvision's own weight enums (its declared data): URL, the sha256
prefix in the file name (torchvision checks the same prefix), preprocessing and published accuracy.

They are registered on first need (:func:`register_torchvision_models`, called by ``models.factory`` when a name
is not among the other families, or when models or weights are listed): importing torchvision takes 1-2 s, which
commands running EfficientNet-Lite, a BagNet or a demo model do not pay.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from torch import nn

from texturebias.models.preprocessing import Preprocessing
from texturebias.models.registry import ModelEntry, add_model
from texturebias.models.weights import WeightRecord

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{6,64})\.(?:pth|pt|bin)(?:\.tar)?$")


def _build(name: str, **kwargs: Any) -> nn.Module:
    import torchvision

    return torchvision.models.get_model(name, weights=None, **kwargs)


def weight_record_from_torchvision(name: str) -> WeightRecord | None:
    """Translate torchvision's default weights of model ``name`` into a :class:`WeightRecord`."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError):
        return None
    weights = enum.DEFAULT
    url: str = weights.url
    filename = url.rsplit("/", 1)[-1]
    match = _HASH_IN_NAME.search(filename)
    if match is None:
        return None
    tf = weights.transforms
    kw = dict(getattr(tf, "keywords", {}) or {})
    crop = kw.get("crop_size", 224)
    resize = kw.get("resize_size", 256)
    interp = kw.get("interpolation", torchvision.transforms.InterpolationMode.BILINEAR)
    resize_size = resize[0] if isinstance(resize, list | tuple) else resize
    crop_size = crop[0] if isinstance(crop, list | tuple) else crop
    metrics = weights.meta.get("_metrics", {}).get("ImageNet-1K", {})
    return WeightRecord(
        name=f"{name}.tv_{weights.name.lower()}",
        filename=filename,
        url=url,
        hash_prefix=match.group(1),
        preprocessing=Preprocessing(
            mean=tuple(kw.get("mean", (0.485, 0.456, 0.406))),  # type: ignore[arg-type]
            std=tuple(kw.get("std", (0.229, 0.224, 0.225))),  # type: ignore[arg-type]
            input_size=int(crop_size),
            resize_size=int(resize_size),
            interpolation=str(interp.value),
        ),
        num_classes=len(weights.meta["categories"]),
        license="BSD-3-Clause (torchvision); ImageNet terms of access apply",
        origin=f"torchvision {weights.meta.get('recipe', '')}".strip(),
        size_mb=weights.meta.get("_file_size"),
        metrics={"top1": metrics.get("acc@1"), "top5": metrics.get("acc@5")} if metrics else {},
    )


_registered = False


def register_torchvision_models() -> None:
    """Register all torchvision classification models, once (later calls do nothing)."""
    global _registered
    if _registered:
        return
    _registered = True
    import torchvision

    for name in torchvision.models.list_models(module=torchvision.models):
        add_model(
            ModelEntry(
                name=name,
                builder=functools.partial(_build, name),
                weights=weight_record_from_torchvision(name),
                family="torchvision",
                description=f"torchvision {name}",
            )
        )
