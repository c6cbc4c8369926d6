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
from texturebias.models.registry import ModelEntry, add_model, reserve_names
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


# torchvision 0.29.1's classifiers (torchvision.models.list_models(module=torchvision.models); a test keeps this
# equal to it). Reserved at import so that another family cannot take one of these names before the lazy
# registration would find the clash.
CLASSIFIER_NAMES: tuple[str, ...] = (
    "alexnet", "convnext_base", "convnext_large", "convnext_small", "convnext_tiny", "densenet121", "densenet161",
    "densenet169", "densenet201", "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
    "efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "efficientnet_v2_l",
    "efficientnet_v2_m", "efficientnet_v2_s", "googlenet", "inception_v3", "maxvit_t", "mnasnet0_5", "mnasnet0_75",
    "mnasnet1_0", "mnasnet1_3", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "regnet_x_16gf",
    "regnet_x_1_6gf", "regnet_x_32gf", "regnet_x_3_2gf", "regnet_x_400mf", "regnet_x_800mf", "regnet_x_8gf",
    "regnet_y_128gf", "regnet_y_16gf", "regnet_y_1_6gf", "regnet_y_32gf", "regnet_y_3_2gf", "regnet_y_400mf",
    "regnet_y_800mf", "regnet_y_8gf", "resnet101", "resnet152", "resnet18", "resnet34", "resnet50",
    "resnext101_32x8d", "resnext101_64x4d", "resnext50_32x4d", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5", "shufflenet_v2_x2_0", "squeezenet1_0", "squeezenet1_1", "swin_b", "swin_s", "swin_t",
    "swin_v2_b", "swin_v2_s", "swin_v2_t", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19",
    "vgg19_bn", "vit_b_16", "vit_b_32", "vit_h_14", "vit_l_16", "vit_l_32", "wide_resnet101_2", "wide_resnet50_2",
)  # fmt: skip
reserve_names(CLASSIFIER_NAMES, "torchvision")


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
