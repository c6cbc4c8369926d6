"""The ImageNet-1k label space: class names, WordNet ids and name/index lookup."""

from __future__ import annotations

import difflib
import functools
from importlib import resources

from texturebias.errors import TextureBiasError


@functools.cache
def imagenet_categories() -> tuple[str, ...]:
    """The 1000 human-readable ImageNet class names in index order (torchvision's list)."""
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


@functools.cache
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 WordNet ids (``n01440764`` ...) in index order (= sorted order, as ImageFolder sorts them)."""
    text = resources.files("texturebias.data").joinpath("imagenet_wnids.txt").read_text(encoding="utf-8")
    wnids = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(wnids) != 1000:
        raise RuntimeError(f"imagenet_wnids.txt has {len(wnids)} entries, expected 1000")
    return wnids


def class_index(spec: str | int) -> int:
    """Resolve a class given as index (``7``/``"7"``), WordNet id (``n01514668``) or name (``cock``).

    Names match case-insensitively; spaces and underscores are interchangeable.

    Raises:
        TextureBiasError: no such class (with close matches suggested).
    """
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        idx = int(spec)
        if not 0 <= idx < 1000:
            raise TextureBiasError(f"ImageNet class index {idx} out of range 0..999")
        return idx
    key = spec.strip()
    wnids = imagenet_wnids()
    if key in wnids:
        return wnids.index(key)
    norm = key.lower().replace("_", " ")
    names = [n.lower() for n in imagenet_categories()]
    if norm in names:
        return names.index(norm)
    close = difflib.get_close_matches(norm, names, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    raise TextureBiasError(f"unknown ImageNet class {spec!r}{hint}")


def class_name(index: int) -> str:
    """Human-readable name of ImageNet class ``index``."""
    return imagenet_categories()[index]
