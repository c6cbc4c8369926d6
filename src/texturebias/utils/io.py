"""Atomic file writing: a file either appears complete under its final name or not at all."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import numbers
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import torch

from texturebias.errors import TextureBiasError


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
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def require_same_settings(saved: Any, current: Mapping[str, Any], *, what: str, state_file: Path) -> None:
    """Refuse to resume from ``state_file`` when the settings saved in it differ from ``current``.

    Args:
        saved: The settings read back from the interrupted run (anything that is not an equal mapping differs).
        current: The settings of this call.
        what: The job, for the message ("correlation run", "patch search").
        state_file: The partial-state file; the message tells the user to delete it.

    Raises:
        TextureBiasError: naming the settings that changed.
    """

    if saved == current:
        return
    old = saved if isinstance(saved, Mapping) else {}
    changed = ", ".join(k for k in current if old.get(k) != current[k]) or "format"
    raise TextureBiasError(
        f"{state_file.parent} holds an interrupted {what} with other settings ({changed}); "
        f"delete {state_file.name} or choose another output folder"
    )
