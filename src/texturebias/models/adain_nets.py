"""The networks of AdaIN style transfer (Huang & Belongie, ICCV 2017) as used to build Stylized-ImageNet.

``vgg_normalised()`` is the full 53-module "normalised VGG-19" ``nn.Sequential`` of the official
``vgg_normalised.pth`` (module 0 is a 1×1 conv doing the preprocessing on RGB in [0, 1]; 3×3 convs are
preceded by reflection padding; max-pools use ceil_mode). The AdaIN encoder is modules 0–30 (through
relu4_1). The same weights are the DeepTextures network (Gatys et al. 2015) with that preprocessing conv
in front, so texture synthesis reuses this builder with average pooling. ``adain_decoder()`` is the
29-module decoder of ``decoder.pth``. Layouts: REFERENCE §2.
"""

from __future__ import annotations

from torch import nn

from texturebias.models.weights import WeightRecord, register_weights

# Indices (in the full Sequential) of the ReLU outputs used by AdaIN and the VGG layer names.
RELU_INDICES: dict[str, int] = {"relu1_1": 3, "relu2_1": 10, "relu3_1": 17, "relu4_1": 30}

_VGG_CFG: list[int | str] = [
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    512,
]

VGG_NORMALISED = register_weights(
    WeightRecord(
        name="adain.vgg_normalised",
        filename="vgg_normalised.pth",
        url="https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0/vgg_normalised.pth",
        # Third-party sha256 (REFERENCE §2); verified on first download.
        sha256="804ca2835ecf7539f0cd2a7ac3c18ce81e6f8468969ae7117ac0c148d286bb4a",
        preprocessing=None,
        num_classes=None,
        label_space="none",
        license="MIT (pytorch-AdaIN); VGG-19 weights by Simonyan & Zisserman (CC-BY 4.0), normalised by Gatys et al.",
        origin="Huang & Belongie, AdaIN (ICCV 2017); github.com/naoto0804/pytorch-AdaIN; "
        "normalised VGG-19 of Gatys et al. (DeepTextures)",
        size_mb=80.0,
    )
)

ADAIN_DECODER = register_weights(
    WeightRecord(
        name="adain.decoder",
        filename="decoder.pth",
        url="https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0/decoder.pth",
        sha256="379ca41d59f3a37eed3599bbbc2560c19da5c458870a5ffd3a9dd41aa88f9472",
        preprocessing=None,
        num_classes=None,
        label_space="none",
        license="MIT (pytorch-AdaIN)",
        origin="Huang & Belongie, AdaIN (ICCV 2017); github.com/naoto0804/pytorch-AdaIN (MS-COCO + WikiArt)",
        size_mb=14.0,
    )
)


def vgg_normalised(pool: str = "max") -> nn.Sequential:
    """The full 53-module normalised VGG-19 Sequential (state-dict keys ``0`` … ``51``).

    Args:
        pool: "max" (AdaIN, ceil_mode=True as the original) or "avg" (Gatys texture synthesis; same
            indices, so the same state dict loads).
    """
    layers: list[nn.Module] = [nn.Conv2d(3, 3, kernel_size=1)]
    in_ch = 3
    for item in _VGG_CFG:
        if item == "M":
            if pool == "max":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            elif pool == "avg":
                layers.append(nn.AvgPool2d(2, 2, ceil_mode=True))
            else:
                raise ValueError(f"pool must be 'max' or 'avg', not {pool!r}")
            continue
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(in_ch, int(item), kernel_size=3), nn.ReLU()]
        in_ch = int(item)
    assert len(layers) == 53
    return nn.Sequential(*layers)


def adain_decoder() -> nn.Sequential:
    """The 29-module AdaIN decoder (keys ``1, 5, 8, 11, 14, 18, 21, 25, 28``); raw output, no activation."""

    def block(cin: int, cout: int, relu: bool = True) -> list[nn.Module]:
        return [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, kernel_size=3)] + ([nn.ReLU()] if relu else [])

    up = nn.Upsample(scale_factor=2, mode="nearest")
    layers: list[nn.Module] = [
        *block(512, 256),
        up,
        *block(256, 256),
        *block(256, 256),
        *block(256, 256),
        *block(256, 128),
        nn.Upsample(scale_factor=2, mode="nearest"),
        *block(128, 128),
        *block(128, 64),
        nn.Upsample(scale_factor=2, mode="nearest"),
        *block(64, 64),
        *block(64, 3, relu=False),
    ]
    assert len(layers) == 29
    return nn.Sequential(*layers)
