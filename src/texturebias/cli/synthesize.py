"""``texturebias synthesize IMAGE... --out DIR``: Gatys et al. (2015) texture synthesis of images."""

from __future__ import annotations

import argparse
from pathlib import Path

from texturebias.cli.common import add_device_arguments, positive_int


def add_texture_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``synthesize`` and ``scramble --method texture``."""
    from texturebias.texture.layers import DEFAULT_LAYERS

    p.add_argument(
        "--layers",
        nargs="+",
        default=list(DEFAULT_LAYERS),
        metavar="LAYER",
        help="matched layers, e.g. conv1_1 pool1 pool2 (default: conv1_1 pool1 pool2 pool3 pool4)",
    )
    p.add_argument("--iterations", type=int, default=2000, help="L-BFGS iterations (default 2000, the reference)")
    p.add_argument(
        "--size",
        type=positive_int,
        default=256,
        help="rescale the source so that H*W = size^2, aspect kept (default 256, the reference)",
    )
    p.add_argument(
        "--optimizer",
        choices=("scipy", "torch"),
        default="scipy",
        help="scipy: faithful L-BFGS-B, one image at a time; torch: batched projected L-BFGS on the "
        "device (fast mode) (default scipy)",
    )
    p.add_argument("--history", type=positive_int, default=20, help="L-BFGS history size (default 20)")
    p.add_argument(
        "--histogram-matching",
        action="store_true",
        help="match each colour channel's histogram to the source afterwards (100 bins)",
    )
    p.add_argument(
        "--network",
        choices=("vgg_normalised", "torchvision"),
        default="vgg_normalised",
        help="vgg_normalised: DeepTextures/AdaIN vgg_normalised.pth; torchvision: VGG-19 normalised by "
        "the DeepTextures procedure (default vgg_normalised)",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        metavar="PATH",
        help="local weights: vgg_normalised.pth layout, or a torchvision vgg19 state dict with "
        "--network torchvision (default: the declared download)",
    )
    p.add_argument(
        "--padding",
        choices=("zero", "reflect"),
        default="zero",
        help="conv padding of vgg_normalised (zero: Caffe, faithful; reflect: AdaIN port)",
    )
    p.add_argument("--batch-size", type=positive_int, default=8, help="images optimised together (torch method)")
    add_device_arguments(p, precision=True)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synthesize",
        help="synthesize textures from images (Gatys et al. 2015)",
        description="Replace each image by a texture with the same Gram matrices in a normalised, "
        "average-pooled VGG-19: local statistics kept, global shape gone. Writes "
        "OUT/<stem>.png and OUT/synthesis.csv (seed, loss at start and end).",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the white-noise start (image i: seed + i)")
    add_texture_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from texturebias.data.images import expand_image_args
    from texturebias.texture.pipeline import synthesize_files

    records = synthesize_files(
        expand_image_args(args.images),
        args.out,
        network=args.network,
        checkpoint=args.checkpoint,
        layers=args.layers,
        iterations=args.iterations,
        size=args.size,
        method=args.optimizer,
        history=args.history,
        histogram_matching=args.histogram_matching,
        seed=args.seed,
        precision=args.precision,
        device=args.device,
        batch_size=args.batch_size,
        padding=args.padding,
    )
    for r in records:
        res = r.result
        print(
            f"{r.image} -> {r.output}  loss {res.losses[0]:.4g} -> {res.loss:.4g} "
            f"({res.iterations} it, {r.seconds:.1f} s)"
        )
    print(f"wrote {len(records)} texture(s) and {Path(args.out) / 'synthesis.csv'}")
    return 0
