"""Preprocessing that travels with the weights: the record and its eval/train transforms.

A :class:`Preprocessing` record sits on every weight record (``models.factory.resolve_preprocessing``
finds it for a model name), and :meth:`Preprocessing.eval_transform` builds the matching PIL → tensor
transform. ``resize="auto"`` leaves images that already have the model's input size untouched — the
cue-conflict protocol feeds the 224×224 stimuli without resizing or cropping (REFERENCE §3). This module
is a leaf: it imports nothing from the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from PIL import Image
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

ResizeMode = Literal["always", "never", "auto"]

_INTERPOLATIONS = {
    "bilinear": T.InterpolationMode.BILINEAR,
    "bicubic": T.InterpolationMode.BICUBIC,
    "nearest": T.InterpolationMode.NEAREST,
    "lanczos": T.InterpolationMode.LANCZOS,
}


@dataclass(frozen=True)
class Preprocessing:
    """How a model's inputs must be prepared.

    Attributes:
        mean: Per-channel mean subtracted from RGB in [0, 1].
        std: Per-channel std divided after subtracting the mean.
        input_size: Side of the square crop the model was trained/evaluated at.
        resize_size: Shorter side after resizing, before the centre crop (ImageNet: 256 for 224).
        interpolation: "bilinear", "bicubic", "nearest" or "lanczos".
    """

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: int = 224
    resize_size: int = 256
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {self.interpolation!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need three entries, std > 0")

    @property
    def crop_pct(self) -> float:
        return self.input_size / self.resize_size

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a float tensor in [0, 1] (C×H×W or N×C×H×W)."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize`."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return x * std + mean

    def eval_transform(self, resize: ResizeMode = "always") -> EvalTransform:
        """The evaluation transform: Resize(resize_size) + CenterCrop(input_size) + tensor + normalise.

        Args:
            resize: "always" (standard protocol), "never" (only tensor + normalise), or "auto" (skip
                resize and crop when the image already is input_size × input_size).
        """
        return EvalTransform(self, resize)

    def train_transform(self, *, scale: tuple[float, float] = (0.08, 1.0), hflip: bool = True) -> T.Compose:
        """RandomResizedCrop(input_size) + horizontal flip + tensor + normalise (ImageNet training)."""
        ops: list[object] = [
            T.RandomResizedCrop(self.input_size, scale=scale, interpolation=_INTERPOLATIONS[self.interpolation])
        ]
        if hflip:
            ops.append(T.RandomHorizontalFlip())
        ops += [T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(self.mean, self.std)]
        return T.Compose(ops)


class EvalTransform:
    """PIL image → normalised float32 C×H×W tensor, following a :class:`Preprocessing` record."""

    def __init__(self, preprocessing: Preprocessing, resize: ResizeMode = "always") -> None:
        if resize not in ("always", "never", "auto"):
            raise ValueError(f"resize must be 'always', 'never' or 'auto', not {resize!r}")
        self.preprocessing = preprocessing
        self.resize = resize
        self._resize_crop = T.Compose(
            [
                T.Resize(preprocessing.resize_size, interpolation=_INTERPOLATIONS[preprocessing.interpolation]),
                T.CenterCrop(preprocessing.input_size),
            ]
        )

    def __call__(self, img: Image.Image) -> torch.Tensor:
        n = self.preprocessing.input_size
        if self.resize == "always" or (self.resize == "auto" and img.size != (n, n)):
            img = self._resize_crop(img)
        x = F.to_dtype(F.to_image(img), torch.float32, scale=True)
        return self.preprocessing.normalize(x)

    def __repr__(self) -> str:
        return f"EvalTransform({self.preprocessing}, resize={self.resize!r})"
