"""MODELS: the registry, declared weights, preprocessing records and every model family.

Importing this package registers every family (torchvision, EfficientNet-Lite, SIN ResNet-50s, BagNets,
the demo's small nets; timm on demand). Registration only records builders and weight metadata; nothing
is built or downloaded until :func:`load_model` or :func:`create_model` is called.

Layers (each imports only those above it): ``preprocessing`` and ``weights`` (leaves) → ``registry`` →
the families (``bagnet``, ``adain``, ``sin_resnet``, ``torchvision_zoo``, ``efficientnet_lite``, ``demo``,
``timm_zoo``) → ``factory``. May import: ``errors``, ``utils``.
"""

from texturebias.models.factory import (
    create_model,
    get_model_entry,
    get_weights,
    list_models,
    list_weights,
    load_model,
    resolve_model,
    resolve_preprocessing,
)
from texturebias.models.preprocessing import Preprocessing
from texturebias.models.registry import ModelEntry, register_model
from texturebias.models.weights import WeightRecord, fetch_weights, load_checkpoint, load_into, register_weights

__all__ = [
    "ModelEntry",
    "Preprocessing",
    "WeightRecord",
    "create_model",
    "fetch_weights",
    "get_model_entry",
    "get_weights",
    "list_models",
    "list_weights",
    "load_checkpoint",
    "load_into",
    "load_model",
    "register_model",
    "register_weights",
    "resolve_model",
    "resolve_preprocessing",
]
