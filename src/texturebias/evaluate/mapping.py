"""From a model's class probabilities to one of the 16 entry-level categories of Geirhos et al. (ICLR 2019).

API (used by cue-conflict and model-vs-human evaluation alike):

- the 16 categories themselves are :data:`texturebias.data.labels.CATEGORIES` (the column order here).
- :data:`IMAGENET_16_INDICES`: category → 0-based ImageNet-1k class indices (207 in all), as data.
- :class:`CategoryMapping`: ``mapping.aggregate(probs, "mean")`` → ``N×16`` scores,
  ``mapping.decide(probs)`` → list of category names.
- :func:`imagenet_mapping`, :func:`identity_mapping` (16-way heads), :func:`load_mapping` (user JSON
  ``{"category": [indices...]}``), :func:`resolve_mapping` (pick one from a spec and the head size).
- :func:`logits_to_decisions`: softmax over *all* outputs, aggregate, argmax — REFERENCE §3.

The ImageNet lists come from the authors' ``helper/human_categories.py``; several dog and bird classes were
removed there by hand, so they are stored as data rather than regenerated from WordNet.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from texturebias.data.labels import CATEGORIES
from texturebias.errors import DataError

if TYPE_CHECKING:  # torch is only needed by callers that pass tensors; keep analysis imports light
    import torch

Aggregation = Literal["mean", "sum", "max"]
AGGREGATIONS: tuple[str, ...] = ("mean", "sum", "max")


def _ranges(*parts: int | tuple[int, int]) -> tuple[int, ...]:
    out: list[int] = []
    for p in parts:
        out.extend(range(p[0], p[1] + 1) if isinstance(p, tuple) else [p])
    return tuple(out)


IMAGENET_16_INDICES: dict[str, tuple[int, ...]] = {
    "airplane": (404,),
    "bear": _ranges((294, 297)),
    "bicycle": (444, 671),
    "bird": _ranges(8, (10, 16), (18, 20), (22, 24), (80, 83), (87, 96), (98, 100), (127, 133), (135, 145)),
    "boat": (472, 554, 625, 814, 914),
    "bottle": (440, 720, 737, 898, 899, 901, 907),
    "car": (436, 511, 817),
    "cat": _ranges((281, 286)),
    "chair": (423, 559, 765, 857),
    "clock": (409, 530, 892),
    "dog": _ranges((152, 191), (193, 203), (205, 226), (228, 241), (243, 250), (252, 257), 259, (261, 263), (265, 268)),
    "elephant": (385, 386),
    "keyboard": (508, 878),
    "knife": (499,),
    "oven": (766,),
    "truck": (555, 569, 656, 675, 717, 734, 864, 867),
}


@dataclass(frozen=True)
class CategoryMapping:
    """Which model outputs belong to which category.

    Attributes:
        name: Short description ("imagenet16", "identity16", a file name, ...).
        indices: category → output indices, in the category order used for every aggregated array.
        num_outputs: Size of the model output the indices refer to (checked against the logits).
    """

    name: str
    indices: Mapping[str, tuple[int, ...]]
    num_outputs: int

    def __post_init__(self) -> None:
        if not self.indices:
            raise DataError(f"mapping {self.name}: no categories")
        seen: dict[int, str] = {}
        for cat, idx in self.indices.items():
            if not idx:
                raise DataError(f"mapping {self.name}: category {cat!r} has no class indices")
            for i in idx:
                if not 0 <= i < self.num_outputs:
                    raise DataError(f"mapping {self.name}: index {i} of {cat!r} is outside 0..{self.num_outputs - 1}")
                if i in seen and seen[i] != cat:
                    raise DataError(f"mapping {self.name}: index {i} belongs to both {seen[i]!r} and {cat!r}")
                seen[i] = cat

    @property
    def categories(self) -> tuple[str, ...]:
        """Category names in column order."""
        return tuple(self.indices)

    def aggregate(self, probabilities: torch.Tensor | np.ndarray, aggregation: Aggregation = "mean") -> np.ndarray:
        """Per-category scores from class probabilities.

        Args:
            probabilities: ``N×num_outputs`` probabilities (softmax over *all* outputs, not over the subset).
            aggregation: "mean" (default; the authors' README), "sum" (the paper's older numbers) or "max".

        Returns:
            ``N×len(categories)`` float64 array.
        """
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, not {aggregation!r}")
        if hasattr(probabilities, "detach"):  # a torch tensor
            probabilities = probabilities.detach().cpu().double().numpy()
        p = np.asarray(probabilities, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != self.num_outputs:
            raise DataError(f"mapping {self.name} expects N×{self.num_outputs} outputs, got shape {p.shape}")
        reduce = {"mean": np.mean, "sum": np.sum, "max": np.max}[aggregation]
        return np.stack([reduce(p[:, list(idx)], axis=1) for idx in self.indices.values()], axis=1)

    def decide(self, probabilities: torch.Tensor | np.ndarray, aggregation: Aggregation = "mean") -> list[str]:
        """The argmax category per row (ties go to the alphabetically first category)."""
        scores = self.aggregate(probabilities, aggregation)
        cats = self.categories
        return [cats[i] for i in scores.argmax(axis=1)]


def imagenet_mapping() -> CategoryMapping:
    """The 16-class mapping of ImageNet-1k outputs (207 classes; REFERENCE §3)."""
    return CategoryMapping("imagenet16", dict(IMAGENET_16_INDICES), 1000)


def identity_mapping(categories: Sequence[str] = CATEGORIES) -> CategoryMapping:
    """A model with a 16-way head whose output ``i`` is ``categories[i]`` (alphabetical by default)."""
    return CategoryMapping("identity16", {c: (i,) for i, c in enumerate(categories)}, len(categories))


def load_mapping(
    path: str | os.PathLike[str], *, num_outputs: int, required: Sequence[str] | None = CATEGORIES
) -> CategoryMapping:
    """Read a user mapping file: JSON ``{"airplane": [404, ...], "bear": [...], ...}``.

    Lets a model with another label space (THINGS, a CLIP prompt list, ...) be evaluated without editing
    package source. Category order in the file does not matter; columns follow ``required`` when given.

    Args:
        path: The JSON file.
        num_outputs: Size of the model's output vector (indices are checked against it).
        required: Categories that must be present (default: the 16); ``None`` accepts any set.

    Raises:
        DataError: unreadable file, wrong structure, unknown/missing categories, bad or overlapping indices.
    """
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"mapping file not found: {p}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{p}: not a readable JSON mapping ({exc})") from None
    if not isinstance(raw, dict):
        raise DataError(f'{p}: expected a JSON object {{"category": [class indices]}}')
    indices: dict[str, tuple[int, ...]] = {}
    for cat, idx in raw.items():
        if isinstance(idx, int):
            idx = [idx]
        if not isinstance(idx, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in idx):
            raise DataError(f"{p}: category {cat!r} must map to a list of integer class indices")
        indices[str(cat).lower()] = tuple(idx)
    if required is not None:
        unknown = sorted(set(indices) - set(required))
        missing = [c for c in required if c not in indices]
        if unknown or missing:
            raise DataError(f"{p}: unknown categories {unknown}, missing categories {missing}")
        indices = {c: indices[c] for c in required}
    return CategoryMapping(p.name, indices, num_outputs)


def resolve_mapping(spec: str | os.PathLike[str] | None, num_outputs: int) -> CategoryMapping:
    """Choose the mapping for a model.

    Args:
        spec: ``None``/"auto" (ImageNet mapping for 1000 outputs, identity for 16), "imagenet16",
            "identity16", or a path to a JSON mapping file.
        num_outputs: Size of the model's output vector.

    Raises:
        DataError: no mapping fits the head size.
    """
    if spec is None or str(spec) == "auto":
        if num_outputs == 1000:
            return imagenet_mapping()
        if num_outputs == len(CATEGORIES):
            return identity_mapping()
        raise DataError(
            f"a model with {num_outputs} outputs needs a mapping file (--mapping FILE.json with "
            '{"airplane": [indices], ...})'
        )
    if str(spec) == "imagenet16":
        mapping = imagenet_mapping()
    elif str(spec) == "identity16":
        mapping = identity_mapping()
    else:
        return load_mapping(spec, num_outputs=num_outputs)
    if mapping.num_outputs != num_outputs:
        raise DataError(f"mapping {spec} needs {mapping.num_outputs} outputs, the model has {num_outputs}")
    return mapping


def logits_to_decisions(
    logits: torch.Tensor, mapping: CategoryMapping, aggregation: Aggregation = "mean"
) -> tuple[list[str], np.ndarray]:
    """Softmax over all outputs (float32), aggregate per category, argmax.

    Returns:
        The decisions and the ``N×16`` aggregated scores.
    """
    probs = logits.detach().float().softmax(dim=-1)
    scores = mapping.aggregate(probs, aggregation)
    cats = mapping.categories
    return [cats[i] for i in scores.argmax(axis=1)], scores
