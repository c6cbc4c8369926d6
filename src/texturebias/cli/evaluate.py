"""``texturebias evaluate``: top-1/top-5 accuracy on an ImageFolder (Resize + CenterCrop protocol)."""

from __future__ import annotations

import argparse
from pathlib import Path

from texturebias.cli.common import (
    add_device_arguments,
    add_model_arguments,
    add_preprocessing_arguments,
    non_negative_int,
    positive_int,
    preprocessing_overrides,
    print_failed,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="top-1/top-5 accuracy of a model on an ImageFolder (e.g. ImageNet val)",
        description="Evaluate a model (declared pretrained weights, or --checkpoint, including checkpoints "
        "written by `texturebias train`) on DIR/<class>/<image> with Resize + CenterCrop from the model's "
        "preprocessing. Class folders are matched by ImageNet WordNet id (n01440764 ...) or by the class "
        "names a training checkpoint records.",
    )
    add_model_arguments(p)
    add_preprocessing_arguments(p)
    p.add_argument("--data", type=Path, required=True, metavar="DIR", help="ImageFolder root")
    p.add_argument("--out", type=Path, metavar="DIR", help="write summary.json, per_class.csv and failed.csv here")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--workers", type=non_negative_int, default=4, help="data-loading processes (default 4)")
    add_device_arguments(p, precision=True)
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from texturebias.train.validate import evaluate_classifier

    result = evaluate_classifier(
        args.model, args.data, checkpoint=args.checkpoint, batch_size=args.batch_size, workers=args.workers,
        device=args.device, precision=args.precision, channels_last=args.channels_last, out=args.out,
        preprocessing_overrides=preprocessing_overrides(args),
    )  # fmt: skip
    m = result.metrics
    print(f"{result.model} on {result.data}: {m.n} images, {len(m.per_class)} classes")
    print(f"top-1 {m.top1:.2%}  top-5 {m.top5:.2%}  loss {m.loss:.4f}")
    print_failed(result.failed, args.out / "failed.csv" if args.out is not None else None)
    if args.out is not None:
        print(f"wrote {args.out / 'summary.json'}, {args.out / 'per_class.csv'} and {args.out / 'failed.csv'} "
              f"({len(result.failed)} unreadable image(s) left out)")  # fmt: skip
    return 0
