"""``texturebias stylize CONTENT_DIR STYLE_DIR OUT_DIR``: build Stylized-ImageNet (or any stylized folder)."""

from __future__ import annotations

import argparse
from pathlib import Path

from texturebias.cli.common import add_device_arguments, int_at_least, non_negative_int, positive_int, unit_float

# A size in pixels, 0 meaning "skip this step".
_size = int_at_least(0, "a size")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stylize",
        help="AdaIN-stylize a folder tree (Stylized-ImageNet builder)",
        description="Stylize every image of CONTENT_DIR with AdaIN using paintings from STYLE_DIR and write a "
        "mirrored tree to OUT_DIR. Defaults reproduce Stylized-ImageNet: Resize(256)+CenterCrop(224), styles "
        "centre-square 224, alpha 1, one random style per image, PNG. Seeded, resumable (rerun the same "
        "command), records manifest.csv/failed.csv/styles.csv; under torchrun each rank takes a shard.",
    )
    p.add_argument("content_dir", type=Path, metavar="CONTENT_DIR")
    p.add_argument("style_dir", type=Path, metavar="STYLE_DIR")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    p.add_argument("--alpha", type=unit_float, default=1.0, help="style strength in [0, 1] (default 1.0)")
    p.add_argument("--content-size", type=_size, default=256, help="resize shorter side (default 256; 0: keep)")
    p.add_argument("--crop", type=_size, default=224, help="centre crop (default 224; 0: none)")
    p.add_argument("--style-size", type=positive_int, default=224, help="style square side (default 224)")
    p.add_argument("--min-style-size", type=positive_int, help="drop styles with a smaller side (default: style size)")
    p.add_argument("--styles-per-image", type=positive_int, default=1, help="stylizations per image (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the content -> style assignment (default 0)")
    p.add_argument("--format", choices=("png", "jpg", "webp"), default="png", help="output format (default png)")
    p.add_argument("--quality", type=positive_int, default=95, help="JPEG/WebP quality (default 95)")
    p.add_argument(
        "--png-compress-level",
        type=int,
        choices=range(10),
        default=6,
        metavar="0-9",
        help="PNG zlib level (default 6; 1 is faster, files ~10%% larger)",
    )
    p.add_argument("--batch-size", type=positive_int, default=16, help="images per batch (default 16)")
    p.add_argument(
        "--workers",
        type=non_negative_int,
        default=None,
        help="DataLoader workers for decoding (default: 0 on a CPU, where they slow the convolutions; 2 on a GPU)",
    )
    add_device_arguments(p)
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16", "auto"),
        default="fp32",
        help="fp32 (default, exact), bf16 (CPU AMX / GPU), fp16 (GPU), or auto: bf16 where it is fast (CUDA, "
        "CPUs with AVX512-BF16/AMX), else fp32; bf16 changes pixels (docs/stylize.md, 'bf16 accuracy')",
    )
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels_last memory format (default: on for bf16/fp16 and CUDA)",
    )
    p.add_argument("--preserve-colors", action="store_true", help="recolour styles to the content's colours")
    p.add_argument("--vgg", type=Path, metavar="PATH", help="vgg_normalised.pth (default: declared download)")
    p.add_argument("--decoder", type=Path, metavar="PATH", help="decoder.pth or a train-decoder checkpoint")
    p.add_argument(
        "--shards",
        type=positive_int,
        metavar="N",
        dest="shard_size",
        help="write WebDataset tar shards of N images instead of a file tree",
    )
    p.add_argument("--limit", type=positive_int, help="only the first N content images (trial runs)")
    p.set_defaults(func=run, offline_hints={"weights": "pass local copies with --vgg PATH and --decoder PATH"})


def run(args: argparse.Namespace) -> int:
    from texturebias.stylize.builder import stylize_folder
    from texturebias.utils.device import resolve_device, resolve_precision
    from texturebias.utils.distributed import dist_info

    if args.precision == "auto":
        args.precision = resolve_precision("auto", resolve_device(args.device))
        if dist_info().is_main:
            why = "bf16 hardware found" if args.precision == "bf16" else "no bf16 hardware: bf16 would be slower"
            error = (
                "; bf16 vs fp32 error: uint8 max 25 / mean 0.92 levels, 34% of pixels changed (docs/stylize.md)"
                if args.precision == "bf16"
                else ""
            )
            print(f"--precision auto: {args.precision} ({why}){error}")

    summary = stylize_folder(
        args.content_dir, args.style_dir, args.out_dir, alpha=args.alpha, content_size=args.content_size,
        crop=args.crop, style_size=args.style_size, min_style_size=args.min_style_size,
        styles_per_image=args.styles_per_image, seed=args.seed, image_format=args.format, quality=args.quality,
        png_compress_level=args.png_compress_level, batch_size=args.batch_size, workers=args.workers,
        precision=args.precision, channels_last=args.channels_last, preserve_colors=args.preserve_colors,
        vgg=args.vgg, decoder=args.decoder, device=args.device, shard_size=args.shard_size, limit=args.limit,
    )  # fmt: skip
    if dist_info().is_main:
        print(summary.describe())
        print(f"manifest: {args.out_dir / 'manifest.csv'}")
    return 0
