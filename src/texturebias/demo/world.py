"""A generated shapes x textures world: a miniature ImageNet whose classes have both a shape and a texture.

Eight shape classes (circle ... arrow) are drawn at random pose on a plain or noisy background and
filled with one of eight texture classes (five procedural patterns and scikit-image's CC0 brick, grass
and gravel photographs), each with its own two-colour palette. The sets mirror the papers' situations
(Geirhos et al., ICLR 2019):

- ``natural``: shape class k wears texture k with probability ``p_match`` (:data:`P_MATCH` = 0.9 by default,
  the demo's first world; the demo now uses 1.0, so texture predicts the class exactly as well as shape does:
  the ImageNet situation, where local texture is a shortcut);
- ``randomised``: textures come from a separate bank with random palettes, independent of the shape
  (the ideal that Stylized-ImageNet approximates);
- ``cue-conflict``: shape A wearing the texture of class B != A, named like the real stimuli
  (``<shape>/<shape><i>-<texture>-<class B><j>.png``) so the cue-conflict code reads both alike;
- ``silhouettes``: shapes filled with one flat colour (shape information only);
- ``texture-probe``: random shapes wearing texture class k, labelled by the *texture* (a probe that
  measures how much class texture an image still carries).

Every image is a pure function of ``(seed, set name, index)`` (:func:`texturebias.utils.seed.rng_for`),
so a set is the same in every process and on every machine. Images are 32 x 32 RGB: at 64 px training
was 4x slower and did not converge in the demo's budget.

``texture_scale`` (default 1) makes every texture that many times finer at the same image size: procedural
patterns' coordinates are multiplied by it, noise textures' smoothing divided by it, photo textures cropped
that many times larger before the resize. It applies to the class textures, the randomised bank and the style
bank alike; shapes are unchanged. The demo uses 3 (``texturebias demo --texture-scale``; issue 18, docs/demo.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from texturebias.utils.io import atomic_path
from texturebias.utils.progress import progress
from texturebias.utils.seed import rng_for

SIZE = 32
# Natural set: probability that shape k wears texture k (``p_match``); other values are the experimental
# ``texturebias demo --texture-match``.
P_MATCH = 0.9
SUPERSAMPLE = 4  # shapes are rasterised at 4x and box-filtered: anti-aliased edges

SHAPES: tuple[str, ...] = ("arrow", "circle", "crescent", "cross", "ellipse", "square", "star", "triangle")
TEXTURES: tuple[str, ...] = ("blobs", "brick", "checker", "dots", "grass", "gravel", "stripes", "waves")

# Which texture class "belongs" to which shape class in the natural set (index k <-> index k).
# Each texture class has its own two-colour palette (RGB in [0, 1]); without palettes a 0.3M-parameter
# CNN does not pick up the texture shortcut within the demo's budget (measured on the prototype).
PALETTES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "blobs": ((0.85, 0.20, 0.20), (0.95, 0.75, 0.30)),
    "brick": ((0.55, 0.25, 0.15), (0.90, 0.65, 0.50)),
    "checker": ((0.10, 0.10, 0.45), (0.85, 0.85, 0.95)),
    "dots": ((0.95, 0.90, 0.35), (0.25, 0.15, 0.55)),
    "grass": ((0.10, 0.35, 0.10), (0.60, 0.85, 0.30)),
    "gravel": ((0.35, 0.35, 0.38), (0.80, 0.78, 0.72)),
    "stripes": ((0.10, 0.55, 0.60), (0.95, 0.95, 0.80)),
    "waves": ((0.60, 0.15, 0.55), (0.30, 0.80, 0.85)),
}
PALETTE_JITTER = 0.12


# --------------------------------------------------------------------------------------------- shapes
def _regular(n: int, r: float = 1.0, phase: float = math.pi / 2) -> np.ndarray:
    a = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _star() -> np.ndarray:
    outer = _regular(5, 1.0)
    inner = _regular(5, 0.42, math.pi / 2 + math.pi / 5)
    return np.stack([outer, inner], axis=1).reshape(-1, 2)


def _crescent() -> np.ndarray:
    # Outer arc of the unit circle, inner arc of a circle of radius 0.8 shifted right: a lune.
    a = np.linspace(math.pi / 2 - 0.0, 3 * math.pi / 2, 24)
    outer = np.stack([np.cos(a), np.sin(a)], axis=1) * np.array([1.0, 1.0])
    b = np.linspace(3 * math.pi / 2, math.pi / 2, 24)
    inner = np.stack([0.35 + 0.75 * np.cos(b) * 0.7, np.sin(b)], axis=1)
    return np.concatenate([outer, inner])


def _cross() -> np.ndarray:
    w, h = 0.32, 0.95
    return np.array(
        [[-w, h], [w, h], [w, w], [h, w], [h, -w], [w, -w], [w, -h], [-w, -h], [-w, -w], [-h, -w], [-h, w], [-w, w]]
    )


def _arrow() -> np.ndarray:
    return np.array([[-1.0, 0.2], [0.15, 0.2], [0.15, 0.6], [1.0, 0.0], [0.15, -0.6], [0.15, -0.2], [-1.0, -0.2]])


def _ellipse() -> np.ndarray:
    a = np.linspace(0, 2 * math.pi, 40, endpoint=False)
    return np.stack([np.cos(a), 0.5 * np.sin(a)], axis=1)


SHAPE_POLYGONS: dict[str, np.ndarray] = {
    "arrow": _arrow(),
    "circle": _regular(40, 0.92),
    "crescent": _crescent(),
    "cross": _cross(),
    "ellipse": _ellipse(),
    "square": _regular(4, 1.0, math.pi / 4) * 0.85,
    "star": _star(),
    "triangle": _regular(3, 1.0) + np.array([0.0, -0.15]),
}


def shape_mask(shape: str, rng: np.random.Generator) -> np.ndarray:
    """Anti-aliased coverage mask (SIZE x SIZE, float in [0, 1]) of ``shape`` at a random pose.

    Scale 0.6-0.9 of the half-width, any rotation, centre jittered while keeping the shape inside.
    """
    poly = SHAPE_POLYGONS[shape]
    half = SIZE / 2
    scale = rng.uniform(0.6, 0.9) * half
    theta = rng.uniform(0, 2 * math.pi)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    pts = poly @ rot.T * scale
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    # Random centre such that the rotated shape stays within the frame (1 px margin).
    cx = rng.uniform(1 - lo[0], SIZE - 1 - hi[0]) if SIZE - 2 > hi[0] - lo[0] else half
    cy = rng.uniform(1 - lo[1], SIZE - 1 - hi[1]) if SIZE - 2 > hi[1] - lo[1] else half
    n = SIZE * SUPERSAMPLE
    # PIL's scanline fill is ~20x faster than skimage.draw.polygon here, and rasterisation was most of the
    # world's generation time. Pixel (i, j) covers [j, j+1) x [i, i+1): shift by half a pixel to its centre.
    big = Image.new("L", (n, n), 0)
    corners = (pts + np.array([cx, cy])) * SUPERSAMPLE - 0.5
    ImageDraw.Draw(big).polygon([(float(x), float(y)) for x, y in corners], fill=255)
    cover = np.asarray(big, dtype=np.float32) / 255.0
    return cover.reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE).mean(axis=(1, 3))


# ------------------------------------------------------------------------------------------- textures
#: A pattern generator: (rng, scale) -> SIZE x SIZE values in [0, 1]; ``scale`` > 1 makes it finer.
Pattern = Callable[[np.random.Generator, float], np.ndarray]

_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)


def _rotated(rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray]:
    t = rng.uniform(0, math.pi)
    xx, yy = _XX * scale, _YY * scale
    return xx * math.cos(t) + yy * math.sin(t), -xx * math.sin(t) + yy * math.cos(t)


def _stripes(rng: np.random.Generator, scale: float) -> np.ndarray:
    u, _ = _rotated(rng, scale)
    period = rng.uniform(4.0, 6.0)
    return (np.sin(2 * math.pi * u / period + rng.uniform(0, 6.3)) > 0).astype(np.float32)


def _dots(rng: np.random.Generator, scale: float) -> np.ndarray:
    u, v = _rotated(rng, scale)
    period = rng.uniform(5.0, 7.0)
    du = (u + rng.uniform(0, period)) % period - period / 2
    dv = (v + rng.uniform(0, period)) % period - period / 2
    radius = rng.uniform(1.3, 1.9)
    return np.clip(radius + 0.5 - np.sqrt(du**2 + dv**2), 0, 1)


def _checker(rng: np.random.Generator, scale: float) -> np.ndarray:
    u, v = _rotated(rng, scale)
    cell = rng.uniform(3.0, 4.5)
    return ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)


def _waves(rng: np.random.Generator, scale: float) -> np.ndarray:
    u, v = _rotated(rng, scale)
    f, g, a = rng.uniform(0.9, 1.3), rng.uniform(0.3, 0.5), rng.uniform(1.5, 2.5)
    return 0.5 + 0.5 * np.sin(f * u + a * np.sin(g * v) + rng.uniform(0, 6.3))


def _blobs(rng: np.random.Generator, scale: float) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.standard_normal((SIZE, SIZE)), rng.uniform(1.5, 2.2) / scale, mode="wrap")
    return (noise > 0).astype(np.float32) * 0.85 + 0.15 * (noise > noise.std()).astype(np.float32)


@cache
def _photo_texture(name: str) -> np.ndarray:
    """scikit-image's CC0 texture photo (512 x 512 grey), contrast-normalised to [0, 1]."""
    import skimage.data

    img = getattr(skimage.data, name)().astype(np.float32)
    lo, hi = np.percentile(img, [2, 98])
    return np.clip((img - lo) / (hi - lo), 0, 1)


def _photo(name: str) -> Pattern:
    def generate(rng: np.random.Generator, scale: float) -> np.ndarray:
        src = _photo_texture(name)
        crop = int(rng.integers(64, 129) * scale)
        y, x = (int(v) for v in rng.integers(0, src.shape[0] - crop, size=2))
        patch = Image.fromarray((src[y : y + crop, x : x + crop] * 255).astype(np.uint8))
        patch = patch.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        arr = np.asarray(patch, dtype=np.float32) / 255.0
        if rng.random() < 0.5:
            arr = arr.T
        lo, hi = np.percentile(arr, [5, 95])
        return np.clip((arr - lo) / max(hi - lo, 1e-3), 0, 1)

    return generate


TEXTURE_PATTERNS: dict[str, Pattern] = {
    "blobs": _blobs,
    "brick": _photo("brick"),
    "checker": _checker,
    "dots": _dots,
    "grass": _photo("grass"),
    "gravel": _photo("gravel"),
    "stripes": _stripes,
    "waves": _waves,
}


def class_texture(texture: str, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """A SIZE x SIZE x 3 texture of class ``texture``: its pattern in its (jittered) two-colour palette.

    ``scale``: the texture is that many times finer (see the module docstring).
    """
    t = TEXTURE_PATTERNS[texture](rng, scale)[..., None]
    a, b = (np.clip(np.asarray(c) + rng.normal(0, PALETTE_JITTER, 3), 0, 1) for c in PALETTES[texture])
    return (a * (1 - t) + b * t).astype(np.float32)


# The separate bank for the texture-randomised set: pattern types that are not texture classes, in random
# palettes, so no texture statistic is tied to a shape class.
def _rings(rng: np.random.Generator, scale: float) -> np.ndarray:
    cx, cy = rng.uniform(-8, 40, size=2)
    period = rng.uniform(3.5, 7.0)
    return 0.5 + 0.5 * np.sin(2 * math.pi * np.hypot(_XX * scale - cx, _YY * scale - cy) / period)


def _plaid(rng: np.random.Generator, scale: float) -> np.ndarray:
    u, v = _rotated(rng, scale)
    p, q = rng.uniform(4, 9, size=2)
    return 0.5 * ((np.sin(2 * math.pi * u / p) > 0.3) + (np.sin(2 * math.pi * v / q) > 0.3)).astype(np.float32)


def _zigzag(rng: np.random.Generator, scale: float) -> np.ndarray:
    u, v = _rotated(rng, scale)
    period, amp = rng.uniform(4, 7), rng.uniform(1.5, 3.5)
    tri = np.abs(((v / period) % 1.0) - 0.5) * 2 * amp
    return (np.floor((u + tri) / rng.uniform(3, 5)) % 2).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.standard_normal((SIZE, SIZE)), rng.uniform(0.7, 3.5) / scale, mode="wrap")
    return np.clip(0.5 + noise / (4 * noise.std() + 1e-6), 0, 1)


def _gradient(rng: np.random.Generator, scale: float) -> np.ndarray:
    u, _ = _rotated(rng, scale)
    return np.clip((u - u.min()) / (np.ptp(u) + 1e-6) + rng.normal(0, 0.05, u.shape), 0, 1)


def _crosshatch(rng: np.random.Generator, scale: float) -> np.ndarray:
    u, v = _rotated(rng, scale)
    p = rng.uniform(3, 6)
    return np.maximum(np.abs(np.sin(math.pi * (u + v) / p)), np.abs(np.sin(math.pi * (u - v) / p))) ** 4


BANK_PATTERNS: tuple[Pattern, ...] = (
    _rings,
    _plaid,
    _zigzag,
    _smooth_noise,
    _gradient,
    _crosshatch,
)


def bank_texture(rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """A texture from the separate bank: a non-class pattern in a random two- or three-colour palette."""
    t = BANK_PATTERNS[int(rng.integers(len(BANK_PATTERNS)))](rng, scale)[..., None]
    a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    out = a * (1 - t) + b * t
    if rng.random() < 0.3:  # a third colour along a smooth field, as in multi-colour paintings
        c = rng.uniform(0, 1, 3)
        w = _smooth_noise(rng, scale)[..., None]
        out = out * (1 - 0.6 * w) + c * 0.6 * w
    return out.astype(np.float32)


def background(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """Plain (a muted colour) or noisy (the same plus smooth low-contrast noise) ``size`` x ``size`` background."""
    grey = rng.uniform(0.15, 0.85)
    colour = np.clip(grey + rng.normal(0, 0.06, 3), 0, 1)
    bg = np.broadcast_to(colour, (size, size, 3)).astype(np.float32)
    if rng.random() < 0.5:
        noise = ndimage.gaussian_filter(rng.standard_normal((size, size, 3)), (1.0, 1.0, 0))
        bg = np.clip(bg + 0.08 * noise / (noise.std() + 1e-6), 0, 1)
    return bg


def compose(mask: np.ndarray, fill: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Alpha-blend a filled shape onto a fresh background; returns uint8 SIZE x SIZE x 3."""
    m = mask[..., None]
    img = background(rng) * (1 - m) + fill * m
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------------------------- samples
@dataclass(frozen=True)
class Sample:
    """One generated image: pixels, its labels and the file name it is written under."""

    image: np.ndarray  # uint8 SIZE x SIZE x 3
    shape: int  # index into SHAPES
    texture: int  # index into TEXTURES, or -1 for a bank texture / flat fill
    label: str  # ImageFolder class folder
    filename: str


SET_KINDS: tuple[str, ...] = ("natural", "randomised", "cue-conflict", "silhouettes", "texture-probe", "styles")


def make_sample(
    kind: str, index: int, seed: int, *, split: str = "train", p_match: float = P_MATCH, texture_scale: float = 1.0
) -> Sample:
    """Generate image ``index`` of a set.

    Args:
        kind: One of :data:`SET_KINDS` (``styles``: full-frame bank textures, the style images of AdaIN).
        index: Position in the set; cue-conflict enumerates (shape, texture) pairs with shape != texture.
        seed: Demo seed.
        split: "train" or "test" (different images for the same index).
        p_match: Natural set: probability that shape k wears texture k.
        texture_scale: Textures that many times finer (module docstring); 1 is the demo's world.
    """
    rng = rng_for("texturebias-demo", seed, kind, split, index)
    n = len(SHAPES)
    if kind == "cue-conflict":
        pair, rep = index % (n * (n - 1)), index // (n * (n - 1))
        s, t_off = divmod(pair, n - 1)
        t = t_off if t_off < s else t_off + 1
        mask = shape_mask(SHAPES[s], rng)
        img = compose(mask, class_texture(TEXTURES[t], rng, texture_scale), rng)
        # Named like the real stimuli, ``<shape><i>-<texture class><j>.png``, where the texture class is the shape
        # class that wears this texture in the natural set (as the real textures come from the 16 categories):
        # ``circle1-brick-star1.png`` is a circle in star's texture (brick), and answering "star" is a texture
        # decision for the toolkit's shape-bias code.
        name = f"{SHAPES[s]}{rep + 1}-{TEXTURES[t]}-{SHAPES[t]}{rep + 1}.png"
        return Sample(img, s, t, SHAPES[s], name)
    if kind == "styles":
        return Sample(
            (bank_texture(rng, texture_scale) * 255 + 0.5).astype(np.uint8), -1, -1, "styles", f"style{index:05d}.png"
        )
    s = int(rng.integers(n))
    mask = shape_mask(SHAPES[s], rng)
    if kind == "natural":
        t = s if rng.random() < p_match else int((s + rng.integers(1, n)) % n)
        img = compose(mask, class_texture(TEXTURES[t], rng, texture_scale), rng)
        return Sample(img, s, t, SHAPES[s], f"{SHAPES[s]}-{TEXTURES[t]}-{index:05d}.png")
    if kind == "randomised":
        img = compose(mask, bank_texture(rng, texture_scale), rng)
        return Sample(img, s, -1, SHAPES[s], f"{SHAPES[s]}-bank-{index:05d}.png")
    if kind == "silhouettes":
        colour = np.clip(rng.uniform(0, 1, 3), 0, 1).astype(np.float32)
        img = compose(mask, np.broadcast_to(colour, (SIZE, SIZE, 3)), rng)
        return Sample(img, s, -1, SHAPES[s], f"{SHAPES[s]}-flat-{index:05d}.png")
    if kind == "texture-probe":
        t = int(rng.integers(n))
        img = compose(mask, class_texture(TEXTURES[t], rng, texture_scale), rng)
        return Sample(img, s, t, TEXTURES[t], f"{TEXTURES[t]}-{SHAPES[s]}-{index:05d}.png")
    raise ValueError(f"unknown set kind {kind!r}; expected one of {', '.join(SET_KINDS)}")


def _write_range(
    root: Path, kind: str, seed: int, split: str, start: int, stop: int, texture_scale: float, p_match: float
) -> int:
    """Write images ``start..stop-1`` of a set (skipping existing files); returns how many were handled."""
    for i in range(start, stop):
        sample = make_sample(kind, i, seed, split=split, p_match=p_match, texture_scale=texture_scale)
        path = root / sample.label / sample.filename
        if not path.exists():
            with atomic_path(path) as tmp:
                Image.fromarray(sample.image).save(tmp, compress_level=1)
    return stop - start


def write_set(
    root: str | Path,
    kind: str,
    count: int,
    seed: int,
    *,
    split: str = "train",
    desc: str | None = None,
    workers: int = 0,
    texture_scale: float = 1.0,
    p_match: float = P_MATCH,
) -> int:
    """Write ``count`` images of a set as an ImageFolder (``root/<class>/<file>.png``); resumable.

    Each PNG is written atomically and files that already exist are kept, so an interrupted run continues
    where it stopped (every image is a pure function of its index: the result is the same). A finished set
    leaves a hidden marker (ignored by the image finders) and is skipped entirely on the next run.

    Args:
        root: ImageFolder root to write.
        kind: One of :data:`SET_KINDS`.
        count: Number of images.
        seed: Demo seed.
        split: "train" or "test".
        desc: Progress-bar label.
        workers: Processes generating in parallel (0: in this process). The files do not depend on it.
        texture_scale: Textures that many times finer (module docstring).
        p_match: Natural set: probability that shape k wears texture k (other sets ignore it).

    Returns:
        The number of images in the set.
    """
    root = Path(root)
    # The scale is in the marker only when it is not 1, so sets written before it existed stay complete.
    scaled = "" if texture_scale == 1 else f"-texture{texture_scale:g}"
    if kind == "natural" and p_match != P_MATCH:  # likewise for the match probability
        scaled += f"-match{p_match:g}"
    marker = root / f".complete-{kind}-{split}-seed{seed}-n{count}{scaled}"
    if marker.exists():
        return count
    classes = ["styles"] if kind == "styles" else list(TEXTURES if kind == "texture-probe" else SHAPES)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
    chunk = 250
    ranges = [(a, min(a + chunk, count)) for a in range(0, count, chunk)]
    with progress(total=count, desc=desc or f"generate {kind}/{split}", unit="img") as bar:
        if workers > 1 and len(ranges) > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # fork: the children only run numpy/PIL code and inherit the imported modules (no re-import cost).
            ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
            with ProcessPoolExecutor(min(workers, len(ranges)), mp_context=ctx) as pool:
                jobs = [pool.submit(_write_range, root, kind, seed, split, a, b, texture_scale, p_match)
                        for a, b in ranges]  # fmt: skip
                for job in jobs:
                    bar.update(job.result())
        else:
            for a, b in ranges:
                bar.update(_write_range(root, kind, seed, split, a, b, texture_scale, p_match))
    marker.touch()
    return count
