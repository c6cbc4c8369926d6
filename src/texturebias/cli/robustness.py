"""``texturebias distort | robustness | benchmark``: parametric distortions, robustness curves, model-vs-human.

- ``distort DATA_DIR OUT_DIR --distortion NAME``: a distorted copy of a dataset per level (model-vs-human layout).
- ``robustness --model NAME --data DIR --distortion NAME[,NAME...]``: accuracy per level (16-class, or
  top-1/top-5 for ImageNet folders), trial CSVs, curves with the human accuracies.
- ``benchmark --model NAME --datasets edge,silhouette,cue-conflict``: the model-vs-human metrics vs humans.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from texturebias.cli.common import (
    add_device_arguments,
    add_model_arguments,
    add_preprocessing_arguments,
    int_at_least,
    model_names,
    non_negative_int,
    positive_int,
    preprocessing_overrides,
    print_failed,
)


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    from texturebias.robustness.distortions import list_distortions

    known = ", ".join(list_distortions())
    d = sub.add_parser(
        "distort",
        help="write a distorted copy of an image folder at every level (model-vs-human layout)",
        description="Apply one of the parametric distortions of Geirhos et al. (2018) to every image of "
        f"DATA_DIR at every level. Distortions: {known}. Output: OUT_DIR/dnn/session-1/<model-vs-human image "
        "names>, manifest.csv, failed.csv; rerun to resume.",
    )
    d.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="input folder (<class>/<image>)")
    d.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="output folder")
    d.add_argument("--distortion", required=True, metavar="NAME", help="distortion name (e.g. uniform-noise)")
    d.add_argument("--levels", nargs="+", metavar="LEVEL", help="levels/conditions (default: all of the distortion)")
    d.add_argument("--seed", type=int, default=0, help="job seed (default 0)")
    d.add_argument(
        "--size", type=int_at_least(0), default=224, help="working size: Resize+CenterCrop to SIZE (0: keep)"
    )
    d.add_argument("--phase-mode", choices=("faithful", "corrected"), default="faithful",
                   help="phase scrambling: original quirk (default) or Hermitian-correct")  # fmt: skip
    d.add_argument("--format", choices=("png", "jpg"), default="png", dest="image_format")
    d.add_argument("--batch-size", type=positive_int, default=16)
    d.add_argument("--workers", type=non_negative_int, default=0, help="image-loading worker processes")
    d.add_argument("--limit", type=positive_int, help="only the first N images (a quick look)")
    d.set_defaults(func=run_distort)

    r = sub.add_parser(
        "robustness",
        help="accuracy of models under parametric distortions, with human curves",
        description="Distort every image of --data at every level on the fly (seeded), classify it and write "
        "trial CSVs (human schema), robustness_accuracy.csv and <distortion>_accuracy.png/.pdf with the human "
        "accuracies per condition. --data holds the 16 categories (16-class accuracy) or ImageNet WordNet-id "
        "folders (top-1/top-5).",
    )
    add_model_arguments(r, multiple=True)
    r.add_argument("--data", type=Path, required=True, metavar="DIR", help="clean dataset folder")
    r.add_argument("--distortion", type=_names, required=True, metavar="NAME[,NAME...]")
    r.add_argument("--out", type=Path, default=Path("robustness"), metavar="DIR", help="output folder")
    r.add_argument("--levels", nargs="+", metavar="LEVEL", help="levels (default: all)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--phase-mode", choices=("faithful", "corrected"), default="faithful")
    r.add_argument("--max-images", type=positive_int, metavar="N", help="only the first N images")
    r.add_argument("--human-data", type=Path, metavar="DIR", help="model-vs-human raw-data folder")
    r.add_argument("--no-humans", action="store_true", help="do not add human curves")
    _add_decision_arguments(r)
    r.set_defaults(func=run_robustness, offline_hints={"data": "pass the human raw data with --human-data DIR"})

    b = sub.add_parser(
        "benchmark",
        help="model-vs-human benchmark: OOD accuracy, accuracy difference, observed/error consistency",
        description="Run models on model-vs-human datasets and compare them with the human observers. "
        "Datasets are read from --data/<name> (release-tarball layout dnn/session-1/, or <category>/ folders); "
        "without --data, cue-conflict/edge/silhouette come from the texture-vs-shape stimuli "
        "($TEXTUREBIAS_DATA or the cache) and the others from the release tarballs (mvh/<name>).",
    )
    add_model_arguments(b, multiple=True)
    b.add_argument("--data", type=Path, metavar="DIR", help="folder holding one sub-folder per dataset")
    b.add_argument("--datasets", type=_names, metavar="NAME[,NAME...]", help="datasets (default: all in --data)")
    b.add_argument("--out", type=Path, default=Path("benchmark"), metavar="DIR", help="output folder")
    b.add_argument("--human-data", type=Path, metavar="DIR", help="model-vs-human raw-data folder")
    b.add_argument("--no-resume", action="store_true", help="re-run models even when trial CSVs exist")
    _add_decision_arguments(b)
    b.set_defaults(
        func=run_benchmark,
        offline_hints={"data": "pass a folder holding the datasets with --data DIR (humans: --human-data DIR)"},
    )


def _add_decision_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mapping", default=None, metavar="SPEC", help="auto (default), imagenet16, identity16 or FILE")
    p.add_argument("--aggregation", choices=("mean", "sum", "max"), default="mean",
                   help="how member-class probabilities form a category score (default mean)")  # fmt: skip
    p.add_argument("--batch-size", type=positive_int, default=32)
    add_device_arguments(p, precision=True)
    add_preprocessing_arguments(p)


def run_distort(args: argparse.Namespace) -> int:
    from texturebias.robustness.distortions import distort_folder

    summary = distort_folder(args.data_dir, args.out_dir, args.distortion, levels=args.levels, seed=args.seed,
                             size=args.size, phase_mode=args.phase_mode, image_format=args.image_format,
                             batch_size=args.batch_size, workers=args.workers, limit=args.limit)  # fmt: skip
    print(f"{summary.processed} image(s) distorted, {summary.skipped_done} already done, "
          f"{len(summary.failed)} failed -> {args.out_dir}")  # fmt: skip
    return 0  # failed inputs are listed in failed.csv; the exit code is reserved for errors (README)


def run_robustness(args: argparse.Namespace) -> int:
    from texturebias.robustness.curves import run_robustness as run

    models = model_names(args)
    res = run(models, args.data, args.distortion, args.out, human_data=args.human_data,
              with_humans=not args.no_humans, levels=args.levels, seed=args.seed, phase_mode=args.phase_mode,
              checkpoint=args.checkpoint, mapping=args.mapping, aggregation=args.aggregation,
              batch_size=args.batch_size, device=args.device, precision=args.precision,
              max_images=args.max_images, preprocessing_overrides=preprocessing_overrides(args))  # fmt: skip
    table = res.accuracy.pivot_table(index=["distortion", "condition"], columns="subj", values="accuracy", sort=False)
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    print_failed(res.failed, args.out / "failed.csv")
    print(f"wrote {len(res.files)} file(s) to {args.out} ({len(res.failed)} unreadable image(s) left out)")
    return 0


def run_benchmark(args: argparse.Namespace) -> int:
    from texturebias.robustness.benchmark import run_benchmark as run

    models = model_names(args)
    res = run(models, args.data, args.out, datasets=args.datasets, human_data=args.human_data,
              checkpoint=args.checkpoint, mapping=args.mapping, aggregation=args.aggregation,
              batch_size=args.batch_size, device=args.device, precision=args.precision,
              resume=not args.no_resume, preprocessing_overrides=preprocessing_overrides(args))  # fmt: skip
    cols = ["subj", "dataset", "ood_accuracy", "accuracy_difference", "observed_consistency", "error_consistency"]
    print(res.per_dataset[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print()
    print(res.leaderboard.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print_failed(res.failed, args.out / "failed.csv")
    print(f"wrote {len(res.files)} file(s) to {args.out} ({len(res.failed)} unreadable image(s) left out)")
    return 0
