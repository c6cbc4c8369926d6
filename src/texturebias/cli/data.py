"""``texturebias data list|fetch|validate``: the registry of stimuli and human data (pinned, hash-checked)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="list, download and validate data sets (stimuli, human trial data)",
        description="Data sets are pinned to a commit of their source repository with a sha256 "
        "per file. Downloads go to $TEXTUREBIAS_HOME/data (laid out like shared/data).",
    )
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    ls = dsub.add_parser("list", help="registered data sets, their size and whether they are available locally")
    ls.set_defaults(func=run_list)
    fetch = dsub.add_parser("fetch", help="download data sets into the cache (hash-checked)")
    fetch.add_argument("names", nargs="+", metavar="NAME", help="data set names (see `texturebias data list`)")
    fetch.add_argument("--root", type=Path, metavar="DIR", help="download into this data root instead of the cache")
    fetch.set_defaults(func=run_fetch)
    val = dsub.add_parser("validate", help="check a local copy: files present, names parse, image sizes, hashes")
    val.add_argument("names", nargs="*", metavar="NAME", help="data sets (default: the three stimulus sets)")
    val.add_argument(
        "--dir",
        type=Path,
        metavar="DIR",
        help="the data set's folder or a data root (default: $TEXTUREBIAS_DATA, else the cache)",
    )
    val.add_argument("--hashes", action="store_true", help="also verify the sha256 of every file")
    val.set_defaults(func=run_validate)


def run_list(args: argparse.Namespace) -> int:
    from texturebias.data.datasets import is_available, list_datasets
    from texturebias.detect.voc import VOC_ARCHIVES, voc_archive_fetched

    print(f"{'name':<28} {'files':>6} {'MB':>7}  {'local':<6} description")
    for ds in list_datasets():
        local = "yes" if is_available(ds.name) else "no"
        print(f"{ds.name:<28} {len(ds.files):>6} {ds.size_bytes() / 1e6:>7.1f}  {local:<6} {ds.description}")
    # Pascal VOC (detection transfer): one tar per set, md5 as the devkit publishes it.
    for a in VOC_ARCHIVES.values():
        local = "yes" if voc_archive_fetched(a.name) else "no"
        print(f"{a.name:<28} {1:>6} {a.size_mb or 0:>7.1f}  {local:<6} Pascal {a.contents} (md5-checked tar)")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    from texturebias.data.datasets import fetch_dataset, get_dataset
    from texturebias.detect.voc import VOC_ARCHIVES, fetch_voc_archive

    for name in args.names:  # check every name before downloading anything
        if name not in VOC_ARCHIVES:
            get_dataset(name)
    for name in args.names:
        if name in VOC_ARCHIVES:
            print(f"{name}: {fetch_voc_archive(name, args.root)} (use it as --voc-root)")
        else:
            print(f"{name}: {fetch_dataset(name, root=args.root)}")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from texturebias.data.datasets import folder_in_root, get_dataset, validate_dataset
    from texturebias.errors import DataError

    names = args.names or ["cue-conflict", "edge", "silhouette"]
    bad = 0
    for name in names:
        folder = None
        if args.dir is not None:
            inside = folder_in_root(get_dataset(name), args.dir)
            folder = inside if inside.is_dir() else args.dir
        report = validate_dataset(name, folder, check_hashes=args.hashes)
        print(report.summary())
        bad += not report.ok
    if bad:
        raise DataError(f"{bad} of {len(names)} data set(s) failed validation")
    return 0
