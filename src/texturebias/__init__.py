"""texturebias: measure, explain and reduce texture bias in image classifiers.

Public API (more in the sub-packages, one per job: ``models``, ``data``, ``evaluate``, ``explain``,
``stylize``, ``train``, ``texture``, ``robustness``, ``detect``, ``report``, ``demo``):

>>> import texturebias
>>> model, preprocessing = texturebias.load_model("efficientnet_lite0")
>>> texturebias.list_models("bagnet*")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "TextureBiasError",
    "__version__",
    "create_model",
    "list_models",
    "load_model",
    "resolve_preprocessing",
]

if TYPE_CHECKING:
    from texturebias.errors import TextureBiasError
    from texturebias.models import create_model, list_models, load_model, resolve_preprocessing

# Lazy so that `import texturebias` (and `texturebias --help`) stays cheap: torch loads on first use.
_LAZY = {
    "create_model": "texturebias.models",
    "list_models": "texturebias.models",
    "load_model": "texturebias.models",
    "resolve_preprocessing": "texturebias.models",
    "TextureBiasError": "texturebias.errors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'texturebias' has no attribute {name!r}")
