"""``texturebias models [PATTERN]``: the model zoo and its weights."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list registered models and their weights",
        description="List registered models with their weights: source, license, input size, "
        "and whether the file is already cached.",
    )
    p.add_argument(
        "pattern", nargs="?", help="shell pattern or substring, e.g. 'bagnet*', 'timm/vit*' or 'open_clip/ViT-B*'"
    )
    p.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="also print the preprocessing, URL, origin and published accuracy",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from texturebias.models import get_model_entry, list_models, resolve_preprocessing

    names = list_models(args.pattern)
    if not names and args.pattern and (args.pattern.startswith(("timm/", "open_clip/")) or ":" in args.pattern):
        # a timm tag (timm/<arch>.<tag>), an open_clip architecture or a user factory is resolved, not listed
        names = [args.pattern]
    if not names:
        print(f"no model matches {args.pattern!r}")
        return 1
    print(f"{'model':<28} {'family':<18} {'input':>5}  {'cached':<6}  {'license':<14}  source")
    for name in names:
        entry = get_model_entry(name)
        w = entry.weights
        if w is None:
            how = entry.description if entry.loads_own_weights else "no pretrained weights (--checkpoint)"
            size = entry.preprocessing.input_size if entry.preprocessing else "-"
            print(f"{name:<28} {entry.family:<18} {size:>5}  {'-':<6}  {'-':<14}  {how}")
            if args.verbose:
                print(f"{'':<28} preprocessing: {resolve_preprocessing(name).describe()}")
            continue
        size = w.preprocessing.input_size if w.preprocessing else "-"
        cached = "yes" if w.is_cached() else "no"
        license_short = w.license.split(" ")[0].rstrip(";,")
        print(f"{name:<28} {entry.family:<18} {size:>5}  {cached:<6}  {license_short:<14}  {w.source}")
        if args.verbose:
            print(f"{'':<28} preprocessing: {resolve_preprocessing(name).describe()}")
            print(f"{'':<28} weights {w.name}; {w.origin}")
            if w.metrics:
                print(f"{'':<28} published: " + ", ".join(f"{k} {v}" for k, v in w.metrics.items() if v is not None))
    return 0
