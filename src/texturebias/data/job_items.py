"""The unit of a folder job: one input image (:class:`JobItem`) and what processing made (:class:`ItemResult`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from texturebias.utils.seed import stable_hash

ImageLike = Any  # PIL.Image.Image | np.ndarray (uint8) | torch.Tensor (float in [0, 1])


@dataclass(frozen=True)
class JobItem:
    """One input image of a folder job.

    Attributes:
        index: Position in the sorted list of all inputs (the same in every process).
        path: The input file.
        relpath: Path relative to the input folder, POSIX style (``"n01440764/x.JPEG"``).
        job_seed: The job's seed.
    """

    index: int
    path: Path
    relpath: str
    job_seed: int = 0

    @property
    def stem(self) -> str:
        """Relative path without the file suffix (``"n01440764/x"``): outputs keep it."""
        return self.relpath[: -len(Path(self.relpath).suffix)] if Path(self.relpath).suffix else self.relpath

    def seed(self, *parts: object) -> int:
        """A 63-bit seed that depends only on (job seed, relative path, ``parts``)."""
        return stable_hash(self.job_seed, self.relpath, *parts) >> 1

    def rng(self, *parts: object) -> np.random.Generator:
        """A NumPy Generator seeded with :meth:`seed`."""
        return np.random.default_rng(self.seed(*parts))


@dataclass
class ItemResult:
    """What the batch callback returns for one item.

    Attributes:
        outputs: Output name → image (see the module docstring for accepted image types).
        info: Extra manifest columns for every output row of this item (e.g. ``{"style": ..., "alpha": 1.0}``);
            values may also be per-output mappings ``{output_name: value}``.
        error: Set instead of ``outputs`` when this item could not be processed (recorded in failed.csv).
    """

    outputs: Mapping[str, ImageLike] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
