"""Decorator-based model registry (timm style): one name → one builder + its default weights.

A leaf of ``models``: families import it to register themselves; lookups that need every family loaded
(``get_model_entry``, ``list_models``, ``create_model``) live in :mod:`texturebias.models.factory`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from torch import nn

from texturebias.models.preprocessing import Preprocessing
from texturebias.models.weights import KeyFilter, WeightRecord, register_weights

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    """A registered model.

    Attributes:
        name: Registry name (``resnet50``, ``bagnet33``, ``timm/vit_base_patch16_224`` ...).
        builder: Callable returning an untrained ``nn.Module``; accepts ``num_classes`` and extra kwargs.
        weights: Default pretrained weights, if any.
        family: Model family ("torchvision", "bagnet", "efficientnet_lite", "sin", "timm", "demo").
        description: One line for ``texturebias models``.
        key_filter: Remaps foreign checkpoint keys to this implementation's names.
        preprocessing: Input preprocessing when the model has no weights (else the weights' own).
        loads_own_weights: The builder loads the pretrained weights itself when called with
            ``pretrained=True`` (timm's hub loader, a user's factory) instead of a declared weight record.
        loads_own_checkpoint: The builder reads a local checkpoint itself when called with ``checkpoint=PATH``
            (open_clip: the file holds both towers, and the zero-shot head is computed from the text tower).
    """

    name: str
    builder: Builder
    weights: WeightRecord | None = None
    family: str = ""
    description: str = ""
    key_filter: KeyFilter | None = None
    preprocessing: Preprocessing | None = None
    loads_own_weights: bool = False
    loads_own_checkpoint: bool = False


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str | None = None,
    *,
    weights: WeightRecord | None = None,
    family: str = "",
    description: str = "",
    key_filter: KeyFilter | None = None,
    preprocessing: Preprocessing | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator registering a builder function under ``name`` (default: the function's name)."""

    def decorator(fn: Builder) -> Builder:
        add_model(
            ModelEntry(
                name=name or fn.__name__,
                builder=fn,
                weights=weights,
                family=family,
                description=description or (inspect.getdoc(fn) or "").split("\n")[0],
                key_filter=key_filter,
                preprocessing=preprocessing,
            )
        )
        return fn

    return decorator


_RESERVED: dict[str, str] = {}


def reserve_names(names: Iterable[str], family: str) -> None:
    """Claim ``names`` for a family that registers its entries only on first need (``torchvision``).

    Another family registering one of them fails at once, as it would if the lazy family were registered already.
    """
    for name in names:
        _RESERVED[name] = family


def add_model(entry: ModelEntry) -> None:
    """Register an entry built elsewhere (used for families enumerated from another library)."""
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} registered twice")
    if _RESERVED.get(entry.name, entry.family) != entry.family:
        raise ValueError(f"model {entry.name!r} registered twice (the name is one of {_RESERVED[entry.name]}'s models)")
    _REGISTRY[entry.name] = entry
    if entry.weights is not None:
        register_weights(entry.weights)


def registered_entries() -> dict[str, ModelEntry]:
    """The entries registered so far, by name."""
    return _REGISTRY
