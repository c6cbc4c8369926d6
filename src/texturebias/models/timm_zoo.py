"""timm models as ``timm/<name>`` (optional: only when timm is installed).

timm is imported lazily — only when a ``timm/`` name is asked for or listed — because importing it costs
seconds. timm's own pretrained weights come from the Hugging Face hub, which texturebias does not reach;
load local files with ``checkpoint=PATH`` (any timm state dict).
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

from torch import nn

from texturebias.models.registry import ModelEntry

PREFIX = "timm/"


def timm_available() -> bool:
    """Whether the optional dependency timm is installed."""
    return importlib.util.find_spec("timm") is not None


def _build(name: str, **kwargs: Any) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False, **kwargs)


def timm_entry(name: str) -> ModelEntry | None:
    """The entry for ``timm/<arch>``, or ``None`` when timm is missing or has no such architecture."""
    if not name.startswith(PREFIX) or not timm_available():
        return None
    import timm

    arch = name[len(PREFIX) :]
    if arch not in timm.list_models():
        return None
    return ModelEntry(
        name=name,
        builder=functools.partial(_build, arch),
        family="timm",
        description=f"timm {arch} (weights: pass --checkpoint)",
    )


def timm_names() -> list[str]:
    """All ``timm/<arch>`` names (empty without timm)."""
    if not timm_available():
        return []
    import timm

    return [PREFIX + n for n in timm.list_models()]
