"""Preprocessing that travels with the weights: the record and its eval/train transforms.

A :class:`Preprocessing` record sits on every weight record (``models.factory.resolve_preprocessing``
finds it for a model name), and :meth:`Preprocessing.eval_transform` builds the matching PIL → tensor
transform. ``resize="auto"`` leaves images that already have the model's input size untouched — the
cue-conflict protocol feeds the 224×224 stimuli without resizing or cropping (REFERENCE §3). This module
is a leaf: it imports nothing from the registry. torchvision is imported only where a transform needs it
(resizing, training augmentation): importing it costs 1-2 s (it pulls in ``torch._dynamo``), more than the
decoding of all 1,600 shape-bias stimuli, which need no resize.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from PIL import Image

if TYPE_CHECKING:
    from torchvision.transforms import v2 as T

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

ResizeMode = Literal["always", "never", "auto"]

OVERRIDE_KEYS: tuple[str, ...] = ("mean", "std", "input_size", "resize_size", "crop_pct", "interpolation")
"""Keys a preprocessing override mapping may hold (see :meth:`Preprocessing.with_overrides`)."""

INTERPOLATIONS: tuple[str, ...] = ("bilinear", "bicubic", "nearest", "lanczos")


def _interpolation(name: str) -> T.InterpolationMode:
    from torchvision.transforms import v2 as T

    return T.InterpolationMode(name)


def to_float_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image → float32 C×H×W tensor in [0, 1], bit for bit torchvision's ``to_dtype(to_image(img), scale=True)``.

    The same operations (uint8 → float32, then ``mul_(1 / 255)``) without importing torchvision.
    """
    x = torch.from_numpy(np.atleast_3d(np.array(img, copy=True))).permute(2, 0, 1)
    if x.dtype != torch.uint8:
        raise TypeError(f"expected an 8-bit image, got mode {img.mode!r}")
    return x.to(torch.float32).mul_(1.0 / 255)


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
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {self.interpolation!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need three entries, std > 0")

    @property
    def crop_pct(self) -> float:
        """Fraction of the resized image the centre crop keeps (timm's ``crop_pct``)."""
        return self.input_size / self.resize_size

    @classmethod
    def from_crop_pct(
        cls,
        *,
        input_size: int,
        crop_pct: float,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        interpolation: str = "bilinear",
    ) -> Preprocessing:
        """A record from timm's convention: resize to ``floor(input_size / crop_pct)``, then centre-crop."""
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
        return cls(mean, std, input_size, _resize_for(input_size, crop_pct), interpolation)

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> Preprocessing:
        """This record with some fields replaced (the CLI's ``--mean --std --input-size --crop-pct --resize``).

        Args:
            overrides: Any of :data:`OVERRIDE_KEYS`; ``None`` values are ignored. ``crop_pct`` sets
                ``resize_size = floor(input_size / crop_pct)`` (timm's rule); a new ``input_size`` alone keeps
                the record's crop fraction; ``resize_size`` and ``crop_pct`` together are refused.

        Raises:
            ValueError: unknown key, conflicting keys or invalid values.
        """
        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        unknown = sorted(set(given) - set(OVERRIDE_KEYS))
        if unknown:
            raise ValueError(f"unknown preprocessing override(s) {unknown}; known: {', '.join(OVERRIDE_KEYS)}")
        if not given:
            return self
        if "resize_size" in given and "crop_pct" in given:
            raise ValueError("give resize_size or crop_pct, not both")
        fields: dict[str, Any] = {k: given[k] for k in ("mean", "std", "interpolation") if k in given}
        for key in ("mean", "std"):
            if key in fields:
                fields[key] = tuple(float(v) for v in fields[key])
        input_size = int(given.get("input_size", self.input_size))
        if input_size < 1:
            raise ValueError(f"input_size must be >= 1, got {input_size}")
        if "resize_size" in given:
            resize_size = int(given["resize_size"])
        elif "crop_pct" in given:
            crop_pct = float(given["crop_pct"])
            if not 0 < crop_pct <= 1:
                raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
            resize_size = _resize_for(input_size, crop_pct)
        elif "input_size" in given:
            resize_size = _resize_for(input_size, self.crop_pct, tolerant=True)
        else:
            resize_size = self.resize_size
        if resize_size < input_size:
            raise ValueError(f"resize_size {resize_size} is smaller than input_size {input_size}")
        return replace(self, input_size=input_size, resize_size=resize_size, **fields)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (lists for mean/std), e.g. for the settings sidecars that guard reuse."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    def describe(self) -> str:
        """One line: ``224 px (resize 256, crop 0.875, bilinear), mean (...), std (...)``."""
        mean = ", ".join(f"{v:.4g}" for v in self.mean)
        std = ", ".join(f"{v:.4g}" for v in self.std)
        return (
            f"{self.input_size} px (resize {self.resize_size}, crop_pct {self.crop_pct:.4g}, {self.interpolation}), "
            f"mean ({mean}), std ({std})"
        )

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
        from torchvision.transforms import v2 as T

        ops: list[object] = [
            T.RandomResizedCrop(self.input_size, scale=scale, interpolation=_interpolation(self.interpolation))
        ]
        if hflip:
            ops.append(T.RandomHorizontalFlip())
        ops += [T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(self.mean, self.std)]
        return T.Compose(ops)


def _resize_for(input_size: int, crop_pct: float, *, tolerant: bool = False) -> int:
    # timm's transforms_factory: scale_size = math.floor(img_size / crop_pct), reproduced exactly. When the
    # fraction is our own input/resize ratio, a tiny epsilon keeps e.g. 240 / (240 / 274) at 274.
    return int(math.floor(input_size / crop_pct + (1e-9 if tolerant else 0.0)))


class EvalTransform:
    """PIL image → normalised float32 C×H×W tensor, following a :class:`Preprocessing` record."""

    def __init__(self, preprocessing: Preprocessing, resize: ResizeMode = "always") -> None:
        if resize not in ("always", "never", "auto"):
            raise ValueError(f"resize must be 'always', 'never' or 'auto', not {resize!r}")
        self.preprocessing = preprocessing
        self.resize = resize
        self._resize_crop: T.Compose | None = None

    def _resized(self, img: Image.Image) -> Image.Image:
        if self._resize_crop is None:  # built on first use: images of the input size never import torchvision
            from torchvision.transforms import v2 as T

            p = self.preprocessing
            self._resize_crop = T.Compose(
                [T.Resize(p.resize_size, interpolation=_interpolation(p.interpolation)), T.CenterCrop(p.input_size)]
            )
        return self._resize_crop(img)  # type: ignore[no-any-return]

    def __call__(self, img: Image.Image) -> torch.Tensor:
        n = self.preprocessing.input_size
        if self.resize == "always" or (self.resize == "auto" and img.size != (n, n)):
            img = self._resized(img)
        return self.preprocessing.normalize(to_float_tensor(img))

    def __repr__(self) -> str:
        return f"EvalTransform({self.preprocessing}, resize={self.resize!r})"
