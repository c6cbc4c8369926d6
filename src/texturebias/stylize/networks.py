"""Small custom AdaIN networks: a VGG-style encoder with a chosen AdaIN layer and its mirrored decoder.

The official networks are in :mod:`texturebias.models.adain_nets`. These builders make the same kind of
networks at any width and depth, e.g. a tiny AdaIN for 32×32 images with a frozen random encoder at a
relu2_1-like layer (``small_vgg_encoder((16, 32))``), trained with
:func:`texturebias.stylize.train.train_decoder` in minutes on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


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
