"""VOC images and targets as tensors for torchvision's detectors, with a seeded horizontal flip.

An item is ``(image, target, index)``: the RGB image as float C×H×W in [0, 1] (the detector normalises it
with the backbone's mean/std), the target ``{"boxes": N×4 float32 (0-based x1 y1 x2 y2), "labels": N int64}``
with labels ``1..len(classes)`` (0 is background), and the item's index. Difficult objects are left out of
training targets by default, as the VOC recipes of py-faster-rcnn and mmdetection do.

The flip decision is a pure function of ``(seed, epoch, index)`` (:func:`~texturebias.utils.seed.stable_hash`),
not of a global RNG or a worker process, so a resumed or DDP run sees the same images as an uninterrupted
single-process run. A flip maps pixel ``x`` to ``W - 1 - x`` (inclusive pixel coordinates, the devkit's
convention): ``x1' = W - 1 - x2``, ``x2' = W - 1 - x1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from texturebias.detect.voc import VocAnnotation, VocImage
from texturebias.errors import ImageReadError
from texturebias.utils.seed import stable_hash


def read_rgb(path: Any) -> torch.Tensor:
    """An image file as float32 C×H×W in [0, 1].

    Raises:
        ImageReadError: missing or undecodable file.
    """
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except (OSError, ValueError) as exc:
        raise ImageReadError(f"cannot read image {path} ({exc})") from None
    return TF.to_dtype(TF.pil_to_tensor(rgb), torch.float32, scale=True)


def annotation_target(
    annotation: VocAnnotation, classes: Sequence[str], *, include_difficult: bool = False
) -> dict[str, torch.Tensor]:
    """The torchvision target of an annotation (0-based boxes, labels 1..C)."""
    index = {name: i + 1 for i, name in enumerate(classes)}
    objs = [o for o in annotation.objects if include_difficult or not o.difficult]
    boxes = torch.tensor([o.box for o in objs], dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor([index[o.name] for o in objs], dtype=torch.int64)
    return {"boxes": boxes, "labels": labels}


def hflip_target(target: dict[str, torch.Tensor], width: int) -> dict[str, torch.Tensor]:
    """Mirror the boxes of ``target`` for an image of ``width`` pixels (inclusive pixel coordinates)."""
    boxes = target["boxes"].clone()
    boxes[:, 0], boxes[:, 2] = width - 1 - target["boxes"][:, 2], width - 1 - target["boxes"][:, 0]
    return {**target, "boxes": boxes}


def flip_decision(seed: int, epoch: int, index: int) -> bool:
    """Whether item ``index`` is flipped in ``epoch`` (probability 1/2, independent of process and order)."""
    return stable_hash("detect-hflip", seed, epoch, index) % 2 == 1


class VocDetectionDataset(torch.utils.data.Dataset):
    """Images of a :class:`~texturebias.detect.voc.VocSet` for training or inference.

    Args:
        images: The images.
        classes: Class names (label ``i + 1`` is ``classes[i]``).
        hflip: Flip half of the training images horizontally (seeded per epoch and image).
        seed: Seed of the flips.
        include_difficult: Keep difficult objects in the targets.
    """

    def __init__(
        self,
        images: Sequence[VocImage],
        classes: Sequence[str],
        *,
        hflip: bool = False,
        seed: int = 0,
        include_difficult: bool = False,
    ) -> None:
        self.images = list(images)
        self.classes = tuple(classes)
        self.hflip = hflip
        self.seed = seed
        self.include_difficult = include_difficult
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the flips of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        item = self.images[index]
        image = read_rgb(item.image_path)
        h, w = image.shape[-2:]
        ann = item.annotation
        if (w, h) != (ann.width, ann.height):
            raise ImageReadError(
                f"{item.image_path} is {w}x{h} but its annotation says {ann.width}x{ann.height}"
            )  # fmt: skip
        target = annotation_target(ann, self.classes, include_difficult=self.include_difficult)
        if self.hflip and flip_decision(self.seed, self.epoch, index):
            image = image.flip(-1)
            target = hflip_target(target, w)
        return image, target, index


def collate(batch: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor], int]]) -> tuple[list, list, list[int]]:
    """Keep images of different sizes as lists (what torchvision's detectors take)."""
    images, targets, indices = zip(*batch, strict=True)
    return list(images), list(targets), list(indices)
