"""Detection scenes of the generated world: several textured shapes on one background, in the VOC layout.

The demo's miniature of Pascal VOC (issue 16, the SIN paper's Table 2). A scene is a ``size`` x ``size``
background (:func:`texturebias.demo.world.background`) with 1 to ``max_objects`` objects. Each object is drawn
exactly like an image of the classification world: a shape of :data:`~texturebias.demo.world.SHAPES` at a
random pose (:func:`~texturebias.demo.world.shape_mask`, 32-px tile, so objects have the size the backbones
were trained on) filled with a texture (:func:`~texturebias.demo.world.class_texture`), then pasted at a
random place that does not touch the objects already there. The class is the shape. With
``textures="natural"`` shape k wears texture k with probability ``p_match`` (0.9), as in the natural set: the
detection world is the world the natural backbone was trained on, as VOC photographs are ImageNet-like;
``textures="randomised"`` fills every object from the separate texture bank (shape is the only cue).

The box of an object is the tight 0-based inclusive bound of the pixels its shape covers at least half
(the anti-aliased mask >= 0.5); objects never overlap (their whole masks are kept apart), so every box is the
full visible object. No object is flagged ``difficult``. Scenes are a pure function of
``(seed, split, image id)``; :func:`write_detection_voc` writes them through the toolkit's devkit writer
(:func:`texturebias.detect.synthetic.write_scenes_voc`: ``JPEGImages``, ``Annotations`` XML with 1-based
boxes, ``ImageSets/Main``, ``classes.txt``), so ``detect-train`` and ``detect-eval`` read them unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from texturebias.demo import world
from texturebias.detect.synthetic import SyntheticScene, write_scenes_voc
from texturebias.detect.voc import VocAnnotation, VocObject
from texturebias.utils.seed import rng_for

#: Default scene side: room for three objects of the classification world's size (19-29 px across).
SCENE_SIZE = 64
#: Coverage at which a pixel counts as part of the object for its box.
BOX_COVERAGE = 0.5
TEXTURE_RULES = ("natural", "randomised")


@dataclass(frozen=True)
class SceneObject:
    """One object of a scene.

    Attributes:
        shape: Index into :data:`~texturebias.demo.world.SHAPES` (the class).
        texture: Index into :data:`~texturebias.demo.world.TEXTURES`, or -1 for a bank texture.
        box: 0-based inclusive ``(x1, y1, x2, y2)`` of the pixels covered at least half.
        mask: Anti-aliased coverage of the whole scene (``size`` x ``size`` float32 in [0, 1]).
    """

    shape: int
    texture: int
    box: tuple[int, int, int, int]
    mask: np.ndarray


@dataclass(frozen=True)
class DetectionScene:
    """A generated scene: pixels (``size`` x ``size`` x 3 uint8) and its objects."""

    image: np.ndarray
    objects: tuple[SceneObject, ...]

    def annotation(self, image_id: str) -> VocAnnotation:
        """The VOC annotation of the scene (class = shape name, boxes 0-based as :mod:`texturebias.detect.voc`)."""
        h, w = self.image.shape[:2]
        objects = tuple(VocObject(world.SHAPES[o.shape], tuple(float(v) for v in o.box)) for o in self.objects)  # type: ignore[arg-type]
        return VocAnnotation(image_id, w, h, objects, f"{image_id}.jpg", 3)


def _bounds(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight ``(x1, y1, x2, y2)`` (inclusive) of the true pixels of a boolean mask, or None when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def _apart(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int = 1) -> bool:
    """Whether two inclusive boxes are separated by at least ``gap`` empty pixels."""
    return a[2] + gap < b[0] or b[2] + gap < a[0] or a[3] + gap < b[1] or b[3] + gap < a[1]


def make_scene(
    index: int,
    seed: int,
    *,
    split: str = "trainval",
    size: int = SCENE_SIZE,
    max_objects: int = 3,
    textures: str = "natural",
    p_match: float = world.P_MATCH,
    texture_scale: float = 1.0,
) -> DetectionScene:
    """Generate scene ``index`` of a split (see the module docstring).

    Args:
        index: Position in the split (with ``seed`` and ``split``, all the randomness of the scene).
        seed: Demo seed.
        split: Split name (``trainval``, ``test``): different scenes for the same index.
        size: Side of the square scene in pixels (at least the world's 32-px tile).
        max_objects: Objects per scene, at most (at least one is always placed).
        textures: ``natural`` (shape k wears texture k with probability ``p_match``) or ``randomised``
            (bank textures in random colours).
        p_match: Natural rule: probability that shape k wears texture k.
        texture_scale: Textures that many times finer (:mod:`texturebias.demo.world`); 1 is the demo's world.

    Raises:
        ValueError: an unknown texture rule or a scene smaller than the world's tile.
    """
    if textures not in TEXTURE_RULES:
        raise ValueError(f"unknown texture rule {textures!r}; expected one of {', '.join(TEXTURE_RULES)}")
    tile = world.SIZE
    if size < tile:
        raise ValueError(f"scene size {size} is smaller than the world's {tile}-px objects")
    rng = rng_for("texturebias-demo-detection", seed, split, index)
    canvas = world.background(rng, size).astype(np.float64)
    n = len(world.SHAPES)
    wanted = int(rng.integers(1, max_objects + 1))
    objects: list[SceneObject] = []
    taken: list[tuple[int, int, int, int]] = []  # extent of every drawn mask (coverage > 0)
    for _ in range(wanted):
        s = int(rng.integers(n))
        local = world.shape_mask(world.SHAPES[s], rng)
        if textures == "natural":
            t = s if rng.random() < p_match else int((s + rng.integers(1, n)) % n)
            fill = world.class_texture(world.TEXTURES[t], rng, texture_scale)
        else:
            t, fill = -1, world.bank_texture(rng, texture_scale)
        extent = _bounds(local > 0)
        assert extent is not None  # shape_mask always draws a shape of 0.6-0.9 of the half-width
        for _attempt in range(30):
            ox, oy = (int(v) for v in rng.integers(0, size - tile + 1, size=2))
            placed = (extent[0] + ox, extent[1] + oy, extent[2] + ox, extent[3] + oy)
            if all(_apart(placed, other) for other in taken):
                break
        else:
            continue  # no room left for this object
        mask = np.zeros((size, size), dtype=np.float32)
        mask[oy : oy + tile, ox : ox + tile] = local
        region = canvas[oy : oy + tile, ox : ox + tile]
        canvas[oy : oy + tile, ox : ox + tile] = region * (1 - local[..., None]) + fill * local[..., None]
        box = _bounds(mask >= BOX_COVERAGE)
        assert box is not None
        taken.append(placed)
        objects.append(SceneObject(s, t, box, mask))
    image = (np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8)
    return DetectionScene(image, tuple(objects))


def write_detection_voc(
    root: str | os.PathLike[str],
    seed: int,
    *,
    splits: Mapping[str, int],
    size: int = SCENE_SIZE,
    max_objects: int = 3,
    textures: str = "natural",
    texture_scale: float = 1.0,
    p_match: float = world.P_MATCH,
) -> Path:
    """Write scenes in the devkit layout under ``root/VOC2007`` (resumable: finished images are kept).

    Image ids are numbered over the splits in order (``000001`` ...); the scene of an id depends on its split and
    its position in the split, so a run with other counts writes other files: use a fresh ``root`` for them.

    Args:
        root: Destination (``--voc-root`` of ``detect-train``/``detect-eval``).
        seed: Demo seed.
        splits: Image count per image set, e.g. ``{"trainval": 400, "test": 200}``.
        size: Scene side in pixels.
        max_objects: Objects per scene, at most.
        textures: Texture rule (see :func:`make_scene`).
        texture_scale: Textures that many times finer (see :func:`make_scene`).
        p_match: Natural textures: probability that shape k wears texture k (see :func:`make_scene`).

    Returns:
        The year folder ``root/VOC2007``.
    """
    first_id: dict[str, int] = {}
    start = 1
    for split, count in splits.items():
        first_id[split] = start
        start += count

    def render(image_id: str, split: str) -> SyntheticScene:
        scene = make_scene(int(image_id) - first_id[split], seed, split=split, size=size, max_objects=max_objects,
                           textures=textures, texture_scale=texture_scale, p_match=p_match)  # fmt: skip
        return SyntheticScene(scene.image, scene.annotation(image_id))

    return write_scenes_voc(root, render, splits=splits, classes=world.SHAPES, skip_existing=True)
