"""timm models as ``timm/<arch>[.<tag>]`` (optional: only when timm is installed).

timm is imported lazily — only when a ``timm/`` name is asked for or listed — because importing it costs
seconds. Each name carries timm's own pretrained configuration: its mean, std, input size, crop
percentage (``resize_size = floor(input_size / crop_pct)``, timm's rule) and interpolation become the
entry's :class:`Preprocessing`, so a ViT is measured with mean 0.5 and bicubic resizing, not with the
ResNet recipe. ``pretrained=True`` loads the weights through timm's own loader (Hugging Face hub cache,
``HF_HUB_OFFLINE`` and ``pretrained_cfg_overlay=dict(file=...)`` work as in timm); ``checkpoint=PATH``
loads any local timm state dict instead.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

from torch import nn

from texturebias.errors import DownloadError, UnknownModelError
from texturebias.models.preprocessing import Preprocessing
from texturebias.models.registry import ModelEntry

PREFIX = "timm/"


def timm_available() -> bool:
    """Whether the optional dependency timm is installed."""
    return importlib.util.find_spec("timm") is not None


def preprocessing_from_timm(config: Any) -> Preprocessing:
    """A :class:`Preprocessing` from a timm pretrained config or data config (dataclass or dict).

    Reads ``input_size`` (C, H, W; square only), ``crop_pct``, ``mean``, ``std`` and ``interpolation``, the
    keys :func:`timm.data.resolve_data_config` returns, with timm's defaults for missing ones.

    Raises:
        UnknownModelError: a non-square input size or a crop mode other than "center", which the toolkit's
            Resize + CenterCrop transform cannot reproduce.
    """
    cfg = config if isinstance(config, dict) else config.to_dict()
    _, height, width = cfg.get("input_size") or (3, 224, 224)
    if height != width:
        raise UnknownModelError(f"timm input size {height}x{width} is not square; not supported")
    crop_mode = cfg.get("crop_mode") or "center"
    if crop_mode != "center":
        raise UnknownModelError(f"timm crop_mode {crop_mode!r} is not supported (only 'center')")
    interpolation = cfg.get("interpolation") or "bilinear"
    return Preprocessing.from_crop_pct(
        input_size=int(height),
        crop_pct=float(cfg.get("crop_pct") or 0.875),
        mean=tuple(float(v) for v in cfg.get("mean") or (0.485, 0.456, 0.406)),  # type: ignore[arg-type]
        std=tuple(float(v) for v in cfg.get("std") or (0.229, 0.224, 0.225)),  # type: ignore[arg-type]
        interpolation="bicubic" if interpolation == "random" else interpolation,
    )


def _build(name: str, *, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    import timm

    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as exc:  # timm raises whatever the hub client or torch.hub raise (offline, 404, ...)
        cfg = _pretrained_cfg(name)
        hub_id = getattr(cfg, "hf_hub_id", None) or getattr(cfg, "url", None) or name
        first = (str(exc).strip().splitlines() or [""])[0]
        raise DownloadError(
            f"timm weights for {name} could not be loaded ({type(exc).__name__}: {first[:200]}); download "
            f"{hub_id} into the Hugging Face cache on a machine with network (`hf download {hub_id}`) or pass "
            "--checkpoint FILE"
        ) from None


def _pretrained_cfg(name: str) -> Any:
    from timm.models import get_pretrained_cfg

    try:
        return get_pretrained_cfg(name)
    except RuntimeError:
        return None


def timm_entry(name: str) -> ModelEntry | None:
    """The entry for ``timm/<arch>[.<tag>]``, or ``None`` when timm is missing or has no such architecture.

    Raises:
        UnknownModelError: the architecture exists but has no pretrained tag ``<tag>`` (lists the tags).
    """
    if not name.startswith(PREFIX) or not timm_available():
        return None
    import timm
    from timm.models import split_model_name_tag

    model_name = name[len(PREFIX) :]
    arch, tag = split_model_name_tag(model_name)
    if arch not in timm.list_models():
        return None
    cfg = _pretrained_cfg(model_name)
    if cfg is None and tag:
        tags = [t.split(".", 1)[1] for t in timm.list_pretrained(f"{arch}.*")]
        raise UnknownModelError(f"timm has no weights {model_name!r}; tags of {arch}: {', '.join(tags) or 'none'}")
    preprocessing = preprocessing_from_timm(cfg) if cfg is not None else Preprocessing()
    source = getattr(cfg, "hf_hub_id", None) or (f"{arch}.{cfg.tag}" if cfg is not None and cfg.tag else arch)
    return ModelEntry(
        name=name,
        builder=functools.partial(_build, model_name),
        family="timm",
        description=f"timm {model_name} (weights: {source} via timm's hub loader, or --checkpoint)",
        preprocessing=preprocessing,
        loads_own_weights=cfg is not None,
    )


def timm_names() -> list[str]:
    """All ``timm/<arch>`` names (empty without timm)."""
    if not timm_available():
        return []
    import timm

    return [PREFIX + n for n in timm.list_models()]
