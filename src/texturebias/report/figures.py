"""The house figure style and the one figure writer (PNG + PDF, atomic, no LaTeX, no pyplot state).

Every package that draws builds a :class:`matplotlib.figure.Figure` itself and hands it to
:func:`save_figure`; :func:`paper_style` gives the Geirhos et al. colours and markers per decision maker.
Nothing here switches a user's matplotlib backend.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from texturebias.utils.io import atomic_path

HUMAN_COLOR = "#a51e37"  # the paper's red for human observers
HUMAN_NAMES = ("humans", "human", "subjects")
_MARKERS = ("o", "s", "^", "v", "P", "X", "<", ">", "h", "*")
_COLORS = ("#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f", "#bcbd22", "#e377c2")


def paper_style(names: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Colour and marker per decision maker: humans in the paper's red diamonds, models in a fixed cycle."""
    styles, k = {}, 0
    for n in names:
        if n.lower() in HUMAN_NAMES:
            styles[n] = (HUMAN_COLOR, "D")
        else:
            styles[n] = (_COLORS[k % len(_COLORS)], _MARKERS[k % len(_MARKERS)])
            k += 1
    return styles


def save_figure(fig: Figure, stem: str | os.PathLike[str], *, dpi: int = 200) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf`` atomically; returns both paths.

    The package's one figure writer: every command that draws goes through it.
    """
    out = []
    for ext in ("png", "pdf"):
        path = Path(f"{stem}.{ext}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=ext)
        out.append(path)
    return out
