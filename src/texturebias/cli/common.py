"""Argument helpers shared by the commands, so every command spells common options the same way."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from texturebias.errors import UsageError


def add_model_arguments(
    parser: argparse.ArgumentParser, *, default: str | None = "efficientnet_lite0", multiple: bool = False
) -> None:
    """``--model NAME`` (repeatable when ``multiple``) and ``--checkpoint PATH``."""
    if multiple:
        parser.add_argument(
            "--model",
            action="append",
            metavar="NAME",
            help=f"registered model name, timm/<arch>[.<tag>] or package.module:factory / file.py:factory; "
            f"repeatable (default: {default}); see `texturebias models`",
        )
    else:
        parser.add_argument(
            "--model",
            default=default,
            metavar="NAME",
            help=f"registered model name, timm/<arch>[.<tag>] or package.module:factory / file.py:factory "
            f"(default: {default}); see `texturebias models`",
        )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        metavar="PATH",
        help="local weights file instead of the declared pretrained weights"
        + (" (only with one --model)" if multiple else ""),
    )


def add_preprocessing_arguments(parser: argparse.ArgumentParser) -> None:
    """``--mean --std --input-size --crop-pct|--resize-size --interpolation``: override the model's preprocessing.

    Unset flags keep what the model declares (its weights' record, timm's ``pretrained_cfg``, a training
    checkpoint's record); see :func:`preprocessing_overrides`.
    """
    group = parser.add_argument_group(
        "preprocessing overrides", "replace what the model's weights declare (see `texturebias models NAME -v`)"
    )
    group.add_argument("--mean", nargs=3, type=float, metavar=("R", "G", "B"), help="per-channel mean in [0, 1]")
    group.add_argument("--std", nargs=3, type=float, metavar=("R", "G", "B"), help="per-channel std")
    group.add_argument("--input-size", type=positive_int, metavar="PX", help="side of the centre crop")
    resize = group.add_mutually_exclusive_group()
    resize.add_argument(
        "--crop-pct",
        type=float,
        metavar="F",
        help="crop fraction: shorter side resized to floor(input_size / F) (timm's rule)",
    )
    resize.add_argument("--resize-size", type=positive_int, metavar="PX", help="shorter side before the crop")
    group.add_argument(
        "--interpolation", choices=("bilinear", "bicubic", "nearest", "lanczos"), help="resize interpolation"
    )


def preprocessing_overrides(args: argparse.Namespace) -> dict[str, Any] | None:
    """The overrides given by :func:`add_preprocessing_arguments`'s flags, or ``None`` when none is set."""
    keys = ("mean", "std", "input_size", "crop_pct", "resize_size", "interpolation")
    given = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    for key in ("mean", "std"):
        if key in given:
            given[key] = tuple(given[key])
    return given or None


def model_names(args: argparse.Namespace, default: str = "efficientnet_lite0") -> list[str]:
    """The ``--model`` list of a ``multiple=True`` command (``default`` when none is given).

    Raises:
        TextureBiasError: ``--checkpoint`` with several models: one weights file cannot fit them all, and
            loading it into each would silently evaluate the same network under several names.
    """
    models = list(args.model or [default])
    if getattr(args, "checkpoint", None) is not None and len(models) != 1:
        raise UsageError(f"--checkpoint needs exactly one --model (got {len(models)}: {', '.join(models)})")
    return models


def add_device_arguments(parser: argparse.ArgumentParser, *, precision: bool = False) -> None:
    """``--device`` (auto/cpu/cuda[:i]) and optionally ``--precision`` (fp32/bf16/fp16)."""
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1 ...")
    if precision:
        parser.add_argument(
            "--precision",
            choices=("fp32", "bf16", "fp16"),
            default="fp32",
            help="numeric precision (bf16: CPU AMX or GPU; fp16: GPU only)",
        )


def int_at_least(minimum: int, what: str = "an integer", *, maximum: int | None = None) -> Callable[[str], int]:
    """argparse type factory: an integer >= ``minimum`` (and <= ``maximum`` when given)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
            raise argparse.ArgumentTypeError(f"expected {what} {bound}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)
"""argparse type: an integer >= 1."""

non_negative_int = int_at_least(0)
"""argparse type: an integer >= 0 (worker counts: 0 = in the main process)."""


def float_between(low: float, high: float) -> Callable[[str], float]:
    """argparse type factory: a float in [``low``, ``high``]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a value in [{low:g}, {high:g}], got {value}")
        return value

    return parse


unit_float = float_between(0.0, 1.0)
"""argparse type: a float in [0, 1]."""


def print_failed(failed: Sequence[Any], csv_path: str | Path | None = None, *, limit: int = 10) -> None:
    """The summary line of the inputs a job could not read (``UnreadableImage`` records), and the first few.

    Args:
        failed: ``(path, reason)`` records.
        csv_path: Where they are listed in full (``failed.csv``); ``None`` when the command writes no folder.
        limit: Records shown.
    """
    if not failed:
        return
    where = f" (listed in {csv_path})" if csv_path is not None else ""
    print(f"{len(failed)} input(s) could not be read and were left out{where}:")
    for path, reason in list(failed)[:limit]:
        print(f"  {path}: {reason}")
    if len(failed) > limit:
        print(f"  ... and {len(failed) - limit} more")
