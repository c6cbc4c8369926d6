"""What a training run is built from: the model (pretrained, --init or fresh, with a new head), its preprocessing, the
AdaIN batch augmentation of the SIN recipes."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from texturebias.errors import TextureBiasError
from texturebias.models import Preprocessing, create_model, resolve_preprocessing
from texturebias.stylize.adain import AdaIN
from texturebias.stylize.augment import StyleAugment, style_bank
from texturebias.stylize.builder import list_styles
from texturebias.train.recipes import TrainConfig


def effective_preprocessing(config: TrainConfig) -> Preprocessing:
    """The model's preprocessing, with ``input_size``/``resize_size`` overridden by the configuration."""
    base = resolve_preprocessing(config.model)
    if config.input_size is None and config.resize_size is None:
        return base
    size = config.input_size or base.input_size
    resize = config.resize_size or max(size, round(size * base.resize_size / base.input_size))
    return dataclasses.replace(base, input_size=size, resize_size=resize)


def replace_classifier(model: nn.Module, num_classes: int) -> nn.Module:
    """Give ``model`` a freshly initialised ``num_classes``-way classifier (fine-tuning on new classes).

    Uses timm's ``reset_classifier`` when present, else replaces the last ``nn.Linear`` of the model.

    Raises:
        TextureBiasError: no linear classifier found.
    """
    if hasattr(model, "reset_classifier"):
        model.reset_classifier(num_classes)
        return model
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise TextureBiasError(f"{type(model).__name__} has no linear classifier to resize to {num_classes} classes")
    parent_name, _, child = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    setattr(parent, child, nn.Linear(old.in_features, num_classes, bias=old.bias is not None))
    return model


def _num_outputs(model: nn.Module) -> int | None:
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    return last.out_features if last is not None else None


def build_model(config: TrainConfig, num_classes: int) -> nn.Module:
    """The model to train: from scratch, from its pretrained weights, or from ``config.init``; head resized."""
    kw = dict(config.model_kwargs)
    if config.init is not None:
        model = create_model(config.model, checkpoint=config.init, **kw)
    elif config.pretrained:
        model = create_model(config.model, pretrained=True, **kw)
    else:
        return create_model(config.model, num_classes=num_classes, **kw)
    if _num_outputs(model) != num_classes:
        replace_classifier(model, num_classes)
    return model


def build_style_augment(cfg: TrainConfig, device: torch.device, size: int) -> nn.Module:
    """The on-the-fly stylizer of ``cfg``: official AdaIN networks, styles from ``style_dir`` or from the batch."""

    precision = "bf16" if cfg.precision == "bf16" else "fp32"
    model = AdaIN.from_checkpoints(cfg.stylize_vgg, cfg.stylize_decoder, device=device, precision=precision,
                                   channels_last=cfg.channels_last)  # fmt: skip
    if cfg.style_dir is None:
        return StyleAugment(model, None, p=cfg.stylize_prob, alpha=1.0, source="batch")
    styles = list_styles(cfg.style_dir, min_size=size)
    return StyleAugment(model, style_bank(model, list(styles.paths), size=size), p=cfg.stylize_prob, alpha=1.0)
