"""``texturebias heatmap IMAGE...``: exact BagNet class-evidence maps (.npy) and figures."""

from __future__ import annotations

import argparse
from pathlib import Path

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
        "heatmap",
        help="per-pixel class evidence of a BagNet (exact, fast)",
        description="For each image, the logit of a class for the q x q patch centred on every pixel (Brendel & "
        "Bethge 2019), computed exactly in one dense pass. Writes <stem>_<class>.npy, a figure per map "
        "(PNG+PDF), grid.png/pdf and heatmaps.csv.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    add_model_arguments(p, default="bagnet33")
    add_preprocessing_arguments(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--target",
        action="append",
        metavar="CLASS",
        help="class to explain: index, WordNet id or ImageNet name; repeatable or comma-separated",
    )
    group.add_argument(
        "--top",
        type=positive_int,
        default=1,
        metavar="K",
        help="explain each image's top-K predicted classes (default 1)",
    )
    p.add_argument(
        "--resize",
        choices=("always", "never", "auto"),
        default="always",
        help="always: Resize 256 + CenterCrop 224 (paper); never: the whole image at its own size",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_device_arguments(p)
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="fp32 (exact) or bf16 (faster on GPUs/AMX CPUs; see docs/bagnets.md)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from texturebias.data.images import UnreadableImage, expand_image_args
    from texturebias.data.labels import class_index
    from texturebias.explain.heatmaps import heatmaps_for_images

    paths = expand_image_args(args.images)
    if not paths:
        raise TextureBiasError("no images found in the given paths")
    targets = None
    if args.target:
        targets = [class_index(t.strip()) for item in args.target for t in item.split(",") if t.strip()]
    failed: list[UnreadableImage] = []
    results = heatmaps_for_images(
        paths,
        args.out,
        model=args.model,
        checkpoint=args.checkpoint,
        targets=targets,
        top_k=args.top,
        precision=args.precision,
        resize=args.resize,
        device=args.device,
        preprocessing_overrides=preprocessing_overrides(args),
        failed=failed,
    )
    for r in results:
        print(f"{r.image}  {r.class_name} ({r.class_index})  image logit {r.image_logit:.3f}  -> {r.npy}")
    print_failed(failed, Path(args.out) / "failed.csv")
    print(f"{len(results)} map(s) in {args.out} (grid.png, heatmaps.csv), {len(failed)} unreadable image(s) left out")
    return 0
