"""``texturebias correlate --model-a A --model-b B --data DIR``: per-image logit correlation of two models."""

from __future__ import annotations

import argparse
from pathlib import Path

from texturebias.cli.common import add_device_arguments, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "correlate",
        help="correlation of two models' logits per image (BagNet vs CNN)",
        description="Pearson correlation of the two models' logit vectors for every image under DIR, summarised "
        "(mean, sd, median, histogram) with top-1 agreement, as in Brendel & Bethge (2019). Writes "
        "correlation.csv/.json/.png/.pdf and skipped.csv.",
    )
    p.add_argument("--model-a", default="bagnet33", metavar="NAME", help="first model (default bagnet33)")
    p.add_argument("--model-b", default="vgg16", metavar="NAME", help="second model (default vgg16)")
    p.add_argument("--checkpoint-a", type=Path, metavar="PATH", help="local weights for model A")
    p.add_argument("--checkpoint-b", type=Path, metavar="PATH", help="local weights for model B")
    p.add_argument("--data", required=True, metavar="DIR", help="folder of images (searched recursively)")
    p.add_argument("--limit", type=positive_int, metavar="N", help="use only the first N images")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_device_arguments(p)
    p.set_defaults(func=run, offline_hints={"weights": "pass it with --checkpoint-a PATH / --checkpoint-b PATH"})


def run(args: argparse.Namespace) -> int:
    from texturebias.explain.correlation import logit_correlation

    s = logit_correlation(
        args.data,
        args.out,
        model_a=args.model_a,
        model_b=args.model_b,
        checkpoint_a=args.checkpoint_a,
        checkpoint_b=args.checkpoint_b,
        batch_size=args.batch_size,
        limit=args.limit,
        device=args.device,
    )
    print(
        f"{s.model_a} vs {s.model_b}: {s.n_images} images, mean r = {s.mean_r:.4f} (sd {s.sd_r:.4f}, "
        f"median {s.median_r:.4f}), top-1 agreement {s.top1_agreement:.2%}, {s.n_skipped} skipped"
    )
    print(f"results in {args.out} (correlation.csv/.json/.png/.pdf)")
    return 0
