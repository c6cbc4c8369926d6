"""BagNets: ResNet-50-like bag-of-local-features models (Brendel & Bethge, ICLR 2019), REFERENCE §1.

The architecture reproduces the original code (github.com/wielandbrendel/bag-of-local-features-models)
exactly: same module names, so the official checkpoints load strictly, and the same computation
(padding 0 everywhere, top-left crop of the residual, BN momentum 0.001 in the stem). Unlike the
original, :meth:`BagNet.forward` averages the feature grid with ``mean`` and so also works for
non-square inputs.

Registered models: ``bagnet9``, ``bagnet17``, ``bagnet33`` (receptive field q = 9 / 17 / 33 px, total
stride 8). Their weight records point to the official files; these are not reachable offline, so the
tests check the computation against golden outputs of the original code run with deterministic
("detinit-v1") weights instead.

Generic builder (also for small demo models)::

    from texturebias.models.bagnet import BagNet

    model = BagNet(
        widths=(16, 32),        # bottleneck planes per layer (output channels = planes * expansion)
        blocks=(1, 1),          # bottleneck blocks per layer
        kernel3=(1, 1),         # how many leading blocks of each layer use a 3x3 middle conv (others 1x1)
        strides=(2, 2),         # stride of block 0 of each layer (on its middle conv and its downsample)
        num_classes=10,
        in_stem=32,             # channels of the stem (1x1 conv 3->in_stem, 3x3 conv in_stem->in_stem)
        expansion=4,            # bottleneck expansion (4 as in ResNet-50)
    )
    model.receptive_field       # 3 + 2*1 + 2*2 = 9 px (stem 3x3, then each 3x3 adds 2 * accumulated stride)
    model.total_stride          # 4
    model(x)                    # N x num_classes image logits (mean of the grid, then fc)
    model.forward_patch_logits(x)   # N x num_classes x H' x W', H' = (H - q) // total_stride + 1

Any such model works with :func:`texturebias.explain.evidence.class_evidence` (exact per-pixel class evidence).
The official BagNets are ``BagNet(widths=(64, 128, 256, 512), blocks=(3, 4, 6, 3), kernel3=K,
strides=(2, 2, 2, 1), in_stem=64)`` with K = (1, 1, 1, 1) / (1, 1, 1, 0) / (1, 1, 0, 0) for q = 33 / 17 / 9.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from texturebias.models.preprocessing import Preprocessing
from texturebias.models.registry import register_model
from texturebias.models.weights import WeightRecord

__all__ = ["BagNet", "Bottleneck", "bagnet9", "bagnet17", "bagnet33", "is_bagnet"]

_BASE = (
    "https://bitbucket.org/wielandbrendel/bag-of-feature-pretrained-models/raw/"
    "249e8fa82c0913623a807d9d35eeab9da7dcc2a8/"
)
_ORIGIN = (
    "Brendel & Bethge, Approximating CNNs with Bag-of-local-Features models works surprisingly well on "
    "ImageNet (ICLR 2019); github.com/wielandbrendel/bag-of-local-features-models"
)
_LICENSE = "see github.com/wielandbrendel/bag-of-local-features-models; ImageNet terms of access apply"


def _record(q: int, filename: str, prefix: str, metrics: dict[str, float]) -> WeightRecord:
    return WeightRecord(
        name=f"bagnet{q}.in1k",
        filename=filename,
        url=_BASE + filename,
        hash_prefix=prefix,
        preprocessing=Preprocessing(),
        num_classes=1000,
        license=_LICENSE,
        origin=_ORIGIN,
        size_mb=70.0,
        metrics=metrics,
    )


# File names keep the original 8/16/32 naming; the 8 hex digits are the sha256 prefix.
BAGNET9_WEIGHTS = _record(9, "bagnet8-34f4ccd2.pth.tar", "34f4ccd2", {})
BAGNET17_WEIGHTS = _record(17, "bagnet16-105524de.pth.tar", "105524de", {"top5": 80.5})
BAGNET33_WEIGHTS = _record(33, "bagnet32-2ddd53ed.pth.tar", "2ddd53ed", {"top1": 66.70, "top5": 87.00})


class Bottleneck(nn.Module):
    """ResNet bottleneck without padding; the residual is cropped to its top-left when larger.

    Args:
        inplanes: Input channels.
        planes: Width of the middle conv (output channels are ``planes * expansion``).
        stride: Stride of the middle conv (and of ``downsample``).
        downsample: Residual projection (1x1 conv + BN) or ``None`` for the identity.
        kernel_size: 1 or 3, the middle conv's kernel.
        expansion: Output channels per plane.
    """

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        kernel_size: int = 1,
        expansion: int = 4,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=kernel_size, stride=stride, padding=0, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        # Padding 0 shrinks the conv branch; the original keeps the residual's top-left (drops the last
        # rows/columns). Cropping each axis separately keeps non-square inputs right.
        dh = residual.shape[-2] - out.shape[-2]
        dw = residual.shape[-1] - out.shape[-1]
        if dh or dw:
            residual = residual[..., : residual.shape[-2] - dh, : residual.shape[-1] - dw]
        return self.relu(out + residual)


class BagNet(nn.Module):
    """A BagNet: every output location sees only a q x q window of the input.

    Args:
        widths: Bottleneck planes per layer (official: 64, 128, 256, 512).
        blocks: Blocks per layer (official: 3, 4, 6, 3).
        kernel3: Per layer, how many leading blocks use a 3x3 middle conv (official: 0 or 1).
        strides: Stride of each layer's block 0 (official: 2, 2, 2, 1).
        num_classes: Output classes of ``fc``.
        in_stem: Stem channels (official: 64).
        expansion: Bottleneck expansion (official: 4).
        stem_bn_momentum: Momentum of the stem's BatchNorm running averages (official: 0.001, which suits 90
            ImageNet epochs; a run of a few hundred steps needs ~0.1 or its eval-mode statistics stay near
            their initial values).

    Attributes:
        receptive_field: q, the side of the input window one output location sees.
        total_stride: Product of the strides (8 for the official models).
    """

    def __init__(
        self,
        widths: Sequence[int] = (64, 128, 256, 512),
        blocks: Sequence[int] = (3, 4, 6, 3),
        kernel3: Sequence[int] = (1, 1, 1, 1),
        strides: Sequence[int] = (2, 2, 2, 1),
        num_classes: int = 1000,
        in_stem: int = 64,
        expansion: int = 4,
        stem_bn_momentum: float = 0.001,
    ) -> None:
        super().__init__()
        if not (len(widths) == len(blocks) == len(kernel3) == len(strides)) or not widths:
            raise ValueError("widths, blocks, kernel3 and strides need the same (non-zero) length")
        if min(blocks) < 1 or min(strides) < 1 or min(kernel3) < 0:
            raise ValueError("blocks and strides must be >= 1, kernel3 >= 0")
        self.expansion = expansion
        self.conv1 = nn.Conv2d(3, in_stem, kernel_size=1, stride=1, padding=0, bias=False)
        self.conv2 = nn.Conv2d(in_stem, in_stem, kernel_size=3, stride=1, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(in_stem, momentum=stem_bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        self._inplanes = in_stem
        rf, jump = 3, 1
        self.layer_names: list[str] = []
        for i, (planes, n, k3, s) in enumerate(zip(widths, blocks, kernel3, strides, strict=True)):
            layer = self._make_layer(planes, n, s, k3)
            name = f"layer{i + 1}"
            self.add_module(name, layer)
            self.layer_names.append(name)
            for b, block in enumerate(layer):
                rf += (block.kernel_size - 1) * jump
                if b == 0:
                    jump *= s
        self.receptive_field: int = rf
        self.total_stride: int = jump
        self.fc = nn.Linear(widths[-1] * expansion, num_classes)
        self.num_classes = num_classes

    def _make_layer(self, planes: int, blocks: int, stride: int, kernel3: int) -> nn.Sequential:
        out_ch = planes * self.expansion
        downsample = None
        if stride != 1 or self._inplanes != out_ch:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, out_ch, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )
        layers = []
        for i in range(blocks):
            kernel = 3 if i < kernel3 else 1
            if i == 0:
                layers.append(Bottleneck(self._inplanes, planes, stride, downsample, kernel, self.expansion))
                self._inplanes = out_ch
            else:
                layers.append(Bottleneck(self._inplanes, planes, kernel_size=kernel, expansion=self.expansion))
        return nn.Sequential(*layers)

    def layers(self) -> list[nn.Sequential]:
        """The residual layers in order (``layer1`` ...)."""
        return [getattr(self, n) for n in self.layer_names]

    def _check_size(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an N x 3 x H x W tensor, got shape {tuple(x.shape)}")
        if min(x.shape[-2:]) < self.receptive_field:
            raise ValueError(
                f"input {tuple(x.shape[-2:])} is smaller than the receptive field {self.receptive_field}; "
                "pad it (texturebias.explain.evidence.class_evidence handles any size)"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Final feature grid, N x C x H' x W' with H' = (H - q) // total_stride + 1."""
        self._check_size(x)
        x = self.relu(self.bn1(self.conv2(self.conv1(x))))
        for layer in self.layers():
            x = layer(x)
        return x

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Image logits from a feature grid: mean over locations, then ``fc``."""
        return self.fc(features.mean(dim=(-2, -1)))

    def forward_patch_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every q x q window on the stride grid, N x num_classes x H' x W'.

        Cell (i, j) is the logit vector of the input window with top-left corner (s*i, s*j), s the total
        stride. (The original code's ``avg_pool=False`` output is the same tensor as N x H' x W' x C.)
        """
        f = self.forward_features(x)
        return torch.einsum("nchw,kc->nkhw", f, self.fc.weight) + self.fc.bias.view(1, -1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image logits: ``fc`` of the mean feature (= mean of the per-window logits), N x num_classes."""
        return self.forward_head(self.forward_features(x))


def is_bagnet(model: nn.Module) -> bool:
    """Whether ``model`` is a :class:`BagNet` (also inside ``DataParallel``/DDP wrappers)."""
    return isinstance(getattr(model, "module", model), BagNet)


def _bagnet(kernel3: Sequence[int], **kwargs: Any) -> BagNet:
    return BagNet(widths=(64, 128, 256, 512), blocks=(3, 4, 6, 3), kernel3=kernel3, strides=(2, 2, 2, 1), **kwargs)


@register_model(weights=BAGNET9_WEIGHTS, family="bagnet")
def bagnet9(**kwargs: Any) -> BagNet:
    """BagNet-9: ResNet-50-like, 9x9-pixel receptive field (Brendel & Bethge 2019)."""
    return _bagnet((1, 1, 0, 0), **kwargs)


@register_model(weights=BAGNET17_WEIGHTS, family="bagnet")
def bagnet17(**kwargs: Any) -> BagNet:
    """BagNet-17: ResNet-50-like, 17x17-pixel receptive field (Brendel & Bethge 2019)."""
    return _bagnet((1, 1, 1, 0), **kwargs)


@register_model(weights=BAGNET33_WEIGHTS, family="bagnet")
def bagnet33(**kwargs: Any) -> BagNet:
    """BagNet-33: ResNet-50-like, 33x33-pixel receptive field (Brendel & Bethge 2019)."""
    return _bagnet((1, 1, 1, 1), **kwargs)
