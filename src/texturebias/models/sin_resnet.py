"""The Stylized-ImageNet ResNet-50s of Geirhos et al. (ICLR 2019), REFERENCE §4.

Checkpoints are DataParallel training dicts (``checkpoint["state_dict"]``, keys prefixed ``module.``);
the shared loader unwraps and strips them. File names carry the sha256 prefix.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from texturebias.models.preprocessing import Preprocessing
from texturebias.models.registry import register_model
from texturebias.models.weights import WeightRecord

_BASE = "https://bitbucket.org/robert_geirhos/texture-vs-shape-pretrained-models/raw/"
_ORIGIN = (
    "Geirhos et al., ImageNet-trained CNNs are biased towards texture (ICLR 2019); github.com/rgeirhos/texture-vs-shape"
)
_LICENSE = "see github.com/rgeirhos/texture-vs-shape (research use); ImageNet terms of access apply"


def _record(name: str, path: str, prefix: str, top1: float, top5: float) -> WeightRecord:
    return WeightRecord(
        name=name,
        filename=path.rsplit("/", 1)[-1],
        url=_BASE + path,
        hash_prefix=prefix,
        preprocessing=Preprocessing(),
        num_classes=1000,
        license=_LICENSE,
        origin=_ORIGIN,
        size_mb=98.0,
        metrics={"top1": top1, "top5": top5},
    )


SIN = _record(
    "resnet50_sin.sin60",
    "6f41d2e86fc60566f78de64ecff35cc61eb6436f/resnet50_train_60_epochs-c8e5653e.pth.tar",
    "c8e5653e",
    60.18,
    82.62,
)
SIN_IN = _record(
    "resnet50_sin_in.sin_in45",
    "60b770e128fffcbd8562a3ab3546c1a735432d03/resnet50_train_45_epochs_combined_IN_SF-2a0d100e.pth.tar",
    "2a0d100e",
    74.59,
    92.14,
)
SIN_IN_IN = _record(
    "resnet50_sin_in_in.finetune60",
    "60b770e128fffcbd8562a3ab3546c1a735432d03/resnet50_finetune_60_epochs_lr_decay_after_30_start_"
    "resnet50_train_45_epochs_combined_IN_SF-ca06340c.pth.tar",
    "ca06340c",
    76.72,
    93.28,
)


def _resnet50(**kwargs: Any) -> nn.Module:
    import torchvision  # on use: importing it costs 1-2 s (models.torchvision_zoo)

    return torchvision.models.resnet50(weights=None, **kwargs)


@register_model(weights=SIN, family="sin")
def resnet50_sin(**kwargs: Any) -> nn.Module:
    """ResNet-50 trained on Stylized-ImageNet (model A, 60 epochs); shape bias ≈ 0.81."""
    return _resnet50(**kwargs)


@register_model(weights=SIN_IN, family="sin")
def resnet50_sin_in(**kwargs: Any) -> nn.Module:
    """ResNet-50 trained on SIN+IN (model B, 45 epochs)."""
    return _resnet50(**kwargs)


@register_model(weights=SIN_IN_IN, family="sin")
def resnet50_sin_in_in(**kwargs: Any) -> nn.Module:
    """ResNet-50 trained on SIN+IN then fine-tuned on IN (model C, "Shape-ResNet")."""
    return _resnet50(**kwargs)
