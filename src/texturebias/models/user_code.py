"""A model from the user's own code: ``my_package.module:factory`` or ``path/to/file.py:factory``.

The factory is any callable returning an ``nn.Module`` (it loads its own weights, if any). Preprocessing
comes, first found wins, from a ``preprocessing`` attribute on the factory, then a ``PREPROCESSING`` or
``preprocessing`` attribute of its module — a :class:`Preprocessing` or a dict of its fields
(``mean``, ``std``, ``input_size``, ``resize_size`` or ``crop_pct``, ``interpolation``) applied to the
ImageNet defaults — else the ImageNet defaults; the CLI's ``--mean/--std/...`` flags apply on top.
Nothing is imported until such a name is asked for.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from texturebias.errors import UnknownModelError
from texturebias.models.preprocessing import Preprocessing
from texturebias.models.registry import ModelEntry


def is_user_spec(name: str) -> bool:
    """Whether ``name`` has the ``module:attribute`` or ``file.py:attribute`` form (not a registry name)."""
    if ":" not in name or "://" in name:
        return False
    target, _, attr = name.rpartition(":")
    return bool(target) and attr.isidentifier()


def user_entry(spec: str) -> ModelEntry:
    """The registry entry for a user factory ``target:attribute``.

    Raises:
        UnknownModelError: the module or file cannot be imported, has no such attribute, the attribute is
            not callable, or its preprocessing declaration is invalid.
    """
    target, _, attr = spec.rpartition(":")
    module = _import_target(target)
    factory = getattr(module, attr, None)
    if factory is None:
        raise UnknownModelError(f"{spec}: {target} has no attribute {attr!r}")
    if not callable(factory):
        raise UnknownModelError(f"{spec}: {attr} is a {type(factory).__name__}, not a callable returning nn.Module")
    return ModelEntry(
        name=spec,
        builder=functools.partial(_build, spec, factory),
        family="user",
        description=f"user factory {attr} from {target}",
        preprocessing=_declared_preprocessing(spec, factory, module),
        loads_own_weights=True,
    )


def _import_target(target: str) -> ModuleType:
    looks_like_file = target.endswith(".py") or "/" in target or "\\" in target
    if looks_like_file:
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise UnknownModelError(f"model file not found: {target}")
        # A unique module name per file, so two model.py files in different folders do not collide.
        name = f"texturebias_user_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise UnknownModelError(f"cannot import {target} as a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise UnknownModelError(f"importing {target} failed: {type(exc).__name__}: {exc}") from exc
        return module
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        raise UnknownModelError(f"cannot import module {target!r} ({exc}); is it installed or on PYTHONPATH?") from exc
    except Exception as exc:
        raise UnknownModelError(f"importing {target} failed: {type(exc).__name__}: {exc}") from exc


def _declared_preprocessing(spec: str, factory: Callable[..., Any], module: ModuleType) -> Preprocessing | None:
    for owner, attr in ((factory, "preprocessing"), (module, "PREPROCESSING"), (module, "preprocessing")):
        value = getattr(owner, attr, None)
        if value is None or callable(value) and not isinstance(value, Preprocessing):
            continue
        if isinstance(value, Preprocessing):
            return value
        if isinstance(value, Mapping):
            try:
                return Preprocessing().with_overrides(value)
            except (ValueError, TypeError) as exc:
                raise UnknownModelError(f"{spec}: invalid {attr} {dict(value)}: {exc}") from None
        raise UnknownModelError(f"{spec}: {attr} must be a Preprocessing or a dict, not {type(value).__name__}")
    return None


def _build(spec: str, factory: Callable[..., Any], *, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    # The factory decides about its weights; ``pretrained`` is accepted so create_model can treat every
    # family alike, and only the keyword arguments actually given (e.g. num_classes) are passed on.
    del pretrained
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        if kwargs:
            raise UnknownModelError(f"{spec}: factory does not accept {sorted(kwargs)}: {exc}") from None
        raise
    if not isinstance(model, nn.Module):
        raise UnknownModelError(f"{spec} returned a {type(model).__name__}, not a torch.nn.Module")
    return model
