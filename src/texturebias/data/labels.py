"""Label spaces: ImageNet-1k (names, WordNet ids, lookup), the 16 entry-level categories, stimulus naming.

The 16 categories of Geirhos et al. (ICLR 2019) and the way a stimulus file name encodes its shape and
texture class live here, not in ``evaluate``, because data sets, training and figures need them too.
"""

from __future__ import annotations

import difflib
import functools
import re
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


def class_names(num_classes: int) -> list[str]:
    """Names for a classifier's outputs: the ImageNet names for 1000 outputs, else ``class_<i>``."""
    if num_classes == 1000:
        return list(imagenet_categories())
    return [f"class_{i}" for i in range(num_classes)]


def class_name(index: int) -> str:
    """Human-readable name of ImageNet class ``index``."""
    return imagenet_categories()[index]


CATEGORIES: tuple[str, ...] = (
    "airplane", "bear", "bicycle", "bird", "boat", "bottle", "car", "cat",
    "chair", "clock", "dog", "elephant", "keyboard", "knife", "oven", "truck",
)  # fmt: skip
"""The 16 entry-level categories, alphabetical: the column order of every 16-way array in texturebias."""

# Experiment prefix of the authors' trial image names: 0001_s5n_s01_0_bird_00_<stimulus>.
_PREFIX = re.compile(r"^\d+_[A-Za-z0-9]+_(?:s\d+|dnn)_[^_]+_[^_]+_\d+_(?P<stimulus>.+)$")
_TRAILING_DIGITS = re.compile(r"\d+$")


def stimulus_name(imagename: str) -> str:
    """The stimulus file name inside an ``imagename``.

    ``0001_s5n_s01_0_bird_00_bird3-bird2.png`` → ``bird3-bird2.png``. Names without the experiment prefix (a plain file
    name or relative path) give their base name.
    """
    base = imagename.replace("\\", "/").rsplit("/", 1)[-1]
    m = _PREFIX.match(base)
    return m.group("stimulus") if m else base


def texture_category(imagename: str) -> str:
    """Texture class of a cue-conflict stimulus: the part after the last ``-``, digits and extension stripped.

    ``bird3-clock2.png`` → ``clock``. For a stimulus without ``-`` (edges, silhouettes) this is the shape class.
    """
    stem = stimulus_name(imagename).rsplit(".", 1)[0]
    return _TRAILING_DIGITS.sub("", stem.rsplit("-", 1)[-1]).lower()
