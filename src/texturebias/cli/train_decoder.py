"""``texturebias train-decoder``: train an AdaIN decoder (Huang & Belongie 2017 recipe), resumable."""

from __future__ import annotations

import argparse
from pathlib import Path

from texturebias.cli.common import add_device_arguments, non_negative_int, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-decoder",
        help="train an AdaIN decoder (resumable)",
        description="Train the AdaIN decoder with the frozen normalised VGG-19 encoder: content + 10 x style "
        "loss, Adam 1e-4 with 1/(1+5e-5 it) decay, batch 8, random 256 crops of 512-resized images. Rerun the "
        "same command to resume from OUT/checkpoint.pth. The checkpoint loads into `texturebias stylize "
        "CONTENT_DIR STYLE_DIR OUT_DIR --decoder OUT/checkpoint.pth`.",
    )
    p.add_argument("--content", type=Path, required=True, metavar="DIR", help="content images (MS-COCO)")
    p.add_argument("--styles", type=Path, required=True, metavar="DIR", help="style images (WikiArt)")
    p.add_argument("--vgg", type=Path, metavar="PATH", help="vgg_normalised.pth (default: declared download)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="checkpoints, loss_log.csv, loss curve")
    p.add_argument("--iterations", type=positive_int, default=160_000, help="total iterations (default 160000)")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-decay", type=float, default=5e-5)
    p.add_argument("--style-weight", type=float, default=10.0)
    p.add_argument("--content-weight", type=float, default=1.0)
    p.add_argument("--image-size", type=positive_int, default=512, help="resize to this square (default 512)")
    p.add_argument("--crop-size", type=positive_int, default=256, help="random crop (default 256)")
    p.add_argument("--save-every", type=positive_int, default=10_000, help="checkpoint interval (default 10000)")
    p.add_argument("--log-every", type=positive_int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=non_negative_int, default=2)
    p.add_argument("--no-resume", dest="resume", action="store_false", help="refuse to continue a checkpoint")
    add_device_arguments(p, precision=True)
    p.set_defaults(func=run, offline_hints={"weights": "pass it with --vgg PATH"})


def run(args: argparse.Namespace) -> int:
    from texturebias.stylize.train import train_decoder

    result = train_decoder(
        args.content, args.styles, args.out, vgg=args.vgg, iterations=args.iterations, batch_size=args.batch_size,
        lr=args.lr, lr_decay=args.lr_decay, content_weight=args.content_weight, style_weight=args.style_weight,
        image_size=args.image_size, crop_size=args.crop_size, save_every=args.save_every, log_every=args.log_every,
        seed=args.seed, workers=args.workers, device=args.device, precision=args.precision, resume=args.resume,
    )  # fmt: skip
    print(f"iteration {result.iteration}: content loss {result.loss_content:.4g}, style loss {result.loss_style:.4g}")
    print(f"decoder: {result.decoder}")
    print(f"checkpoint: {result.checkpoint}")
    return 0
