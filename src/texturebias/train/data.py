"""Training data: ImageFolder roots concatenated under one label space, with reproducible augmentation.

Images are read with the package's one loader (:func:`~texturebias.data.images.load_image`) and folders
are indexed with :func:`~texturebias.data.images.index_image_folder`. The random augmentation of sample
``i`` in epoch ``e`` is seeded from ``(seed, e, i)`` alone, so it does not depend on the number of
processes, data-loader workers, or on whether the run was interrupted and resumed: this is what makes a
2-process run match a 1-process run and a resumed run match an uninterrupted one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler, default_collate
from torchvision.transforms import v2 as T

from texturebias.data.images import (
    UnreadableImage,
    check_readable,
    describe_unreadable,
    index_image_folder,
    load_image,
)
from texturebias.errors import DataError, ImageReadError
from texturebias.models.preprocessing import Preprocessing
from texturebias.utils.progress import progress
from texturebias.utils.seed import stable_hash


@dataclass(frozen=True)
class LabeledImages:
    """Image files with integer labels in one label space.

    Attributes:
        classes: Class names; label ``i`` is ``classes[i]``.
        samples: ``(path, label)`` pairs, root after root, each root in sorted order.
        roots: The ImageFolder roots, in order.
        counts: Number of images taken from each root.
    """

    classes: tuple[str, ...]
    samples: tuple[tuple[Path, int], ...]
    roots: tuple[Path, ...]
    counts: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.samples)


def _class_difference(a: Sequence[str], b: Sequence[str]) -> str:
    only_a = sorted(set(a) - set(b))
    only_b = sorted(set(b) - set(a))

    def head(items: list[str]) -> str:
        return ", ".join(items[:5]) + (f" ... (+{len(items) - 5} more)" if len(items) > 5 else "") if items else "-"

    return f"only in the first: {head(only_a)}; only in the second: {head(only_b)}"


def index_training_folders(
    roots: Sequence[str | os.PathLike[str]], *, classes: Sequence[str] | None = None
) -> LabeledImages:
    """Index one or more ImageFolder roots that share their class sub-folders (e.g. SIN and IN).

    Args:
        roots: ImageFolder roots (``root/<class>/<image>``); concatenated in the given order.
        classes: Required class names (e.g. the training classes when indexing a validation folder).

    Raises:
        DataError: a missing or malformed folder, or class names that differ between folders (the message
            lists the differences).
    """
    if not roots:
        raise DataError("no data folders given")
    indexes = [index_image_folder(r) for r in roots]
    want = tuple(classes) if classes is not None else indexes[0].classes
    for idx in indexes:
        if idx.classes != want:
            first = "the training data" if classes is not None else str(indexes[0].root)
            raise DataError(
                f"class folders of {idx.root} ({len(idx.classes)} classes) do not match {first} "
                f"({len(want)} classes): {_class_difference(want, idx.classes)}"
            )
    samples = tuple(s for idx in indexes for s in idx.samples)
    return LabeledImages(
        classes=want,
        samples=samples,
        roots=tuple(idx.root for idx in indexes),
        counts=tuple(len(idx) for idx in indexes),
    )


def train_transform_parts(
    preprocessing: Preprocessing, augment: str = "standard"
) -> tuple[Callable[[Any], Any], Callable[[Any], torch.Tensor]]:
    """The training transform split into a deterministic first part and a random second part.

    The first part's output can be cached (``--cache-images``): it is the same in every epoch.

    Args:
        preprocessing: The model's input preprocessing (size, mean/std, interpolation).
        augment: ``standard`` = RandomResizedCrop(input_size) + horizontal flip (ImageNet protocol);
            ``flip`` = the eval Resize + CenterCrop, then a horizontal flip (small images, where random
            crops would destroy the object); ``none`` = the eval transform.

    Returns:
        ``(fixed, random)``: PIL image → intermediate, intermediate → tensor.
    """
    if augment == "standard":
        return _identity, preprocessing.train_transform()
    if augment == "none":
        return preprocessing.eval_transform("always"), _identity
    if augment == "flip":
        return preprocessing.eval_transform("always"), T.RandomHorizontalFlip()
    raise ValueError(f"unknown augmentation {augment!r}")


def _identity(x: Any) -> Any:
    return x


def train_transform(preprocessing: Preprocessing, augment: str = "standard") -> Callable[[Any], torch.Tensor]:
    """The training transform (see :func:`train_transform_parts` for ``augment``)."""
    fixed, random = train_transform_parts(preprocessing, augment)
    return lambda img: random(fixed(img))


class ImageDataset(Dataset):
    """A :class:`LabeledImages` list as a torch dataset with per-sample seeded augmentation.

    Args:
        images: The indexed files and labels.
        transform: The random part of the transform (or the whole transform): intermediate → tensor.
        seed: Base seed of the augmentation; ``None`` for a deterministic (eval) transform.
        prepare: Deterministic first part (PIL image → intermediate, e.g. the eval resize + normalisation);
            ``None`` = identity.
        cache: Keep every prepared image in memory after it is first loaded (small data sets: decoding a PNG
            costs more than training a small network on it). :meth:`preload` fills the cache up front, so
            that data-loader workers forked afterwards share it. Cached and uncached runs give identical tensors.
    """

    def __init__(
        self,
        images: LabeledImages,
        transform: Callable[[Any], torch.Tensor],
        *,
        seed: int | None = None,
        prepare: Callable[[Any], Any] | None = None,
        cache: bool = False,
    ) -> None:
        self.images = images
        self.transform = transform
        self.seed = seed
        self.prepare = prepare or _identity
        self.cache: dict[int, Any] | None = {} if cache else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation of ``epoch`` (call before creating the epoch's data-loader iterator)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def _prepared(self, index: int) -> Any:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        item = self.prepare(load_image(self.images.samples[index][0]))
        if self.cache is not None:
            self.cache[index] = item
        return item

    def preload(self, desc: str = "cache images") -> None:
        """Load and prepare every image into the cache (no-op without ``cache=True``)."""
        if self.cache is None:
            return
        for i in progress(range(len(self)), desc=desc, unit="img", leave=False):
            self._prepared(i)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | UnreadableImage:
        """``(image tensor, label)``, or the :class:`UnreadableImage` record when the file cannot be read.

        The record is returned rather than raised so that, in a data-loader worker, the failure reaches the main
        process as data (:func:`collate_labeled`, :class:`LabeledBatches`) instead of a worker traceback.
        """
        label = self.images.samples[index][1]
        try:
            img = self._prepared(index)
        except ImageReadError as exc:
            return UnreadableImage.from_error(self.images.samples[index][0], exc)
        if self.seed is None:
            return self.transform(img), label
        sample_seed = stable_hash("train-augment", self.seed, self.epoch, index) % 2**63
        # torchvision's random transforms draw from torch's global generator: fork it so that the
        # sample's augmentation is a function of (seed, epoch, index) only and the caller's RNG is untouched.
        # Seed only the CPU generator: torch.manual_seed also queues lazy CUDA seeding, whose
        # bookkeeping cost a third of the per-image loading time on small images.
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(sample_seed)
            x = self.transform(img)
        return x, label


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` of ``0..n-1`` without padding (evaluation: every image once)."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.rank, self.world_size = n, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world_size))

    def __len__(self) -> int:
        return max(0, math.ceil((self.n - self.rank) / self.world_size))


def collate_labeled(
    batch: Sequence[tuple[torch.Tensor, int] | UnreadableImage],
) -> tuple[torch.Tensor, torch.Tensor, list[UnreadableImage]]:
    """The data-loader ``collate_fn`` of :class:`ImageDataset`: ``(images, labels, unreadable records)``.

    Unreadable samples are left out of the tensors (a batch may hold fewer images, or none).
    """
    good = [item for item in batch if not isinstance(item, UnreadableImage)]
    failed = [item for item in batch if isinstance(item, UnreadableImage)]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), failed
    images, labels = default_collate(good)
    return images, labels, failed


class LabeledBatches:
    """``(images, labels)`` batches of a data loader built with :func:`collate_labeled`, minus unreadable images.

    Args:
        loader: The data loader (any iterable of ``(images, labels, failed)``).
        on_unreadable: ``"record"``: collect the records in :attr:`failed` and go on (evaluation);
            ``"raise"``: raise :class:`ImageReadError` in this, the main, process (training, where every file was
            checked up front and one that breaks mid-run is a change on disk).
    """

    def __init__(self, loader: Iterable[Any], *, on_unreadable: str = "record") -> None:
        if on_unreadable not in ("record", "raise"):
            raise ValueError(f"on_unreadable must be 'record' or 'raise', got {on_unreadable!r}")
        self.loader = loader
        self.on_unreadable = on_unreadable
        self.failed: list[UnreadableImage] = []

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels, failed in self.loader:
            if failed:
                if self.on_unreadable == "raise":
                    raise ImageReadError(f"{failed[0].path}: {failed[0].reason}")
                self.failed.extend(failed)
            if labels.numel():
                yield images, labels


def check_training_images(*image_sets: LabeledImages, rank: int = 0, world_size: int = 1) -> None:
    """Read every image of ``image_sets`` once and refuse the whole run, before any epoch, if one cannot be read.

    Each process checks its share (``rank::world_size``); the lists are gathered so that every process raises
    the same error (a process that went on alone would wait for the others forever).

    Raises:
        DataError: listing the unreadable files (the first few, and how many in all).
    """
    paths = [p for images in image_sets for p, _ in images.samples]
    failed = check_readable(paths[rank::world_size], desc="check images" if rank == 0 else None)
    if world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        gathered: list[list[UnreadableImage] | None] = [None] * world_size
        torch.distributed.all_gather_object(gathered, failed)
        failed = sorted(f for part in gathered for f in (part or []))
    if failed:
        raise DataError(
            f"{len(failed)} of {len(paths)} training/validation image(s) cannot be read; fix or remove them "
            f"before training: {describe_unreadable(failed)}"
        )
