"""Command-line interface: ``texturebias <command> ...``.

The CLI only parses arguments, calls one library function and prints or writes. Each command group lives
in its own module here with a ``register(subparsers)`` function; :data:`COMMAND_MODULES` lists them.
Exit codes, one rule for every command: 0 success (a folder job that recorded failed inputs in
``failed.csv`` still succeeds, and says how many failed); 1 a user error (:class:`~texturebias.errors.TextureBiasError`:
bad path, corrupt file, wrong checkpoint, settings that differ from the folder's), printed as one line on stderr;
2 bad usage (argparse, or :class:`~texturebias.errors.UsageError`); 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from texturebias import __version__

# Order = order in `texturebias --help`: zoo, measure, explain, fight, scramble, robustness, demo.
COMMAND_MODULES: tuple[str, ...] = (
    "texturebias.cli.models",
    "texturebias.cli.classify",
    "texturebias.cli.data",
    "texturebias.cli.shape_bias",
    "texturebias.cli.analyze",
    "texturebias.cli.heatmap",
    "texturebias.cli.patches",
    "texturebias.cli.correlate",
    "texturebias.cli.stylize",
    "texturebias.cli.train_decoder",
    "texturebias.cli.train",
    "texturebias.cli.evaluate",
    "texturebias.cli.detect",
    "texturebias.cli.synthesize",
    "texturebias.cli.scramble",
    "texturebias.cli.robustness",
    "texturebias.cli.demo",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="texturebias",
        description="Measure, explain and reduce texture bias in image classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"texturebias {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``texturebias`` console script; returns the exit code."""
    from texturebias.errors import TextureBiasError, UsageError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _check_device_flags(args)
        _check_output(args)
        from texturebias.utils.download import offline_hints

        with offline_hints(**getattr(args, "offline_hints", {})):
            result = args.func(args)
    except UsageError as exc:
        print(f"texturebias {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except TextureBiasError as exc:
        print(f"texturebias {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `texturebias models | head`: stop quietly instead of a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(result or 0)


def _check_output(args: argparse.Namespace) -> None:
    """Refuse an output folder (``--out DIR`` or ``OUT_DIR``) that cannot be created, before any work.

    An output that is an existing file or cannot be created is then one line at once, not a traceback after the
    inference (:func:`~texturebias.utils.io.check_output_dir`; nothing is created here). Commands whose
    ``--out`` names a file set the parser default ``out_is_file``.
    """
    if getattr(args, "out_is_file", False):
        return
    from texturebias.utils.io import check_output_dir

    for name in ("out", "out_dir"):
        value = getattr(args, name, None)
        if isinstance(value, (str, os.PathLike)):
            check_output_dir(value)


def _check_device_flags(args: argparse.Namespace) -> None:
    """Refuse an unknown or absent device, or fp16 on a CPU, before a command loads anything."""
    device = getattr(args, "device", None)
    if device is None:
        return
    from texturebias.utils.device import check_precision, resolve_device

    dev = resolve_device(device)
    precision = getattr(args, "precision", None)
    if isinstance(precision, str) and precision != "auto":
        check_precision(dev, precision)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
