"""The one progress/logging helper of texturebias.

Every long loop goes through :func:`progress`, so progress bars behave the same everywhere: shown on rank 0
only, hidden when ``TEXTUREBIAS_NO_PROGRESS=1`` (tests, CI logs), written to stderr so stdout stays parseable.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

_LOGGER_NAME = "texturebias"


def progress_enabled() -> bool:
    """Whether progress bars should be shown in this process."""
    if os.environ.get("TEXTUREBIAS_NO_PROGRESS", "").strip() not in ("", "0"):
        return False
    return int(os.environ.get("RANK", "0")) == 0


def progress(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
    disable: bool | None = None,
    leave: bool = True,
) -> tqdm:
    """Wrap ``iterable`` in a tqdm progress bar (on stderr, rank 0 only).

    Args:
        iterable: What to iterate over; may be ``None`` for a manually updated bar.
        total: Number of items when ``iterable`` has no ``len``.
        desc: Short label shown before the bar.
        unit: Unit name ("img", "batch", ...); tqdm shows the rate as ``unit/s``.
        disable: Force the bar off (``True``) or on (``False``); default follows :func:`progress_enabled`.
        leave: Keep the finished bar on screen.

    Returns:
        A tqdm object, iterable like ``iterable``.
    """
    if disable is None:
        disable = not progress_enabled()
    return tqdm(
        iterable, total=total, desc=desc, unit=unit, disable=disable, leave=leave, file=sys.stderr, dynamic_ncols=True
    )


def get_logger(name: str | None = None) -> logging.Logger:
    """Return the package logger (or a child of it), configured once to print to stderr."""
    root = logging.getLogger(_LOGGER_NAME)
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False
    return root if name is None else root.getChild(name)
