"""Argument helpers shared by the commands, so every command spells common options the same way."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from texturebias.errors import TextureBiasError


def add_model_arguments(
    parser: argparse.ArgumentParser, *, default: str | None = "efficientnet_lite0", multiple: bool = False
) -> None:
    """``--model NAME`` (repeatable when ``multiple``) and ``--checkpoint PATH``."""
    if multiple:
        parser.add_argument(
            "--model",
            action="append",
            metavar="NAME",
            help=f"registered model name, repeatable (default: {default}); see `texturebias models`",
        )
    else:
        parser.add_argument(
            "--model",
            default=default,
            metavar="NAME",
            help=f"registered model name (default: {default}); see `texturebias models`",
        )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        metavar="PATH",
        help="local weights file instead of the declared pretrained weights"
        + (" (only with one --model)" if multiple else ""),
    )


def model_names(args: argparse.Namespace, default: str = "efficientnet_lite0") -> list[str]:
    """The ``--model`` list of a ``multiple=True`` command (``default`` when none is given).

    Raises:
        TextureBiasError: ``--checkpoint`` with several models: one weights file cannot fit them all, and
            loading it into each would silently evaluate the same network under several names.
    """
    models = list(args.model or [default])
    if getattr(args, "checkpoint", None) is not None and len(models) != 1:
        raise TextureBiasError(f"--checkpoint needs exactly one --model (got {len(models)}: {', '.join(models)})")
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


def int_at_least(minimum: int, what: str = "an integer") -> Callable[[str], int]:
    """argparse type factory: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what} >= {minimum}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)
"""argparse type: an integer >= 1."""


def unit_float(text: str) -> float:
    """argparse type: a float in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a value in [0, 1], got {value}")
    return value
