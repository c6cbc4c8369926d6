"""texturebias: measure, explain and reduce texture bias in image classifiers.

Public API (more in the sub-packages: ``heatmaps``, ``stylize``, ``evaluate``, ``texture``, ``train``):

>>> import texturebias
>>> model = texturebias.create_model("efficientnet_lite0", pretrained=True)
>>> texturebias.list_models("bagnet*")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "list_models", "resolve_preprocessing", "TextureBiasError"]

if TYPE_CHECKING:
    from texturebias.errors import TextureBiasError
    from texturebias.models import create_model, list_models
    from texturebias.preprocessing import resolve_preprocessing


def __getattr__(name: str) -> Any:
    # Lazy so that `import texturebias` stays cheap and registers nothing until a model is asked for.
    if name in ("create_model", "list_models"):
        from texturebias import models

        return getattr(models, name)
    if name == "resolve_preprocessing":
        from texturebias.preprocessing import resolve_preprocessing

        return resolve_preprocessing
    if name == "TextureBiasError":
        from texturebias.errors import TextureBiasError

        return TextureBiasError
    raise AttributeError(f"module 'texturebias' has no attribute {name!r}")
