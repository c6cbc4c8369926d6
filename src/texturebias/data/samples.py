"""Sample photos bundled with scikit-image (public domain / CC0), used by examples and tests."""

from __future__ import annotations

from pathlib import Path

SAMPLE_PHOTOS: tuple[str, ...] = ("chelsea.png", "coffee.png")


def sample_photo_paths() -> list[Path]:
    """Paths of scikit-image's cat (``chelsea``) and coffee (``coffee``) photos, installed with the package."""
    import skimage.data

    base = Path(skimage.data.__file__).parent
    paths = [base / name for name in SAMPLE_PHOTOS]
    return [p for p in paths if p.exists()]
