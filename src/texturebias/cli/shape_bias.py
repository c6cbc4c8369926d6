"""``texturebias shape-bias``: cue-conflict shape bias of one or more models, with humans, in one figure."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from texturebias.cli.common import (
    add_device_arguments,
    add_model_arguments,
    add_preprocessing_arguments,
    model_names,
    positive_int,
    preprocessing_overrides,
    print_failed,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "shape-bias",
        help="shape bias on the cue-conflict stimuli (Geirhos et al., ICLR 2019), compared with humans",
        description="Evaluate models on the 1,280 cue-conflict stimuli (and edge/silhouette when available): "
        "trial CSV in the human schema + summary.json per model, error consistency with each human subject, "
        "and the paper's matrix plot (PNG + PDF) of humans and all models.",
    )
    add_model_arguments(p, multiple=True)
    add_preprocessing_arguments(p)
    p.add_argument("--name", metavar="NAME", help="decision-maker name in outputs (only with one --model)")
    p.add_argument(
        "--stimuli",
        type=Path,
        metavar="DIR",
        help="local stimuli: the cue-conflict folder, or a data root laid out like shared/data "
        "(default: $TEXTUREBIAS_DATA, else the cache, downloading on demand)",
    )
    p.add_argument(
        "--aggregation",
        choices=("mean", "sum", "max"),
        default="mean",
        help="how ImageNet probabilities become 16 category scores (default mean; sum = paper's older numbers)",
    )
    p.add_argument(
        "--mapping",
        metavar="auto|imagenet16|identity16|FILE.json",
        default=None,
        help="label mapping: auto (ImageNet-1k or 16-way head), or a JSON {category: [indices]}",
    )
    p.add_argument(
        "--sets",
        default="cue-conflict,edge,silhouette",
        help="comma-separated stimulus sets (cue-conflict is required; default all three)",
    )
    p.add_argument("--out", type=Path, default=Path("shape-bias"), metavar="DIR", help="output folder")
    p.add_argument(
        "--compare",
        nargs="+",
        type=Path,
        default=[],
        metavar="PATH",
        help="existing cue-conflict trial CSVs/folders to add to the table and figure",
    )
    p.add_argument("--no-humans", action="store_true", help="leave the human observers out")
    p.add_argument("--no-download", action="store_true", help="never download; fail if data is missing")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--bootstrap", type=positive_int, default=10_000, help="bootstrap resamples for the 95%% CI")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    add_device_arguments(p, precision=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from texturebias.evaluate.cue_conflict import shape_bias_report

    report = shape_bias_report(
        model_names(args), checkpoint=args.checkpoint, name=args.name, stimuli=args.stimuli,
        out_dir=args.out, compare=args.compare, humans=not args.no_humans, n_boot=args.bootstrap, seed=args.seed,
        aggregation=args.aggregation, mapping=args.mapping, sets=[s.strip() for s in args.sets.split(",") if s],
        batch_size=args.batch_size, device=args.device, precision=args.precision, download=not args.no_download,
        preprocessing_overrides=preprocessing_overrides(args),
    )  # fmt: skip
    print(f"{'decision maker':<28} {'shape bias':>10}  {'95% CI':>15}  {'shape':>6} {'texture':>7} {'other':>6}")
    for who, sb in report.results.items():
        lo, hi = report.ci.get(who, (math.nan, math.nan))
        ci = f"[{lo:.3f}, {hi:.3f}]" if not math.isnan(lo) else ""
        print(f"{who:<28} {sb.shape_bias:>10.4f}  {ci:>15}  {sb.n_shape:>6} {sb.n_texture:>7} {sb.n_other:>6}")
    for m in report.models:
        failed = [f for fs in m.failed.values() for f in fs]
        print_failed(failed, m.files.get("failed"))
        acc = ", ".join(f"{k} {v:.3f}" for k, v in m.accuracy.items())
        print(f"{m.name}: 16-class accuracy: {acc}")
        for set_name, c in m.consistency.items():
            mv, hh = c["model_vs_humans"], c["human_vs_human"]
            print(f"{m.name}: {set_name}: error consistency κ {mv['error_consistency']:.3f} "
                  f"(humans among themselves {hh['error_consistency']:.3f}), observed consistency "
                  f"{mv['observed_consistency']:.3f} ({hh['observed_consistency']:.3f})")  # fmt: skip
    print(f"wrote {report.results_file} and {', '.join(str(f) for f in report.figures)}")
    return 0
