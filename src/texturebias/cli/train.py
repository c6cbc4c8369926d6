"""``texturebias train``: train any registered model with a named recipe, in one process or under torchrun."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from texturebias.cli.common import non_negative_int, positive_int, unit_float

if TYPE_CHECKING:
    from texturebias.train.recipes import TrainConfig


def register(sub: argparse._SubParsersAction) -> None:
    from texturebias.train.recipes import AUGMENTATIONS, RECIPES, parse_lr_steps

    recipes = "; ".join(f"{r.name}: {r.description}" for r in RECIPES.values())
    p = sub.add_parser(
        "train",
        help="train a model on ImageFolder data (IN, SIN, SIN+IN, fine-tuning)",
        description="Train a registered model with SGD + step decay. Several --data folders are concatenated "
        "with one label space (SIN+IN). Runs unchanged under `torchrun --nproc_per_node=N -m texturebias "
        "train ...` (DDP). Recipes (REFERENCE §4; lr scaled with the global batch): " + recipes,
    )
    p.add_argument("--model", metavar="NAME", help="registered model name (see `texturebias models`)")
    p.add_argument(
        "--data",
        action="append",
        type=Path,
        metavar="DIR",
        help="training ImageFolder root; repeat to concatenate (SIN+IN)",
    )
    p.add_argument("--val", type=Path, metavar="DIR", help="validation ImageFolder root (same class folders)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--recipe", choices=tuple(RECIPES), help="named hyper-parameters (default: in90's)")
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--batch-size", type=positive_int, help="GLOBAL batch size over all processes (recipes: 256)")
    p.add_argument("--lr", type=float, help="learning rate (default: recipe lr x batch/256)")
    p.add_argument("--momentum", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--lr-steps", type=parse_lr_steps, metavar="E1,E2", help="epochs where lr is divided (e.g. 30,60)")
    p.add_argument("--lr-gamma", type=float, help="lr factor at each step (default 0.1)")
    p.add_argument("--workers", type=non_negative_int, help="data-loading processes per training process (4)")
    start = p.add_mutually_exclusive_group()
    start.add_argument(
        "--pretrained", action="store_true", default=None, help="start from the model's declared pretrained weights"
    )
    start.add_argument(
        "--scratch",
        dest="pretrained",
        action="store_false",
        help="start from random weights even if the recipe says pretrained",
    )
    start.add_argument("--init", type=Path, metavar="CHECKPOINT", help="start from a checkpoint")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoint_last.pt")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), help="fp32 (default), bf16, fp16 (GPU)")
    p.add_argument("--channels-last", action="store_true", default=None, help="channels-last memory format")
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--deterministic",
        action="store_true",
        default=None,
        help="deterministic GPU kernels (cuDNN/cuBLAS; slower): seeded GPU runs repeat bit for bit",
    )
    p.add_argument("--log-every", type=non_negative_int, metavar="N", help="show the loss every N steps")
    p.add_argument("--tensorboard", action="store_true", default=None, help="also write TensorBoard logs")
    p.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        help="standard: RandomResizedCrop+flip (default); flip: resize/crop+flip; none",
    )
    p.add_argument("--input-size", type=positive_int, help="crop size (default: the model's)")
    p.add_argument("--stylize-prob", type=unit_float, help="probability of stylising a training image on the fly")
    p.add_argument(
        "--style-dir", type=Path, metavar="DIR", help="style images for --stylize-prob (default: styles from the batch)"
    )
    p.add_argument("--stylize-vgg", type=Path, metavar="PATH", help="local vgg_normalised.pth (default: download)")
    p.add_argument("--stylize-decoder", type=Path, metavar="PATH", help="local AdaIN decoder (default: download)")
    p.add_argument(
        "--cache-images",
        action="store_true",
        default=None,
        help="decode every image once and keep it in memory (small data sets; same results, faster)",
    )
    p.add_argument("--device", help="auto (default), cpu, cuda")
    p.set_defaults(
        func=run,
        pretrained=None,
        offline_hints={
            "weights": "pass it with --init CHECKPOINT (the stylization networks with --stylize-vgg PATH and "
            "--stylize-decoder PATH)"
        },
    )


_OVERRIDES = (
    "model", "data", "val", "recipe", "epochs", "batch_size", "lr", "momentum", "weight_decay", "lr_steps",
    "lr_gamma", "workers", "pretrained", "init", "precision", "channels_last", "seed", "deterministic", "log_every",
    "tensorboard", "augment", "input_size", "stylize_prob", "style_dir", "stylize_vgg", "stylize_decoder",
    "cache_images", "device",
)  # fmt: skip


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Build the :class:`TrainConfig`: from the flags, or for ``--resume`` from ``OUT/config.json`` + flags."""
    from texturebias.train.recipes import TrainConfig, load_run_config

    given = {k: getattr(args, k) for k in _OVERRIDES if getattr(args, k) is not None}
    if args.resume and (args.out / "config.json").is_file():
        base = load_run_config(args.out)
        return dataclasses.replace(base, **given, out=args.out, resume=True)
    if "model" not in given or "data" not in given:
        print("texturebias train: error: --model and --data are required (except with --resume)", file=sys.stderr)
        raise SystemExit(2)
    model, data = given.pop("model"), given.pop("data")
    return TrainConfig(model=model, data=data, out=args.out, resume=args.resume, **given)


def run(args: argparse.Namespace) -> int:
    from texturebias.train import train
    from texturebias.utils.distributed import dist_info

    result = train(config_from_args(args))
    if result.metrics and dist_info().is_main:
        last = result.metrics[-1]
        print(f"trained {result.config.model} for {last['epoch']} epochs -> {result.out}")
        if result.best_top1 is not None:
            print(f"best val top-1 {result.best_top1:.2%} (epoch {result.best_epoch}): {result.checkpoint_best}")
        print(f"last checkpoint: {result.checkpoint_last}")
    return 0
