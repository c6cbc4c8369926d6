"""Atomic file writing: a file either appears complete under its final name or not at all."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import numbers
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from texturebias.errors import DataError

if TYPE_CHECKING:
    import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``, on error delete it.

    The temporary name keeps the final suffix so that writers that infer the format from the extension
    (PIL, matplotlib) still work.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".tmp{final.suffix}", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600 files; give results the permissions a plain open() would (0666 & ~umask).
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``path`` atomically when the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def check_output_dir(path: str | os.PathLike[str]) -> Path:
    """Refuse an output folder that cannot be created or written, without creating anything.

    Checked by the CLI for every ``--out``/``OUT_DIR`` before a command loads or computes anything; a command
    that then stops for another reason (a usage error) leaves no empty folder behind.

    Raises:
        DataError: ``path`` is an existing file, a parent is a file, or the folder (or the existing parent it
            would be created in) is not writable.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise DataError(f"output folder {out} is an existing file; choose another --out")
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing != out and not existing.is_dir():
        raise DataError(f"cannot create output folder {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(f"output folder {out} is not writable ({existing}: permission denied)")
    return out


def prepare_output_dir(path: str | os.PathLike[str]) -> Path:
    """Create the output folder ``path`` (and its parents) now, before any work (see :func:`check_output_dir`).

    Every library function that writes an output folder calls this first, so that a folder that cannot be
    created (an existing file in the way, no permission) is one line at once instead of a traceback after the
    inference.

    Raises:
        DataError: ``path`` (or one of its parents) is a file, or the folder cannot be created or written.
    """
    out = check_output_dir(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DataError(f"cannot create output folder {out}: a parent is a file, not a folder") from None
    except OSError as exc:
        raise DataError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    return out


def finite_or_none(x: Any) -> float | None:
    """``float(x)``, or ``None`` for ``None``, NaN and ±inf (JSON has no NaN; ``null`` means "undefined")."""
    if x is None:
        return None
    value = float(x)
    return value if math.isfinite(value) else None


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (Python or NumPy) replaced by ``None`` and NumPy scalars made plain.

    The package's one NaN policy for JSON: an undefined number (a shape bias without decisions, a correlation
    of a constant) is written as ``null``, never as the invalid token ``NaN``.
    """
    if isinstance(obj, Mapping):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return finite_or_none(obj)
    return obj


def write_json(path: str | os.PathLike[str], obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as JSON atomically; NaN and ±inf become ``null`` (see :func:`json_safe`)."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(json_safe(obj), fh, indent=indent, allow_nan=False, sort_keys=False)
        fh.write("\n")
    return Path(path)


def write_csv(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]], fieldnames: Sequence[str]) -> Path:
    """Write dict rows as CSV atomically."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fieldnames))
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return Path(path)


def save_torch(path: str | os.PathLike[str], obj: Any) -> Path:
    """``torch.save`` atomically: an interrupted save never leaves a truncated checkpoint behind."""
    import torch  # here, not at the top: light modules (and `texturebias --help`) use this file without torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def require_same_settings(saved: Any, current: Mapping[str, Any], *, what: str, state_file: Path) -> None:
    """Refuse to resume from (or add to) ``state_file``'s folder when its saved settings differ from ``current``.

    The package's one resume guard: every job that can be resumed or extended records its settings (flags and
    the identity of its input files) and calls this before doing any work.

    Args:
        saved: The settings read back from the interrupted run (anything that is not an equal mapping differs).
        current: The settings of this call.
        what: The job, for the message ("correlation run", "patch search").
        state_file: The partial-state file; the message tells the user to delete it.

    Raises:
        DataError: naming the settings that changed (old -> new).
    """

    if saved == current:
        return
    old = saved if isinstance(saved, Mapping) else {}
    keys = list(current) + [k for k in old if k not in current]

    def show(key: str) -> str:
        a, b = old.get(key), current.get(key)
        if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
            return key  # a file identity or a list: the name says enough
        return f"{key}: {a!r} -> {b!r}"

    changed = ", ".join(show(k) for k in keys if old.get(k) != current.get(k)) or "format"
    raise DataError(
        f"{state_file.parent} holds a {what} made with other settings ({changed}); "
        f"rerun with the same settings, or choose another output folder (or delete {state_file.name})"
    )


def file_identity(path: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    """What makes a file *this* file for the purpose of reusing results: its size and sha256.

    Recorded with every output that the file determines (checkpoints, weights, decoders), so that a file
    rewritten under the same path (``checkpoint_best.pt`` during training) is never mistaken for the old one.
    The path itself is deliberately left out: moving a file does not change what it computes.
    """
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        return {"missing": str(p)}
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return {"size": p.stat().st_size, "sha256": h.hexdigest()}


def folder_identity(path: str | os.PathLike[str] | None, files: Iterable[Path] | None = None) -> dict[str, Any] | None:
    """A cheap identity of a folder's contents: the count and a digest of (relative path, size, mtime) per file.

    Used for inputs such as a style folder where hashing every byte would cost more than the job; any added,
    removed, resized or re-saved file changes it.
    """
    if path is None:
        return None
    root = Path(path)
    listing = sorted(files) if files is not None else sorted(p for p in root.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in listing:
        st = f.stat()
        h.update(f"{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {"files": len(listing), "digest": h.hexdigest()}


def module_digest(module: torch.nn.Module) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes and values): the identity of a network in memory.

    Used where a job receives a ready model instead of files, so that the same weights give the same settings
    however they were loaded.
    """
    import torch

    h = hashlib.sha256()
    for key, value in module.state_dict().items():
        t = value.detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}".encode())
        # Flattened first: a channels_last N x C x 1 x 1 weight counts as contiguous but has stride(-1) != 1,
        # which view(uint8) refuses; the bytes are the same in either memory format.
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
