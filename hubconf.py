"""torch.hub entry points: ``torch.hub.load("<owner>/texturebias", "bagnet33", pretrained=True)``.

The names of the original repositories work as their users expect: ``bagnet9``, ``bagnet17``, ``bagnet33``
(Brendel & Bethge, ICLR 2019; bag-of-local-features-models) and the Stylized-ImageNet ResNet-50s
(Geirhos et al., ICLR 2019; texture-vs-shape) under their registry names ``resnet50_sin``,
``resnet50_sin_in``, ``resnet50_sin_in_in`` and the original ``resnet50_trained_on_SIN``,
``resnet50_trained_on_SIN_and_IN``, ``resnet50_trained_on_SIN_and_IN_then_finetuned_on_IN``.
``pretrained=True`` downloads the declared weights into texturebias's cache with their sha256 checked;
every entry point returns the model in eval mode. Any other registry name works through :func:`model`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

dependencies = ["torch", "torchvision"]

# torch.hub imports this file from the repository root; the package itself lives in src/.
_SRC = Path(__file__).resolve().parent / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))


def _create(name: str, pretrained: bool, **kwargs: Any) -> Any:
    from texturebias.models import create_model

    return create_model(name, pretrained=pretrained, **kwargs)


def model(name: str, pretrained: bool = False, **kwargs: Any) -> Any:
    """Any registered texturebias model by name (see ``texturebias models``)."""
    return _create(name, pretrained, **kwargs)


def bagnet9(pretrained: bool = False, **kwargs: Any) -> Any:
    """BagNet-9: 9x9-pixel receptive field, ImageNet (Brendel & Bethge 2019)."""
    return _create("bagnet9", pretrained, **kwargs)


def bagnet17(pretrained: bool = False, **kwargs: Any) -> Any:
    """BagNet-17: 17x17-pixel receptive field, ImageNet (Brendel & Bethge 2019)."""
    return _create("bagnet17", pretrained, **kwargs)


def bagnet33(pretrained: bool = False, **kwargs: Any) -> Any:
    """BagNet-33: 33x33-pixel receptive field, ImageNet (Brendel & Bethge 2019)."""
    return _create("bagnet33", pretrained, **kwargs)


def resnet50_sin(pretrained: bool = False, **kwargs: Any) -> Any:
    """ResNet-50 trained on Stylized-ImageNet (Geirhos et al. 2019, model A)."""
    return _create("resnet50_sin", pretrained, **kwargs)


def resnet50_sin_in(pretrained: bool = False, **kwargs: Any) -> Any:
    """ResNet-50 trained on Stylized-ImageNet + ImageNet (Geirhos et al. 2019, model B)."""
    return _create("resnet50_sin_in", pretrained, **kwargs)


def resnet50_sin_in_in(pretrained: bool = False, **kwargs: Any) -> Any:
    """ResNet-50 trained on SIN + IN, then fine-tuned on ImageNet (Geirhos et al. 2019, model C)."""
    return _create("resnet50_sin_in_in", pretrained, **kwargs)


# The names texture-vs-shape's README uses.
resnet50_trained_on_SIN = resnet50_sin  # noqa: N816
resnet50_trained_on_SIN_and_IN = resnet50_sin_in  # noqa: N816
resnet50_trained_on_SIN_and_IN_then_finetuned_on_IN = resnet50_sin_in_in  # noqa: N816
