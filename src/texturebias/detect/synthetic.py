"""A generated detection world in the Pascal VOC devkit layout: scenes of a few coloured shapes.

:func:`write_synthetic_voc` writes ``<root>/VOC<year>/`` with ``JPEGImages/<id>.jpg``, ``Annotations/<id>.xml``
(1-based inclusive boxes, ``difficult`` flags), ``ImageSets/Main/<split>.txt`` and a ``classes.txt`` naming the
shape classes, so every VOC tool of :mod:`texturebias.detect` (and any devkit reader given the class list)
runs on it unchanged. Each scene is a noisy background with 1 to ``max_objects`` non-overlapping shapes; the
class is the shape, the colour is random, so only shape predicts the class. An object drawn with low contrast
against the background is flagged ``difficult`` (what the VOC annotators flag: hard to recognise).

Scenes are a pure function of ``(seed, split, index)``: the same call writes the same files on every machine.
Boxes are the tight bounds of the drawn pixels, so they are exact.

:func:`write_scenes_voc` is the layout writer behind it, for any scene generator passed in as a function (the demo's
textured shapes use it: ``texturebias.demo.scenes``; ``detect`` itself never imports the demo).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from texturebias.detect.voc import CLASSES_FILE, VocAnnotation, VocObject, write_annotation
from texturebias.utils.io import atomic_open, atomic_path
from texturebias.utils.seed import rng_for

#: The shape classes of the generated world (class = shape; colour is random).
SHAPES: tuple[str, ...] = ("square", "circle", "triangle")


@dataclass(frozen=True)
class SyntheticScene:
    """One generated scene: the RGB pixels (H×W×3 uint8) and its annotation."""

    pixels: np.ndarray
    annotation: VocAnnotation


def _shape_mask(shape: str, size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    x0, y0, x1, y1 = box
    if shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=255)
    elif shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=255)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=255)
    elif shape == "cross":
        w, h = x1 - x0, y1 - y0
        draw.rectangle((x0 + w // 3, y0, x1 - w // 3, y1), fill=255)
        draw.rectangle((x0, y0 + h // 3, x1, y1 - h // 3), fill=255)
    elif shape == "diamond":
        draw.polygon([((x0 + x1) / 2, y0), (x1, (y0 + y1) / 2), ((x0 + x1) / 2, y1), (x0, (y0 + y1) / 2)], fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: square, circle, triangle, cross, diamond")
    return mask


def make_scene(
    image_id: str,
    *,
    seed: int = 0,
    split: str = "trainval",
    size: tuple[int, int] = (96, 96),
    classes: Sequence[str] = SHAPES,
    max_objects: int = 3,
    object_size: tuple[int, int] = (16, 40),
    difficult_prob: float = 0.1,
) -> SyntheticScene:
    """Generate one scene (see the module docstring).

    Args:
        image_id: The id written into the annotation (also part of the seed).
        seed: World seed.
        split: Split name (part of the seed, so splits differ).
        size: ``(width, height)``.
        classes: Shapes to draw (``square``, ``circle``, ``triangle``, ``cross``, ``diamond``).
        max_objects: At most this many objects (at least one).
        object_size: Range of object side lengths in pixels.
        difficult_prob: Probability that an object is drawn faintly and flagged ``difficult``.
    """
    rng = rng_for("synthetic-voc", seed, split, image_id)
    width, height = size
    background = rng.integers(40, 216, size=3)
    pixels = np.clip(background + rng.normal(0.0, 12.0, size=(height, width, 3)), 0, 255)
    n = int(rng.integers(1, max_objects + 1))
    placed: list[tuple[int, int, int, int]] = []
    objects: list[VocObject] = []
    for _ in range(n):
        for _attempt in range(30):
            side = int(rng.integers(object_size[0], min(object_size[1], width, height) + 1))
            aspect = float(rng.uniform(0.75, 1.33))
            w = max(4, min(width, int(round(side * aspect))))
            h = max(4, min(height, side))
            x0 = int(rng.integers(0, width - w + 1))
            y0 = int(rng.integers(0, height - h + 1))
            box = (x0, y0, x0 + w - 1, y0 + h - 1)
            if all(box[2] < b[0] - 1 or b[2] < box[0] - 1 or box[3] < b[1] - 1 or b[3] < box[1] - 1 for b in placed):
                break
        else:
            continue  # no room left for another object
        shape = str(classes[int(rng.integers(len(classes)))])
        mask = _shape_mask(shape, (width, height), box)
        bounds = mask.getbbox()  # tight (left, upper, right + 1, lower + 1) of the drawn pixels
        if bounds is None:
            continue
        difficult = bool(rng.random() < difficult_prob)
        colour = rng.integers(0, 256, size=3).astype(np.float64)
        if difficult:
            colour = background + 0.25 * (colour - background)  # faint: hard to see against the background
        elif np.abs(colour - background).max() < 60:
            colour = (background + 128) % 256  # keep normal objects clearly visible
        alpha = np.asarray(mask, dtype=np.float64)[..., None] / 255.0
        texture = colour + rng.normal(0.0, 8.0, size=(height, width, 3))
        pixels = pixels * (1 - alpha) + texture * alpha
        placed.append(box)
        left, upper, right, lower = bounds
        objects.append(VocObject(shape, (float(left), float(upper), float(right - 1), float(lower - 1)), difficult))
    if not objects:  # cannot happen with sane sizes; keep every scene non-empty anyway
        raise ValueError(f"object_size {object_size} does not fit a {width}x{height} image")
    rgb = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
    return SyntheticScene(rgb, VocAnnotation(image_id, width, height, tuple(objects), f"{image_id}.jpg", 3))


def write_synthetic_voc(
    root: str | os.PathLike[str],
    *,
    splits: Mapping[str, int] | None = None,
    year: str = "2007",
    seed: int = 0,
    size: tuple[int, int] = (96, 96),
    classes: Sequence[str] = SHAPES,
    max_objects: int = 3,
    object_size: tuple[int, int] = (16, 40),
    difficult_prob: float = 0.1,
    jpeg_quality: int = 95,
) -> Path:
    """Write a generated detection set in the devkit layout (see the module docstring).

    Args:
        root: Destination; the year folder is ``root/VOC<year>``.
        splits: Image count per image set (default ``{"trainval": 32, "test": 16}``); ``trainval`` is also
            split into ``train`` and ``val`` halves, as in VOC.
        year: Year folder name (``2007`` → ``VOC2007``).
        seed: World seed.
        size: ``(width, height)`` of every image.
        classes: Shape classes.
        max_objects: Objects per scene, at most.
        object_size: Object side range in pixels.
        difficult_prob: Fraction of faint objects flagged ``difficult``.
        jpeg_quality: JPEG quality (4:4:4, no chroma subsampling).

    Returns:
        The year folder (pass it, or ``root``, as ``--voc-root``).
    """

    def render(image_id: str, split: str) -> SyntheticScene:
        return make_scene(image_id, seed=seed, split=split, size=size, classes=classes, max_objects=max_objects,
                          object_size=object_size, difficult_prob=difficult_prob)  # fmt: skip

    return write_scenes_voc(root, render, splits=splits or {"trainval": 32, "test": 16}, year=year, classes=classes,
                            jpeg_quality=jpeg_quality)  # fmt: skip


def write_scenes_voc(
    root: str | os.PathLike[str],
    render: Callable[[str, str], SyntheticScene],
    *,
    splits: Mapping[str, int],
    classes: Sequence[str],
    year: str = "2007",
    jpeg_quality: int = 95,
    skip_existing: bool = False,
) -> Path:
    """Write scenes made by any generator in the devkit layout (the writer behind :func:`write_synthetic_voc`).

    Other generators (e.g. the textured shapes of ``texturebias.demo``) pass their own ``render`` and reuse the
    layout, the XML writer and the id numbering, so every VOC tool reads their output unchanged.

    Args:
        root: Destination; the year folder is ``root/VOC<year>``.
        render: ``render(image_id, split)`` → the scene (pixels + annotation with that id); must be a pure
            function of its arguments for ``skip_existing`` to be safe.
        splits: Image count per image set, written in this order with consecutive ids ``000001``, ...;
            ``trainval`` is also split into ``train`` and ``val`` halves when neither is given, as in VOC.
        classes: Class names, written to ``classes.txt``.
        year: Year folder name (``2007`` → ``VOC2007``).
        jpeg_quality: JPEG quality (4:4:4, no chroma subsampling).
        skip_existing: Keep images whose JPEG and XML already exist (both are written atomically, so an
            interrupted run continues where it stopped).

    Returns:
        The year folder.
    """
    year_dir = Path(root) / f"VOC{year}"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (year_dir / sub).mkdir(parents=True, exist_ok=True)
    lists: dict[str, list[str]] = {}
    next_id = 1
    for split, count in splits.items():
        ids = [f"{next_id + i:06d}" for i in range(count)]
        next_id += count
        lists[split] = ids
        for image_id in ids:
            jpeg, xml = year_dir / "JPEGImages" / f"{image_id}.jpg", year_dir / "Annotations" / f"{image_id}.xml"
            if skip_existing and jpeg.is_file() and xml.is_file():
                continue
            scene = render(image_id, split)
            with atomic_path(jpeg) as tmp:
                Image.fromarray(scene.pixels).save(tmp, format="JPEG", quality=jpeg_quality, subsampling=0)
            write_annotation(xml, scene.annotation, folder=f"VOC{year}")
    if "trainval" in lists and "train" not in lists and "val" not in lists:
        half = (len(lists["trainval"]) + 1) // 2
        lists["train"], lists["val"] = lists["trainval"][:half], lists["trainval"][half:]
    for split, ids in lists.items():
        with atomic_open(year_dir / "ImageSets" / "Main" / f"{split}.txt", "w", encoding="utf-8") as fh:
            fh.write("".join(f"{i}\n" for i in ids))
    with atomic_open(year_dir / CLASSES_FILE, "w", encoding="utf-8") as fh:
        fh.write("".join(f"{c}\n" for c in classes))
    return year_dir
