"""The one image loader of texturebias, and image discovery in folders.

Every command reads images through :func:`load_image`, so odd files are handled the same everywhere:
CMYK, greyscale, palette, RGBA, 16-bit and EXIF-rotated images are converted to 8-bit RGB; zero-byte,
truncated, non-image and decompression-bomb files raise :class:`~texturebias.errors.ImageReadError`
with the reason, which callers record (``failed.csv``/``skipped.csv``) or report.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from texturebias.errors import DataError, ImageReadError
from texturebias.utils.io import write_csv
from texturebias.utils.progress import progress

Item = TypeVar("Item")
Loaded = TypeVar("Loaded")

#: Where every job that reads many images records the ones it could not read (columns ``input, reason``).
FAILED_CSV = "failed.csv"

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)

# Images above this many pixels are refused rather than risking the machine's memory (PIL's own
# default warns at ~89 MP and errors at twice that). 16k x 16k covers any real photo or painting.
MAX_PIXELS = 16384 * 16384


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True when the file name has an image extension (case-insensitive: ``.JPEG`` counts)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def find_images(root: str | os.PathLike[str], *, recursive: bool = True) -> list[Path]:
    """All image files under ``root`` in sorted order (by relative path), extensions case-insensitive.

    Hidden files and folders (starting with ``.``) are ignored, so half-written temporary files of an
    interrupted run are never picked up as inputs.

    Raises:
        DataError: ``root`` does not exist or is not a folder.
    """
    base = Path(root)
    if not base.exists():
        raise DataError(f"folder not found: {base}")
    if not base.is_dir():
        raise DataError(f"not a folder: {base}")
    found: list[Path] = []
    if recursive:
        # Symlinked folders are followed (datasets are often assembled from links), but each real folder is
        # visited once: a link back to an ancestor would otherwise repeat images under ever-longer paths.
        seen: set[tuple[int, int]] = set()
        for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
            st = os.stat(dirpath)
            if (st.st_dev, st.st_ino) in seen:
                dirnames[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found.extend(Path(dirpath) / f for f in filenames if not f.startswith(".") and is_image_file(f))
    else:
        found = [p for p in base.iterdir() if p.is_file() and not p.name.startswith(".") and is_image_file(p)]
    return sorted(found, key=lambda p: p.relative_to(base).as_posix())


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / 32-bit greyscale: scale the full range to 8 bit (PIL's convert("L") would clip).
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        arr = np.clip(arr / hi * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        # Composite transparent regions on white, as browsers and viewers display them.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    return img


def load_image(path: str | os.PathLike[str], *, mode: str = "RGB") -> Image.Image:
    """Read an image file fully and return it as an 8-bit PIL image in ``mode`` ("RGB" or "L").

    Args:
        path: The image file.
        mode: "RGB" (default) or "L" (greyscale).

    Raises:
        ImageReadError: missing, empty, truncated, not an image, or too large; the message says which.
    """
    p = Path(path)
    try:
        if not p.exists():
            raise ImageReadError(f"{p}: file not found")
        if p.is_dir():
            raise ImageReadError(f"{p}: is a folder, not an image")
        if not p.is_file():
            raise ImageReadError(f"{p}: not a regular file (a FIFO, socket or device)")
        if p.stat().st_size == 0:
            raise ImageReadError(f"{p}: empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as opened:
                if opened.width * opened.height > MAX_PIXELS:
                    raise ImageReadError(f"{p}: image too large ({opened.width}x{opened.height} pixels)")
                opened.load()
                img = ImageOps.exif_transpose(opened)
                img = _to_rgb(img)
    except ImageReadError:
        raise
    except PermissionError:
        raise ImageReadError(f"{p}: permission denied") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{p}: not a readable image file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageReadError(f"{p}: image too large (decompression-bomb limit)") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated/corrupt data surfaces as OSError
        raise ImageReadError(f"{p}: corrupt or truncated image ({exc})") from None
    if mode == "L":
        return img.convert("L")
    if mode != "RGB":
        raise ValueError(f"unsupported mode {mode!r}")
    return img


class UnreadableImage(NamedTuple):
    """An input image that could not be read: recorded (``failed.csv``) and skipped, never fatal for the others."""

    path: Path
    reason: str

    @classmethod
    def from_error(cls, path: str | os.PathLike[str], exc: ImageReadError) -> UnreadableImage:
        """The record of ``exc`` raised for ``path``; the reason without the ``<path>: `` prefix of the message."""
        message = str(exc)
        prefix = f"{path}: "
        return cls(Path(path), message[len(prefix) :] if message.startswith(prefix) else message)


def readable_or_failed(
    load: Callable[[Item], Loaded], path_of: Callable[[Item], str | os.PathLike[str]] | None = None
) -> Callable[[Item], Loaded | UnreadableImage]:
    """Wrap ``load`` so that an :class:`ImageReadError` becomes an :class:`UnreadableImage` value instead.

    The one mechanism by which a job that reads many images goes on past a bad one: the loader returns the
    record, the caller keeps the good items and collects the records (``failed.csv`` and a count in its summary).

    Args:
        load: Loads one item (a path, or a job whose path ``path_of`` gives).
        path_of: The image path of an item; default: the item itself.
    """

    def guarded(item: Item) -> Loaded | UnreadableImage:
        try:
            return load(item)
        except ImageReadError as exc:
            path = path_of(item) if path_of is not None else item
            return UnreadableImage.from_error(path, exc)  # type: ignore[arg-type]

    return guarded


def check_readable(
    paths: Iterable[str | os.PathLike[str]], *, threads: int | None = None, desc: str | None = None
) -> list[UnreadableImage]:
    """Read every image fully with :func:`load_image` and return the ones that fail, in input order.

    Used where a job must refuse up front rather than skip (training: an epoch must not die at hour three) and
    to re-check inputs recorded as failed before their results are reused. Decoding runs in threads (PIL
    releases the GIL).

    Args:
        paths: Image files.
        threads: Decoding threads (default: the CPU count, at most 8).
        desc: Progress-bar label; ``None`` shows no bar.
    """
    files = [Path(p) for p in paths]
    check = readable_or_failed(lambda p: load_image(p).size)
    n_threads = threads if threads is not None else max(1, min(8, os.cpu_count() or 1))
    if n_threads <= 1 or len(files) <= 1:
        results = [check(p) for p in progress(files, desc=desc, unit="img", disable=True if desc is None else None)]
    else:
        with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="texturebias-check") as pool:
            results = list(progress(pool.map(check, files), total=len(files), desc=desc, unit="img",
                                    disable=True if desc is None else None))  # fmt: skip
    return [r for r in results if isinstance(r, UnreadableImage)]


def describe_unreadable(failed: Sequence[UnreadableImage], *, limit: int = 5) -> str:
    """``"a.png (empty file (0 bytes)); b.jpg (...) ... and 3 more"``: the failures for a one-line message."""
    shown = "; ".join(f"{f.path} ({f.reason})" for f in failed[:limit])
    return shown + (f" ... and {len(failed) - limit} more" if len(failed) > limit else "")


def write_failed_csv(
    out_dir: str | os.PathLike[str], failed: Iterable[UnreadableImage], *, root: str | os.PathLike[str] | None = None
) -> Path:
    """Write ``<out_dir>/failed.csv`` (``input, reason``; header only when nothing failed) atomically.

    Written on every run, so that a failure fixed since the last run does not linger in the folder.

    Args:
        out_dir: The job's output folder.
        failed: The inputs that could not be read.
        root: Write inputs relative to this folder when they lie under it (the folder jobs' convention).
    """

    def name(path: Path) -> str:
        if root is not None:
            try:
                return path.relative_to(root).as_posix()
            except ValueError:
                pass
        return str(path)

    rows = ({"input": name(Path(f.path)), "reason": f.reason} for f in failed)
    return write_csv(Path(out_dir) / FAILED_CSV, rows, ["input", "reason"])


def image_to_array(img: Image.Image) -> np.ndarray:
    """PIL image → float64 HWC (or HW) array in [0, 1], the convention of the distortion recipes."""
    return np.asarray(img, dtype=np.float64) / 255.0


@dataclass(frozen=True)
class ImageFolderIndex:
    """An ImageFolder-style tree: ``root/<class>/<...>/image``, classes sorted by name."""

    root: Path
    classes: tuple[str, ...]
    samples: tuple[tuple[Path, int], ...]

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    def __len__(self) -> int:
        return len(self.samples)


def index_image_folder(root: str | os.PathLike[str], *, allow_empty_classes: bool = False) -> ImageFolderIndex:
    """Index an ImageFolder tree (class = first-level sub-folder), sorted and case-insensitive on extensions.

    Raises:
        DataError: missing folder, no class sub-folders, or (unless allowed) a class without images.
    """
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"dataset folder not found: {base}")
    classes = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{base}: no class sub-folders (expected ImageFolder layout root/<class>/<image>)")
    samples: list[tuple[Path, int]] = []
    empty: list[str] = []
    for idx, cls in enumerate(classes):
        files = find_images(base / cls)
        if not files:
            empty.append(cls)
        samples.extend((f, idx) for f in files)
    if empty and not allow_empty_classes:
        shown = ", ".join(empty[:5]) + (" ..." if len(empty) > 5 else "")
        raise DataError(f"{base}: {len(empty)} class folder(s) contain no images: {shown}")
    if not samples:
        raise DataError(f"{base}: no images found")
    return ImageFolderIndex(root=base, classes=tuple(classes), samples=tuple(samples))


def expand_image_args(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Expand CLI arguments that may be image files or folders into a sorted list of image files."""
    out: list[Path] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            out.extend(find_images(p))
        elif p.exists():
            out.append(p)
        else:
            raise ImageReadError(f"{p}: file not found")
    return out
