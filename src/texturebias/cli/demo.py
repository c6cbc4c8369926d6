"""``texturebias demo``: the papers' findings in minutes, offline (report.html + summary.json)."""

from __future__ import annotations

import argparse
from pathlib import Path

from texturebias.cli.common import float_between, int_at_least


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
    p.add_argument(
        "--detection",
        action="store_true",
        help="also fine-tune Faster R-CNN detectors from the natural, randomised and stylized CNNs on generated "
        "scenes and report their mAP with bootstrap CIs (the SIN paper's Table 2 in miniature; ~5 more minutes; "
        "reuses a finished demo in --out)",
    )
    p.add_argument(
        "--texture-scale",
        type=float_between(0.25, 8.0),  # beyond these, patterns alias to noise or one period fills the image
        default=None,
        metavar="X",
        help="every texture of the generated world X times finer than its base patterns at the same 32 px (default "
        "3; 1 is the demo's first world; docs/demo.md)",
    )
    p.add_argument(
        "--texture-match",
        type=float_between(0.125, 1.0),  # below 1/8 (chance for 8 classes) texture would predict other classes
        default=None,
        metavar="P",
        help="probability that a natural image's shape wears its class's texture (default 1: texture predicts the "
        "class as well as shape; the first world's 0.9 lets the natural CNN learn some shape; docs/demo.md)",
    )
    p.add_argument(
        "--stylize-alpha",
        type=float_between(0.05, 1.0),
        default=None,
        metavar="A",
        help="AdaIN style strength of the stylized set (default 1, the Stylized-ImageNet recipe; lower keeps more "
        "shape and more texture; docs/demo.md)",
    )
    p.add_argument(
        "--stylizer",
        choices=("random", "lite0"),
        default=None,
        help="experimental: the AdaIN encoder, a frozen random VGG-style one (default) or the first blocks of the "
        "ImageNet-trained EfficientNet-Lite0 (docs/demo.md)",
    )
    p.add_argument(
        "--stylize-size",
        # The stylizer step grows with N squared (~4 minutes at 96 px on 2 cores): 512 is ~2 hours, and larger
        # values are typos, not experiments.
        type=int_at_least(32, "a size in pixels", maximum=512),
        default=None,
        metavar="N",
        help="pixels the AdaIN stylizer works at: the 32-px images are upsampled to N, stylized, and read back at "
        "32 px by the classifiers (default 96; docs/demo.md measures 32, 64 and 96)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from texturebias.demo import DemoConfig, run_demo
    from texturebias.demo.config import WORLD_OPTIONS

    config = DemoConfig(out=args.out, seed=args.seed, quick=args.quick, stimuli=args.stimuli, detection=args.detection)
    sizes = config.resolved_sizes()
    # The world and stylizer options; each left out keeps the full / quick default (the parser does not repeat them,
    # so that --help does not import the demo package).
    given = {k: getattr(args, k) for k in WORLD_OPTIONS}
    chosen = dataclasses.replace(sizes, **{k: v for k, v in given.items() if v is not None})
    if chosen != sizes:
        config.sizes = chosen
    result = run_demo(config)
    for f in result.findings:
        verdict = "n/a " if f["held"] is None else ("HELD" if f["held"] else "FAIL")
        print(f"[{verdict}] {f['claim']}")
    detection = result.summary_data.get("detection")
    if detection is not None:
        for name, b in detection["backbones"].items():
            lo, hi = (_number(v) for v in b["ci95_voc07"])
            print(f"detection from {name}: VOC07 mAP {b['map_voc07']:.3f} [{lo}, {hi}], all-point {b['map_all']:.3f}")
    print(f"report:  {result.report}")
    print(f"summary: {result.summary}")
    return 0


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
