"""The demo's building blocks: generated data sets, the miniature stylizer, training and evaluation helpers.

Each step goes through the toolkit's own commands (``stylize``, ``train-decoder``, ``train``); these functions
only choose the sizes and call them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from texturebias.data.images import index_image_folder, load_image
from texturebias.demo import world
from texturebias.demo.config import BAGNET, CNN, DemoSizes
from texturebias.errors import TextureBiasError
from texturebias.models import demo as _demo_models  # noqa: F401  (registers demo_cnn / demo_bagnet)
from texturebias.models import resolve_preprocessing
from texturebias.models.weights import load_checkpoint, load_into
from texturebias.stylize.adain import AdaIN
from texturebias.stylize.builder import stylize_folder
from texturebias.stylize.networks import conv_decoder, efficientnet_lite_encoder, mirrored_decoder, small_vgg_encoder
from texturebias.stylize.train import train_decoder
from texturebias.train.loop import train
from texturebias.train.recipes import TrainConfig
from texturebias.utils.progress import get_logger, progress

log = get_logger("demo")


# ------------------------------------------------------------------------------------------------ helpers
class Clock:
    """Wall time per step, for summary.json (the budget is part of the demo's promise)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.c0 = time.process_time()
        self.steps: dict[str, float] = {}
        # CPU seconds of this process (all threads) per step: on a shared machine wall time says little.
        self.cpu: dict[str, float] = {}

    def step(self, name: str) -> Timer:
        return Timer(self, name)


class Timer:
    """Context manager adding the wall time of its block to a :class:`Clock` entry."""

    def __init__(self, clock: Clock, name: str) -> None:
        self.clock, self.name = clock, name

    def __enter__(self) -> None:
        self.t, self.c = time.perf_counter(), time.process_time()
        log.info("demo: %s ...", self.name)

    def __exit__(self, *exc: object) -> None:
        self.clock.steps[self.name] = round(time.perf_counter() - self.t, 2)
        self.clock.cpu[self.name] = round(time.process_time() - self.c, 2)


def _texture_of(path: Path) -> str:
    """Texture class of a natural/stylized image from its file name ``<shape>-<texture>-<index>.png``."""
    parts = path.stem.split("-")
    return parts[1] if len(parts) >= 3 else ""


# --------------------------------------------------------------------------------------------- data sets
def make_datasets(root: Path, seed: int, sizes: DemoSizes) -> dict[str, Path]:
    """Write every generated set as an ImageFolder under ``root``; returns name → folder."""
    n_conflict = sizes.conflict_per_pair * len(world.SHAPES) * (len(world.SHAPES) - 1)
    plan = [
        ("natural/train", "natural", sizes.n_train, "train"),
        ("natural/test", "natural", sizes.n_test, "test"),
        ("randomised/train", "randomised", sizes.n_train, "train"),
        ("randomised/test", "randomised", sizes.n_test, "test"),
        ("silhouettes/test", "silhouettes", sizes.n_test, "test"),
        ("cue-conflict/test", "cue-conflict", n_conflict, "test"),
        ("texture-probe/train", "texture-probe", sizes.n_probe, "train"),
        ("styles", "styles", sizes.n_styles, "train"),
    ]
    folders = {}
    for name, kind, count, split in plan:
        folder = root / name
        world.write_set(folder, kind, count, seed, split=split, desc=f"generate {name}", workers=sizes.workers,
                        texture_scale=sizes.texture_scale, p_match=sizes.texture_match)  # fmt: skip
        folders[name] = folder
    return folders


# ---------------------------------------------------------------------------------------------- stylizer
def build_stylizer(seed: int, kind: str = "random") -> Any:
    """The demo's AdaIN: a frozen encoder and the decoder to train.

    ``"random"``: a frozen random VGG-style encoder (AdaIN at its relu2_1-like layer) and its mirrored decoder.
    A randomly initialised (Kaiming) encoder was as good as a briefly trained one in the prototype: AdaIN
    needs feature statistics that describe texture, which random conv features already give (cf. Ulyanov
    et al., 2017 on random networks as image priors).

    ``"lite0"``: the stem and blocks 0-2 of the ImageNet-trained EfficientNet-Lite0 (24 channels), the 32-px
    image upsampled x4 inside it so that its features sit at a 32x32 grid, and a plain conv decoder: features
    learned on natural images, as the Stylized-ImageNet stylizer's VGG-19 (issue 18, docs/demo.md).
    """

    if kind == "lite0":
        encoder, style_layers, channels_out, stride = efficientnet_lite_encoder(upto=2, upsample=4)
        torch.manual_seed(seed)
        return AdaIN(encoder, conv_decoder(channels_out, width=64, upsample=stride // 4), style_layers=style_layers)
    if kind != "random":
        raise ValueError(f"unknown demo stylizer {kind!r}")
    channels = (32, 64)
    encoder, style_layers = small_vgg_encoder(channels, convs_per_stage=1, seed=seed)
    torch.manual_seed(seed)
    decoder = mirrored_decoder(channels, convs_per_stage=1)
    return AdaIN(encoder, decoder, style_layers=style_layers)


def make_stylized(folders: dict[str, Path], root: Path, seed: int, sizes: DemoSizes) -> tuple[dict[str, Path], Path]:
    """Train the demo decoder, then stylize the natural train and test sets; returns folders and decoder path."""

    model = build_stylizer(seed, sizes.stylizer)
    result = train_decoder(
        folders["natural/train"],
        folders["styles"],
        root / "stylizer",
        model=model,
        iterations=sizes.decoder_iterations,
        batch_size=sizes.decoder_batch,
        lr=1e-3,
        lr_decay=5e-5,
        style_weight=10.0,
        image_size=sizes.stylize_size,
        crop_size=sizes.stylize_size,
        save_every=max(sizes.decoder_iterations, 1),
        log_every=10,
        seed=seed,
        workers=0,
        device="cpu",
    )

    load_into(model.decoder, load_checkpoint(result.decoder), what=f"decoder {result.decoder}")
    out = {}
    for split in ("train", "test"):
        target = root / "stylized" / split
        stylize_folder(
            folders[f"natural/{split}"],
            folders["styles"],
            target,
            model=model,
            alpha=sizes.stylize_alpha,
            content_size=None if sizes.stylize_size == world.SIZE else sizes.stylize_size,
            crop=None,
            style_size=sizes.stylize_size,
            min_style_size=world.SIZE,
            seed=seed,
            batch_size=64,
            workers=0,
            device="cpu",
            png_compress_level=1,
        )
        out[f"stylized/{split}"] = target
    return out, result.decoder


# -------------------------------------------------------------------------------------------- training
def train_epochs(model: str, n_sets: int, sizes: DemoSizes) -> int:
    """Epochs for a run over ``n_sets`` concatenated sets: about the same number of steps as one set."""
    epochs = sizes.bagnet_epochs if model == BAGNET else sizes.epochs
    return max(1, round(epochs / n_sets))


def train_model(
    model: str, data: Sequence[Path], out: Path, seed: int, sizes: DemoSizes
) -> tuple[nn.Module, tuple[str, ...], Path]:
    """Train with the toolkit's training loop; a finished run in ``out`` is reused (resume is a no-op).

    No validation pass during training: the demo evaluates every model on every test set afterwards.
    """

    n_epochs = train_epochs(model, len(data), sizes)
    cfg = TrainConfig(
        model=model,
        data=list(data),
        out=out,
        val=None,
        epochs=n_epochs,
        batch_size=sizes.batch_size,
        lr=sizes.lr,
        momentum=0.9,
        weight_decay=5e-4,
        # Step decay late in the run: most of the learning happens at the high rate, the last epoch settles.
        lr_steps=(max(1, n_epochs - 1),),
        lr_gamma=0.1,
        workers=0,
        pretrained=False,
        resume=(out / "checkpoint_last.pt").exists(),
        seed=seed,
        log_every=0,
        augment="flip",
        cache_images=True,
        device="cpu",
    )
    result = train(cfg)
    return result.model.eval(), tuple(result.classes), result.checkpoint_last


def train_command(model: str, data: Sequence[Path], out: Path, seed: int, sizes: DemoSizes) -> str:
    """The ``texturebias train`` command line equivalent to :func:`train_model`."""
    d = " ".join(f"--data {p}" for p in data)
    n = train_epochs(model, len(data), sizes)
    return (
        f"texturebias train --model {model} {d} --out {out} --epochs {n} "
        f"--batch-size {sizes.batch_size} --lr {sizes.lr} --weight-decay 5e-4 --lr-steps {max(1, n - 1)} "
        f"--augment flip --cache-images --workers 0 --seed {seed} --device cpu"
    )


# ------------------------------------------------------------------------------------------ evaluation
@dataclass
class EvalSet:
    """A test set loaded once: normalised tensors, labels and file paths."""

    name: str
    x: torch.Tensor
    classes: tuple[str, ...]
    labels: np.ndarray
    paths: list[Path]


def load_eval_set(name: str, root: Path) -> EvalSet:
    """Load every image of an ImageFolder through the toolkit's loader and the demo preprocessing."""

    index = index_image_folder(root)
    tf = resolve_preprocessing(CNN).eval_transform("auto")
    xs = [tf(load_image(p)) for p, _ in progress(index.samples, desc=f"load {name}", unit="img", leave=False)]
    return EvalSet(
        name=name,
        x=torch.stack(xs),
        classes=index.classes,
        labels=np.array([c for _, c in index.samples]),
        paths=[p for p, _ in index.samples],
    )


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Class indices predicted for a batch of normalised images."""
    model.eval()
    out = [model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy()


def accuracy_on(model: nn.Module, model_classes: Sequence[str], data: EvalSet, labels: str = "shape") -> float:
    """Top-1 accuracy; ``labels="texture"`` scores against the texture class in the file name."""
    pred = np.array(model_classes)[predict(model, data.x)]
    if labels == "shape":
        truth = np.array(data.classes)[data.labels]
    else:
        truth = np.array([_texture_of(p) for p in data.paths])
        unknown = sorted(set(truth) - set(world.TEXTURES))
        if unknown:  # a renamed file would otherwise silently count as a wrong answer
            raise TextureBiasError(f"{data.name}: cannot read the texture class from file names ({unknown[:3]})")
    return float((pred == truth).mean())


def cue_conflict_trials(model: nn.Module, model_classes: Sequence[str], data: EvalSet, name: str) -> pd.DataFrame:
    """One row per cue-conflict image in the human trial schema (REFERENCE §3), like the real experiment."""
    pred = np.array(model_classes)[predict(model, data.x)]
    return pd.DataFrame(
        {
            "subj": name,
            "session": "session-1",
            "trial": np.arange(1, len(pred) + 1),
            "rt": np.nan,
            "object_response": pred,
            "category": np.array(data.classes)[data.labels],
            "condition": "0",
            "imagename": [p.name for p in data.paths],
        }
    )
