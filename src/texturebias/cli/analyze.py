"""``texturebias analyze PATH...``: shape bias of existing trial CSVs (humans pooled), as a table or JSON.

Extending: add options in :func:`register` and a branch in :func:`run` that calls one library function
(the table and JSON printers below are shared).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="shape bias of cue-conflict trial CSVs (humans or models, human schema)",
        description="Read trial CSVs (files or folders) in the human schema and print the shape bias per "
        "decision maker; human subjects (subject-NN) are pooled into 'humans'.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="trial CSV files or folders")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of a table")
    p.add_argument("--per-subject", action="store_true", help="do not pool human subjects")
    p.add_argument("--per-category", action="store_true", help="also print per-category values in the table")
    p.add_argument("--accuracy", action="store_true",
                   help="print 16-class accuracy per condition instead of the shape bias (any trial CSVs)")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from texturebias.evaluate.metrics import analyze_trials

    if args.accuracy:
        return run_accuracy(args)

    results = analyze_trials(args.paths, pool_humans=not args.per_subject)
    payload = {who: sb.to_dict() for who, sb in results.items()}
    if args.json:
        print(json.dumps(payload, indent=2))
        return 0
    print_table(payload, per_category=args.per_category)
    return 0


def _fmt(x: float | None, width: int = 10) -> str:
    return f"{'n/a':>{width}}" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:>{width}.4f}"


def print_table(payload: dict[str, dict], *, per_category: bool = False) -> None:
    """Print ``{name: {"shape_bias", "n_shape", "n_texture", "n_other", "per_category"}}`` as a table."""
    print(f"{'decision maker':<28} {'shape bias':>10} {'shape':>7} {'texture':>7} {'other':>7}")
    for who, d in payload.items():
        print(f"{who:<28} {_fmt(d['shape_bias'])} {d['n_shape']:>7} {d['n_texture']:>7} {d['n_other']:>7}")
        if per_category:
            for cat, v in d["per_category"].items():
                print(f"    {cat:<24} {_fmt(v)}")


def run_accuracy(args: argparse.Namespace) -> int:
    """``analyze --accuracy``: accuracy per (decision maker, condition)."""
    from texturebias.robustness.benchmark import accuracy_report

    table = accuracy_report(args.paths, pool_humans=not args.per_subject)
    if args.json:
        out: dict[str, dict[str, dict[str, float]]] = {}
        for row in table.itertuples(index=False):
            out.setdefault(row.subj, {})[str(row.condition)] = {"accuracy": float(row.accuracy), "n": int(row.n)}
        print(json.dumps(out, indent=2))
        return 0
    print(f"{'decision maker':<28} {'condition':>12} {'n':>7} {'accuracy':>10}")
    for row in table.itertuples(index=False):
        print(f"{row.subj:<28} {str(row.condition):>12} {row.n:>7} {_fmt(row.accuracy)}")
    return 0
