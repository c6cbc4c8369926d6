"""``texturebias scramble DATA_DIR OUT_DIR --method texture|patches``: a scrambled copy of an image folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from texturebias.cli.common import non_negative_int, positive_int
from texturebias.cli.synthesize import add_texture_arguments


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scramble",
        help="mirror an image folder with textures or shuffled tiles",
        description="Write a copy of DATA_DIR in which every image is replaced by its synthesized "
        "texture (--method texture: OUT_DIR/<same path>.png) or by its T x T tiles in a "
        "seeded random order (--method patches: OUT_DIR/tile<T>/<same path>.png, one "
        "folder per --tile). Resumable (rerun the same command); manifest.csv records "
        "each output's seed, failed.csv the unreadable inputs.",
    )
    p.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    p.add_argument("--method", choices=("texture", "patches"), required=True)
    p.add_argument(
        "--tile",
        type=positive_int,
        action="append",
        metavar="T",
        help="tile side in pixels, repeatable (patches; default 56)",
    )
    p.add_argument(
        "--crop",
        type=positive_int,
        metavar="N",
        help="patches: first resize + centre-crop to N x N (ImageNet eval geometry, e.g. 224) so tiles "
        "align with the model input (default: shuffle at the native size)",
    )
    p.add_argument("--seed", type=int, default=0, help="job seed (default 0)")
    p.add_argument("--workers", type=non_negative_int, default=0, help="DataLoader workers for decoding (default 0)")
    p.add_argument("--limit", type=positive_int, help="only the first N images (trial runs)")
    add_texture_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from texturebias.texture.scramble import scramble_folder

    synthesizer = None
    if args.method == "texture":
        from texturebias.texture.pipeline import build_texture_network
        from texturebias.texture.synthesis import TextureSynthesizer

        net = build_texture_network(args.network, args.checkpoint, padding=args.padding)
        synthesizer = TextureSynthesizer(
            net,
            layers=args.layers,
            iterations=args.iterations,
            history=args.history,
            method=args.optimizer,
            size=args.size,
            histogram_matching=args.histogram_matching,
            precision=args.precision,
            device=args.device,
            batch_size=args.batch_size,
            show_progress=False,
        )
    summary = scramble_folder(
        args.data_dir,
        args.out_dir,
        method=args.method,
        tiles=args.tile or [56],
        crop=args.crop,
        seed=args.seed,
        synthesizer=synthesizer,
        batch_size=args.batch_size,
        workers=args.workers,
        limit=args.limit,
    )
    print(summary.describe())
    return 0
