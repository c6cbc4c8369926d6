"""The one image loader: odd files convert or fail with a reason; discovery is sorted and case-insensitive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from texturebias.data.images import find_images, index_image_folder, load_image
from texturebias.errors import DataError, ImageReadError


def _save(img: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def test_modes_are_converted_to_rgb(tmp_path: Path) -> None:
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8))
    cases = {
        "cmyk.jpg": rgb.convert("CMYK"),
        "grey.png": rgb.convert("L"),
        "palette.png": rgb.convert("P"),
        "rgba.png": rgb.convert("RGBA"),
    }
    for name, img in cases.items():
        out = load_image(_save(img, tmp_path / name))
        assert out.mode == "RGB" and out.size == (8, 8), name


def test_sixteen_bit_uses_full_range(tmp_path: Path) -> None:
    arr = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    path = _save(Image.fromarray(arr), tmp_path / "deep.png")
    out = np.asarray(load_image(path))
    assert out[0, 0, 0] == 0 and out[0, 1, 0] == 255 and 126 <= out[1, 0, 0] <= 128


def test_transparent_pixels_composite_on_white(tmp_path: Path) -> None:
    img = Image.new("RGBA", (2, 2), (10, 20, 30, 0))
    out = np.asarray(load_image(_save(img, tmp_path / "t.png")))
    assert (out == 255).all()


def test_bad_files_raise_with_reason(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    good = _save(Image.new("RGB", (64, 64), (1, 2, 3)), tmp_path / "good.jpg", quality=90)
    truncated = tmp_path / "trunc.jpg"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ImageReadError, match="empty file"):
        load_image(empty)
    with pytest.raises(ImageReadError, match="not a readable image"):
        load_image(text)
    with pytest.raises(ImageReadError, match="corrupt or truncated"):
        load_image(truncated)
    with pytest.raises(ImageReadError, match="not found"):
        load_image(tmp_path / "missing.png")


def test_find_images_sorted_case_insensitive_skips_hidden(tmp_path: Path) -> None:
    for rel in ("b/2.JPEG", "a/1.png", "a/0.Jpg", "a/.partial.png", "a/readme.txt", ".hidden/x.png"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)]
    assert found == ["a/0.Jpg", "a/1.png", "b/2.JPEG"]


def test_index_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        index_image_folder(tmp_path / "nope")
    (tmp_path / "flat.png").write_bytes(b"x")
    with pytest.raises(DataError, match="no class sub-folders"):
        index_image_folder(tmp_path)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "1.png").write_bytes(b"x")
    (tmp_path / "dog").mkdir()
    with pytest.raises(DataError, match="contain no images: dog"):
        index_image_folder(tmp_path)
    idx = index_image_folder(tmp_path, allow_empty_classes=True)
    assert idx.classes == ("cat", "dog") and len(idx) == 1


def test_find_images_visits_each_real_folder_once(tmp_path: Path) -> None:
    """A symlink back to an ancestor (or two of them) neither repeats images nor hangs the walk."""
    from PIL import Image

    from texturebias.data.images import find_images

    (tmp_path / "root" / "cat").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "root" / "cat" / "a.png")
    (tmp_path / "root" / "cat" / "loop").symlink_to(tmp_path / "root")
    (tmp_path / "root" / "again").symlink_to(tmp_path / "root")
    assert [p.relative_to(tmp_path / "root").as_posix() for p in find_images(tmp_path / "root")] == ["cat/a.png"]
