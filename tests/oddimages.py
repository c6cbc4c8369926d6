"""Build small image folders with every kind of odd file the dataset builders must survive (tests only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Files that cannot be read: name -> expected word in the failure reason.
UNREADABLE = {
    "bad/corrupt.jpg": "not a readable image",
    "bad/truncated.png": "truncated",
    "bad/empty.png": "empty",
    "bad/notes.png": "not a readable image",
}
# Files that load after conversion to RGB.
CONVERTIBLE = [
    "cls_a/cmyk.jpg",
    "cls_a/grey.png",
    "cls_a/palette.png",
    "cls_a/rgba.png",
    "cls_b/deep16.png",
    "cls_b/upper.JPEG",
]


def make_photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random colour image (compresses and stylizes like a photo, unlike white noise)."""
    small = rng.integers(0, 256, size=(max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR))


def make_odd_folder(root: Path, *, n_plain: int = 4, size: tuple[int, int] = (40, 48), seed: int = 0) -> Path:
    """Plain RGB images in two class folders plus every odd case (see UNREADABLE and CONVERTIBLE)."""
    rng = np.random.default_rng(seed)
    h, w = size
    for i in range(n_plain):
        p = root / ("cls_a" if i % 2 == 0 else "cls_b") / f"img{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(make_photo(rng, h, w)).save(p)
    for sub in ("cls_a", "cls_b", "bad"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rgb = Image.fromarray(make_photo(rng, h, w))
    rgb.convert("CMYK").save(root / "cls_a/cmyk.jpg", quality=95)
    rgb.convert("L").save(root / "cls_a/grey.png")
    rgb.convert("P", palette=Image.ADAPTIVE, colors=16).save(root / "cls_a/palette.png")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(root / "cls_a/rgba.png")
    deep = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(deep).save(root / "cls_b/deep16.png")
    rgb.save(root / "cls_b/upper.JPEG", quality=95)
    (root / "bad/corrupt.jpg").write_bytes(bytes(rng.integers(0, 256, 500, dtype=np.uint8)))
    buf = root / "bad/full.tmp"
    rgb.save(buf, format="PNG")
    data = buf.read_bytes()
    buf.unlink()
    (root / "bad/truncated.png").write_bytes(data[: len(data) // 2])
    (root / "bad/empty.png").write_bytes(b"")
    (root / "bad/notes.png").write_text("this is not an image\n")
    (root / "bad/readme.txt").write_text("ignored: not an image extension\n")
    (root / ".hidden.png").write_bytes(b"")
    return root


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative POSIX path -> bytes), hidden ones included."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
