"""Training configuration and the named recipes of the SIN paper (REFERENCE §4).

A recipe is a set of defaults; every field given explicitly (CLI flag or keyword) wins. The learning rate
of a recipe is quoted for a global batch of 256 and scaled linearly with the actual global batch (Goyal et
al., 2017), as the academic ImageNet protocol does.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from texturebias.errors import TextureBiasError

Augment = Literal["standard", "flip", "none"]
AUGMENTATIONS: tuple[str, ...] = ("standard", "flip", "none")

#: Global batch size the recipes' learning rates refer to.
REFERENCE_BATCH = 256


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of a published training run (REFERENCE §4).

    Attributes:
        name: Recipe name used on the command line.
        description: What the recipe reproduces.
        epochs: Total epochs.
        base_lr: Learning rate at a global batch of :data:`REFERENCE_BATCH`.
        lr_steps: Epochs after which the learning rate is multiplied by ``lr_gamma``.
        pretrained: Whether training starts from the model's declared ImageNet weights.
    """

    name: str
    description: str
    epochs: int
    base_lr: float
    lr_steps: tuple[int, ...]
    pretrained: bool
    batch_size: int = REFERENCE_BATCH
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_gamma: float = 0.1


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("in90", "ImageNet from scratch, academic protocol (torchvision ResNet-50: 76.13 / 92.86)",
               epochs=90, base_lr=0.1, lr_steps=(30, 60), pretrained=False),
        Recipe("sin60", "Stylized-ImageNet, model A (starts from IN weights; 60.18 / 82.62 on IN)",
               epochs=60, base_lr=0.1, lr_steps=(20, 40), pretrained=True),
        Recipe("sin-in45", "SIN+IN concatenated, model B (starts from IN weights; 74.59 / 92.14 on IN)",
               epochs=45, base_lr=0.1, lr_steps=(15, 30), pretrained=True),
        Recipe("finetune60", "fine-tune model B on IN, model C 'Shape-ResNet' (76.72 / 93.28); needs --init B",
               epochs=60, base_lr=0.01, lr_steps=(30,), pretrained=False),
    )
}  # fmt: skip


@dataclass
class TrainConfig:
    """Everything a training run depends on; written to ``OUT/config.json``.

    Fields left at ``None`` are filled by :func:`resolve_config` from the recipe (or the academic ImageNet
    defaults when no recipe is given) and from the model's preprocessing.

    Attributes:
        model: Registered model name (``resnet50``, ``bagnet33``, ``timm/...``).
        data: Training ImageFolder roots; several are concatenated with one label space (SIN+IN).
        out: Output folder (config, metrics, checkpoints).
        val: Validation ImageFolder root (same class names), or ``None`` to skip validation.
        recipe: ``in90``, ``sin60``, ``sin-in45``, ``finetune60`` or ``None``.
        epochs: Total epochs (a resumed run continues up to this number).
        batch_size: GLOBAL batch size (summed over all processes); must be divisible by the world size.
        lr: Learning rate; default: the recipe's base lr × batch_size / 256.
        momentum: SGD momentum.
        weight_decay: SGD weight decay (applied to all parameters, as in the reference script).
        lr_steps: Epochs after which the lr is multiplied by ``lr_gamma``.
        lr_gamma: Step-decay factor.
        workers: Data-loading worker processes per training process.
        pretrained: Start from the model's declared pretrained weights (head replaced when the class count differs).
        init: Start from this checkpoint instead (any format ``create_model`` loads, including ours).
        resume: Continue the run in ``out`` from ``checkpoint_last.pt``.
        precision: ``fp32``, ``bf16`` (CPU AMX or GPU) or ``fp16`` (GPU, with a gradient scaler).
        channels_last: Use the channels-last memory format (faster convolutions on GPU and AMX CPUs).
        seed: Seed of initialisation, shuffling and augmentation.
        deterministic: Deterministic GPU kernels (cuDNN, cuBLAS; slower), so that two seeded GPU runs match bit
            for bit where PyTorch has deterministic kernels
            (:func:`~texturebias.utils.device.deterministic_algorithms`). CPU runs are deterministic anyway.
        log_every: Log the running training loss every this many steps (0: never).
        tensorboard: Also write TensorBoard scalars to ``out/tensorboard`` (needs the tensorboard package).
        augment: ``standard`` (RandomResizedCrop + flip), ``flip`` (eval resize/crop + flip) or ``none``.
        input_size: Training/eval crop size; default: the model's preprocessing (224 for ImageNet models).
        resize_size: Eval resize before the centre crop; default: the model's, scaled with ``input_size``.
        stylize_prob: Probability of stylising a training image on the fly (AdaIN, batched on the device,
            :class:`texturebias.stylize.augment.StyleAugment`); 0 disables it.
        style_dir: Folder of style images for on-the-fly stylisation; ``None`` takes each stylised image's
            style from another image of the same batch.
        stylize_vgg: Local ``vgg_normalised.pth`` for the stylizer (``None``: the declared download).
        stylize_decoder: Local AdaIN decoder weights (``None``: the declared download).
        cache_images: Decode and preprocess every training/validation image once and keep it in memory
            (small data sets such as the demo's; the same tensors as without the cache, several times faster
            when decoding dominates). Needs RAM for the whole set: not for ImageNet.
        device: ``auto``, ``cpu``, ``cuda`` (under torchrun every process uses ``cuda:LOCAL_RANK``).
        model_kwargs: Extra keyword arguments for the model builder.
    """

    model: str
    data: list[Path]
    out: Path
    val: Path | None = None
    recipe: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    lr_steps: tuple[int, ...] | None = None
    lr_gamma: float | None = None
    workers: int = 4
    pretrained: bool | None = None
    init: Path | None = None
    resume: bool = False
    precision: str = "fp32"
    channels_last: bool = False
    seed: int = 0
    deterministic: bool = False
    log_every: int = 100
    tensorboard: bool = False
    augment: str = "standard"
    input_size: int | None = None
    resize_size: int | None = None
    stylize_prob: float = 0.0
    style_dir: Path | None = None
    stylize_vgg: Path | None = None
    stylize_decoder: Path | None = None
    cache_images: bool = False
    device: str = "auto"
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (paths as strings, tuples as lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, os.PathLike):
                value = str(value)
            elif isinstance(value, list | tuple):
                value = [str(v) if isinstance(v, os.PathLike) else v for v in value]
            out[f.name] = value
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_json`."""
        kw = dict(obj)
        kw["data"] = [Path(p) for p in kw["data"]]
        kw["out"] = Path(kw["out"])
        for key in ("val", "init", "style_dir", "stylize_vgg", "stylize_decoder"):
            kw[key] = Path(kw[key]) if kw.get(key) is not None else None
        if kw.get("lr_steps") is not None:
            kw["lr_steps"] = tuple(int(s) for s in kw["lr_steps"])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in kw.items() if k in known})


def get_recipe(name: str) -> Recipe:
    """The named recipe.

    Raises:
        TextureBiasError: unknown name (the message lists the known ones).
    """
    try:
        return RECIPES[name]
    except KeyError:
        raise TextureBiasError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}") from None


def resolve_config(config: TrainConfig) -> TrainConfig:
    """Fill unset fields from the recipe (or the in90 defaults) and check the values.

    The learning rate, when not given, is the recipe's base lr scaled linearly with ``batch_size / 256``.

    Raises:
        TextureBiasError: unknown recipe, unknown augmentation, inconsistent or out-of-range values.
    """
    recipe = get_recipe(config.recipe) if config.recipe is not None else RECIPES["in90"]
    c = dataclasses.replace(config)
    c.data = [Path(p) for p in c.data]
    c.out = Path(c.out)
    if c.epochs is None:
        c.epochs = recipe.epochs
    if c.batch_size is None:
        c.batch_size = recipe.batch_size
    if c.lr is None:
        c.lr = recipe.base_lr * c.batch_size / REFERENCE_BATCH
    if c.momentum is None:
        c.momentum = recipe.momentum
    if c.weight_decay is None:
        c.weight_decay = recipe.weight_decay
    if c.lr_steps is None:
        c.lr_steps = recipe.lr_steps
    c.lr_steps = tuple(sorted(int(s) for s in c.lr_steps))
    if c.lr_gamma is None:
        c.lr_gamma = recipe.lr_gamma
    if c.pretrained is None:
        # An explicit --init replaces the recipe's "start from ImageNet weights".
        c.pretrained = recipe.pretrained and c.init is None
    if c.recipe == "finetune60" and c.init is None and not c.pretrained:
        # Fine-tuning from random weights with lr 0.01 would silently train a poor model.
        raise TextureBiasError(
            "recipe finetune60 fine-tunes model B: pass --init CHECKPOINT (e.g. the sin-in45 run's "
            "checkpoint_last.pt), or --pretrained for a model with declared weights such as resnet50_sin_in"
        )
    if c.pretrained and c.init is not None:
        raise TextureBiasError("give either pretrained weights or --init CHECKPOINT, not both")
    if not c.data:
        raise TextureBiasError("no training data given (--data DIR)")
    if c.epochs < 1 or c.batch_size < 1:
        raise TextureBiasError("epochs and batch size must be >= 1")
    if c.lr <= 0 or c.momentum < 0 or c.weight_decay < 0 or not 0 < c.lr_gamma <= 1:
        raise TextureBiasError("need lr > 0, momentum >= 0, weight decay >= 0 and 0 < lr gamma <= 1")
    if any(s < 1 for s in c.lr_steps):
        raise TextureBiasError(f"lr steps must be epochs >= 1, got {list(c.lr_steps)}")
    if c.augment not in AUGMENTATIONS:
        raise TextureBiasError(f"unknown augmentation {c.augment!r}; choose {', '.join(AUGMENTATIONS)}")
    if c.precision not in ("fp32", "bf16", "fp16"):
        raise TextureBiasError(f"unknown precision {c.precision!r}; choose fp32, bf16 or fp16")
    if not 0.0 <= c.stylize_prob <= 1.0:
        raise TextureBiasError(f"stylize probability must be in [0, 1], got {c.stylize_prob}")
    if c.workers < 0:
        raise TextureBiasError("workers must be >= 0")
    return c


def parse_lr_steps(text: str) -> tuple[int, ...]:
    """``"30,60"`` → ``(30, 60)``; an empty string means no decay."""
    try:
        return tuple(int(s) for s in text.replace(" ", "").split(",") if s)
    except ValueError:
        raise TextureBiasError(f"--lr-steps expects comma-separated epochs like 30,60, got {text!r}") from None


def load_run_config(out: str | os.PathLike[str]) -> TrainConfig:
    """The configuration a run wrote to ``OUT/config.json`` (used by ``train --resume --out OUT``).

    Raises:
        TextureBiasError: missing or unreadable file.
    """
    import json

    path = Path(out) / "config.json"
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        return TrainConfig.from_json(obj)
    except FileNotFoundError:
        raise TextureBiasError(f"{path} not found: is {out} the --out folder of a training run?") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise TextureBiasError(f"{path}: not a training configuration ({exc})") from None
