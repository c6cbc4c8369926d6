"""The demo family: small networks for the generated 32 x 32 shapes x textures world (``texturebias demo``).

``demo_cnn`` is a ResNet-style CNN (~75 k parameters) whose receptive field covers the whole image, so it
*can* use global shape; ``demo_bagnet`` is a tiny BagNet (:class:`~texturebias.models.bagnet.BagNet`, receptive
field 13 px of 32) that can only count local features, the miniature of BagNet-9/17 on ImageNet (Brendel &
Bethge, ICLR 2019). Neither has pretrained weights: the demo trains them in seconds.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from texturebias.models.bagnet import BagNet
from texturebias.models.preprocessing import Preprocessing
from texturebias.models.registry import register_model

#: 32-px inputs, no resize or crop (the generated images already have the model's size).
DEMO_PREPROCESSING = Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=32, resize_size=32)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs) with a 1x1 projection when the shape changes."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class DemoCNN(nn.Module):
    """Small ResNet for 32 x 32 inputs: stride-2 stem, three stages (stride 1, 2, 2), global average pool, ``fc``.

    Args:
        num_classes: Output classes (8 in the demo world).
        widths: Channels of the three stages. The default (16, 32, 64) trains at ~0.5 ms per 32-px image on
            2 CPU cores; learning shapes from texture-randomised images takes 6-10 epochs of 8,000 images
            (measured: 0.81 / 0.89 / 0.90 accuracy after 6 / 8 / 10 epochs), which the prototype's 0.3 M-parameter
            width (32, 64, 128), at 1.4 ms per image, could not fit into the demo's budget.
    """

    def __init__(self, num_classes: int = 8, widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        # A stride-2 stem keeps the cost at ~12 M multiply-adds per image (a full-resolution first stage
        # would cost 4x more for no accuracy gain on 32-px images); the 3x3 stem still sees every pixel.
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        self.layer1 = BasicBlock(widths[0], widths[0], 1)
        self.layer2 = BasicBlock(widths[0], widths[1], 2)
        self.layer3 = BasicBlock(widths[1], widths[2], 2)
        self.fc = nn.Linear(widths[2], num_classes)
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Final 4 x 4 feature grid (for 32-px inputs)."""
        return self.layer3(self.layer2(self.layer1(self.stem(x))))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from the feature grid (mean over locations, then ``fc``)."""
        return self.fc(features.mean(dim=(-2, -1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model(family="demo", preprocessing=DEMO_PREPROCESSING)
def demo_cnn(num_classes: int = 8, **kwargs: Any) -> DemoCNN:
    """Demo ResNet-style CNN for 32-px images (~75 k parameters, global receptive field)."""
    return DemoCNN(num_classes=num_classes, **kwargs)


@register_model(family="demo", preprocessing=DEMO_PREPROCESSING)
def demo_bagnet(num_classes: int = 8, **kwargs: Any) -> BagNet:
    """Demo BagNet for 32-px images: receptive field 13 px, stride 2 (a miniature BagNet-9/17)."""
    # Receptive field: stem 3x3 (3) + layer1's 3x3 at stride 2 (+2) + layer2's 3x3 (+4) + layer3's 3x3 (+4) = 13.
    # Striding in layer1 rather than layer2 costs 0.6x the time per image (measured: 1.6 vs 2.5 ms) for the same
    # accuracy on the demo world. The stem BN's running averages need a normal momentum in a 3-epoch run.
    defaults: dict[str, Any] = dict(
        widths=(16, 32, 48),
        blocks=(1, 1, 1),
        kernel3=(1, 1, 1),
        strides=(2, 1, 1),
        in_stem=16,
        expansion=2,
        stem_bn_momentum=0.1,
    )
    defaults.update(kwargs)
    return BagNet(num_classes=num_classes, **defaults)
