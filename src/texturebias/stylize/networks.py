"""Small custom AdaIN networks: a VGG-style encoder with a chosen AdaIN layer and its mirrored decoder.

The official networks are in :mod:`texturebias.models.adain_nets`. These builders make the same kind of
networks at any width and depth, e.g. a tiny AdaIN for 32×32 images with a frozen random encoder at a
relu2_1-like layer (``small_vgg_encoder((16, 32))``), trained with
:func:`texturebias.stylize.train.train_decoder` in minutes on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from texturebias.models.preprocessing import Preprocessing


def small_vgg_encoder(
    channels: Sequence[int] = (16, 32), convs_per_stage: int = 1, seed: int | None = 0, pool: bool = True
) -> tuple[nn.Sequential, tuple[int, ...]]:
    """A VGG-style encoder: stages of (reflection pad, 3×3 conv, ReLU) × ``convs_per_stage``, max-pool between.

    Args:
        channels: Output channels of each stage; stage ``i`` ends at the "relu{i+1}_1"-like layer.
        convs_per_stage: 3×3 convs per stage (the first ReLU of a stage is its style layer, as VGG's reluX_1).
        seed: Seed of the (He-normal) random initialisation, so a "frozen random encoder" is reproducible;
            ``None`` keeps PyTorch's default initialisation.
        pool: Max-pool (2x2) between stages, as VGG; ``False`` keeps the full resolution at every layer.

    Returns:
        ``(encoder, style_layers)``: pass both to :class:`~texturebias.stylize.AdaIN`
        (``AdaIN(encoder, decoder, style_layers=style_layers)``); the last style layer is the AdaIN layer.
    """
    layers: list[nn.Module] = []
    style_layers: list[int] = []
    in_ch = 3
    for stage, out_ch in enumerate(channels):
        if stage > 0 and pool:
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        for j in range(convs_per_stage):
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(in_ch, out_ch, kernel_size=3), nn.ReLU()]
            in_ch = out_ch
            if j == 0:
                style_layers.append(len(layers) - 1)
    encoder = nn.Sequential(*layers)
    if seed is not None:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in encoder.modules():
                if isinstance(m, nn.Conv2d):
                    fan_in = m.weight[0].numel()
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                    m.bias.zero_()
    # Only the first ReLU of each stage up to the last stage's first ReLU is used (AdaIN layer = last one).
    return encoder, tuple(style_layers)


def mirrored_decoder(channels: Sequence[int] = (16, 32), convs_per_stage: int = 1, pool: bool = True) -> nn.Sequential:
    """The decoder matching :func:`small_vgg_encoder` (as the official decoder mirrors VGG up to relu4_1).

    From the AdaIN layer (``channels[-1]`` channels) back to RGB: per stage (pad, conv, ReLU) blocks, nearest
    ×2 upsampling between stages (when the encoder pools), and a final (pad, conv → 3) without activation
    (raw output).
    """
    layers: list[nn.Module] = []
    rev = list(channels)[::-1]
    in_ch = rev[0]
    for stage, ch in enumerate(rev):
        out_ch = rev[stage + 1] if stage + 1 < len(rev) else ch
        for _ in range(max(convs_per_stage - 1, 0)):
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(in_ch, in_ch, kernel_size=3), nn.ReLU()]
        if stage + 1 < len(rev):
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(in_ch, out_ch, kernel_size=3), nn.ReLU()]
            if pool:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            in_ch = out_ch
    layers += [nn.ReflectionPad2d(1), nn.Conv2d(in_ch, in_ch, kernel_size=3), nn.ReLU()]
    layers += [nn.ReflectionPad2d(1), nn.Conv2d(in_ch, 3, kernel_size=3)]
    return nn.Sequential(*layers)


class ClassifierInput(nn.Module):
    """[0, 1] RGB → a classifier's normalised input, upsampled by an integer factor (bilinear)."""

    def __init__(self, preprocessing: Preprocessing, upsample: int = 1) -> None:
        super().__init__()
        self.preprocessing = preprocessing
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.preprocessing.normalize(x)
        if self.upsample == 1:
            return x
        return nn.functional.interpolate(x, scale_factor=self.upsample, mode="bilinear", align_corners=False)


class _Stem(nn.Module):
    def __init__(self, conv: nn.Module, bn: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.conv, self.bn, self.act = conv, bn, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


def efficientnet_lite_encoder(
    model: str = "efficientnet_lite0", *, upto: int = 2, upsample: int = 4
) -> tuple[nn.Sequential, tuple[int, ...], int, int]:
    """The first blocks of an ImageNet-trained EfficientNet-Lite as a frozen AdaIN encoder, for small images.

    What the Stylized-ImageNet stylizer has and a random encoder lacks is features learned on natural images
    (VGG-19 on ImageNet). For images far smaller than ImageNet's (the demo's 32 px), the input is upsampled
    first, so the blocks see structures at the scale they were trained on.

    Args:
        model: A registered EfficientNet-Lite (offline weights: ``efficientnet_lite0`` … ``efficientnet_lite2``).
        upto: Index of the last block; it must end a stage (Lite0: 0, 2, 4, 7, 10, 14, 15), as VGG's reluX_1 do.
        upsample: Integer factor the input is enlarged by (bilinear) before the stem.

    Returns:
        ``(encoder, style_layers, channels, stride)``: the style layers are the stem and the last block of each
        stage up to ``upto`` (the AdaIN layer); ``channels`` and ``stride`` describe the AdaIN-layer features
        relative to the *upsampled* input. BatchNorm stays in eval mode (``train_decoder`` keeps the encoder
        in eval mode).

    Raises:
        ValueError: ``upto`` does not end a stage.
    """
    from texturebias.models import load_model

    net, pre = load_model(model)
    blocks = list(net._blocks)
    out_ch = [b._bn2.num_features for b in blocks]
    stage_ends = [i for i in range(len(blocks)) if i + 1 == len(blocks) or out_ch[i + 1] != out_ch[i]]
    if upto not in stage_ends:
        raise ValueError(f"upto={upto} does not end a stage of {model} (stage ends: {stage_ends})")
    layers: list[nn.Module] = [
        ClassifierInput(pre, upsample),
        _Stem(net._conv_stem, net._bn0, net._swish),
    ]
    layers += blocks[: upto + 1]
    style_layers = (1, *(i + 2 for i in stage_ends if i <= upto))
    stride = 2  # the stem
    for block in blocks[: upto + 1]:
        s = block._depthwise_conv.stride
        stride *= s[0] if isinstance(s, (tuple, list)) else s
    encoder = nn.Sequential(*layers).eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder, style_layers, out_ch[upto], stride


def conv_decoder(in_channels: int, *, width: int = 64, upsample: int = 1) -> nn.Sequential:
    """A plain decoder for encoders that are not VGG-shaped: (pad, 3×3 conv, ReLU) blocks back to RGB.

    Args:
        in_channels: Channels of the AdaIN-layer features.
        width: Channels of the hidden layers (halved at each ×2 upsampling).
        upsample: Factor (a power of 2) from the feature grid to the output image; ×2 nearest upsampling and a
            conv per factor 2.
    """
    layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(in_channels, width, kernel_size=3), nn.ReLU()]
    w = width
    factor = upsample
    while factor > 1:
        layers += [
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.ReflectionPad2d(1),
            nn.Conv2d(w, w // 2, 3),
            nn.ReLU(),
        ]
        w //= 2
        factor //= 2
    layers += [nn.ReflectionPad2d(1), nn.Conv2d(w, w, kernel_size=3), nn.ReLU()]
    layers += [nn.ReflectionPad2d(1), nn.Conv2d(w, 3, kernel_size=3)]
    return nn.Sequential(*layers)
