"""``texturebias patches --data DIR --classes ...``: the most informative BagNet patches per class."""

from __future__ import annotations

import argparse

from texturebias.cli.common import add_device_arguments, add_model_arguments, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "patches",
        help="most informative BagNet patches per class (paper Fig. 2)",
        description="Stream an ImageFolder (sub-folders named by WordNet id or class index) and find, per class, "
        "the k patches with the highest class logit: one row from images of that class, one from all images. "
        "Writes patches.csv, patches.png/pdf and skipped.csv.",
    )
    add_model_arguments(p, default="bagnet33")
    p.add_argument("--data", required=True, metavar="DIR", help="ImageFolder root")
    p.add_argument(
        "--classes",
        required=True,
        metavar="LIST",
        help="comma-separated classes: indices, WordNet ids or ImageNet names (tench,laptop,...)",
    )
    p.add_argument("--k", type=positive_int, default=7, help="patches per row (default 7)")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_device_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from texturebias.data.labels import class_index, class_name
    from texturebias.explain.patches import informative_patches

    classes = [class_index(c.strip()) for c in args.classes.split(",") if c.strip()]
    result = informative_patches(
        args.data,
        classes,
        args.out,
        model=args.model,
        checkpoint=args.checkpoint,
        k=args.k,
        batch_size=args.batch_size,
        device=args.device,
    )
    for c in result.classes:
        best_own = f"{result.own[c][0].logit:.3f}" if result.own[c] else "-"
        best_all = f"{result.all[c][0].logit:.3f}" if result.all[c] else "-"
        print(f"{class_name(c):<28} best logit: own images {best_own}, all images {best_all}")
    print(f"{result.n_images} images searched, {len(result.skipped)} skipped (skipped.csv); results in {args.out}")
    return 0
