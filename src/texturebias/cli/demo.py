"""``texturebias demo``: the papers' findings in minutes, offline (report.html + summary.json)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="replicate the texture-bias findings in minutes, offline (writes report.html)",
        description="Run the toolkit end to end: EfficientNet-Lite0 on the real cue-conflict stimuli (when "
        "available), then a miniature replication of the BagNet and Stylized-ImageNet papers in a generated "
        "shapes x textures world. Writes DIR/report.html (self-contained) and DIR/summary.json.",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("texturebias-demo"),
        metavar="DIR",
        help="output folder (default: ./texturebias-demo); rerunning continues where it stopped",
    )
    p.add_argument("--quick", action="store_true", help="small sizes (~2 minutes; CI smoke run)")
    p.add_argument("--seed", type=int, default=0, help="seed of everything (default 0)")
    p.add_argument(
        "--stimuli",
        type=Path,
        metavar="DIR",
        help="real cue-conflict stimuli folder (or a data root); default: $TEXTUREBIAS_DATA or the cache",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from texturebias.demo import DemoConfig, run_demo

    result = run_demo(DemoConfig(out=args.out, seed=args.seed, quick=args.quick, stimuli=args.stimuli))
    for f in result.findings:
        verdict = "n/a " if f["held"] is None else ("HELD" if f["held"] else "FAIL")
        print(f"[{verdict}] {f['claim']}")
    print(f"report:  {result.report}")
    print(f"summary: {result.summary}")
    return 0
