"""Model zoo: registry, declared weights and model families.

Importing this package registers every family (torchvision, EfficientNet-Lite, SIN ResNet-50s, BagNets,
timm when installed). Registration only records builders and weight metadata; nothing is built or
downloaded until :func:`create_model` is called.
"""

from texturebias.models import adain, bagnet, demo, efficientnet_lite, sin_resnet, torchvision_zoo  # noqa: F401
from texturebias.models.registry import ModelEntry, create_model, get_model_entry, list_models, register_model
from texturebias.models.weights import (
    WeightRecord,
    fetch_weights,
    get_weights,
    list_weights,
    load_checkpoint,
    load_into,
    register_weights,
)

__all__ = [
    "ModelEntry",
    "WeightRecord",
    "create_model",
    "fetch_weights",
    "get_model_entry",
    "get_weights",
    "list_models",
    "list_weights",
    "load_checkpoint",
    "load_into",
    "register_model",
    "register_weights",
]
