"""Shape-bias measuring path vs the model's forward alone: how the decoding is scheduled around the forward pass.

On the real cue-conflict stimuli (``$TEXTUREBIAS_DATA`` or ``--stimuli``), in one process, interleaved rounds
(medians, so a busy machine slows every variant alike):

- **forward alone**: each batch decoded and transformed untimed, then only the forward pass in the same network
  calls as the measuring path (``inference_forward``: cache-sized calls on a CPU; channels_last, inference
  mode) — the ceiling;
- **sequential**: ``classify_stimuli(..., loader_threads=0)``, decoding in the loop, one thread;
- **default**: ``classify_stimuli(...)``: overlapping loader threads where torch leaves cores free, otherwise each
  batch decoded by all cores between forward passes (``texturebias.data.loader``);
- **overlap 2**: two loader threads decoding ahead, beside the forward pass, whatever the cores.

Checks that all give identical decisions, and prints seconds and the ratios to the forward alone.

``--whole-command`` times what a user waits for instead: ``texturebias shape-bias --model M`` in a fresh process
(start-up, the three stimulus sets, bootstrap, human consistency, figures), against the forward alone over the
same 1,600 stimuli, in interleaved rounds; ``--baseline-src DIR`` adds another checkout's command (DIR/src) to
each round.

Usage: ``TEXTUREBIAS_DATA=../shared/data .venv/bin/python benchmarks/shape_bias.py [--rounds 2] [--limit N]
[--whole-command [--baseline-src DIR]]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("TEXTUREBIAS_NO_PROGRESS", "1")

from _machine import print_machine  # noqa: E402  (benchmarks/ is on sys.path)

from texturebias.data.datasets import dataset_dir  # noqa: E402
from texturebias.data.images import load_image  # noqa: E402
from texturebias.evaluate.cue_conflict import STIMULUS_SETS, _set_folder, classify_stimuli, stimulus_table  # noqa: E402
from texturebias.evaluate.mapping import logits_to_decisions, resolve_mapping  # noqa: E402
from texturebias.models import load_model  # noqa: E402
from texturebias.utils.device import inference_forward  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--stimuli", help="cue-conflict folder (default: $TEXTUREBIAS_DATA or the cache)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--limit", type=int, help="only the first N stimuli")
    parser.add_argument("--whole-command", action="store_true", help="time the shape-bias command end to end")
    parser.add_argument("--baseline-src", help="with --whole-command: also time the command of another checkout's "
                        "src/ (e.g. a git worktree of an older commit) in the same rounds")  # fmt: skip
    args = parser.parse_args()
    if args.whole_command:
        whole_command(args)
        return
    folder = dataset_dir("cue-conflict", args.stimuli, download=False)
    table = stimulus_table(folder, cue_conflict=True)
    if args.limit:
        table = table.iloc[: args.limit]
    model, pre = load_model(args.model)
    model = model.eval().to(memory_format=torch.channels_last)
    transform = pre.eval_transform("auto")
    n = len(table)

    def forward_alone() -> list[str]:
        # Each batch is decoded right before its forward pass, outside the timed region: what is timed is the
        # forward pass and the 16-class decision alone, with the same memory footprint as the measuring path
        # (holding all 1,280 decoded images at once made the forward slower than the whole path).
        elapsed = 0.0
        decisions: list[str] = []
        mapping = None
        with torch.inference_mode():
            for start in range(0, n, args.batch_size):
                paths = table["path"].iloc[start : start + args.batch_size]
                x = torch.stack([transform(load_image(p)) for p in paths]).contiguous(memory_format=torch.channels_last)
                t0 = time.perf_counter()
                logits = inference_forward(model, x)  # the same network calls as the measuring path
                mapping = mapping or resolve_mapping(None, int(logits.shape[-1]))
                decisions += logits_to_decisions(logits.float(), mapping, "mean")[0]
                elapsed += time.perf_counter() - t0
        timings["forward alone"].append(elapsed)
        return decisions

    def run(name: str, threads: int | None) -> list[str]:
        t0 = time.perf_counter()
        trials = classify_stimuli(model, pre, table, name=args.model, batch_size=args.batch_size,
                                  loader_threads=threads)  # fmt: skip
        timings[name].append(time.perf_counter() - t0)
        return list(trials["object_response"])

    timings: dict[str, list[float]] = {"forward alone": [], "sequential": [], "default": [], "overlap 2": []}
    with torch.inference_mode():  # warm-up: oneDNN primitive creation for both batch shapes
        for size in {args.batch_size, n % args.batch_size or args.batch_size}:
            model(torch.zeros(size, 3, 224, 224).contiguous(memory_format=torch.channels_last))
    reference = None
    for r in range(args.rounds):
        for name, fn in (("forward alone", forward_alone), ("sequential", lambda: run("sequential", 0)),
                         ("default", lambda: run("default", None)),
                         ("overlap 2", lambda: run("overlap 2", 2))):  # fmt: skip
            decisions = fn()
            reference = reference or decisions
            assert decisions == reference, f"{name}: decisions differ"
            print(f"round {r + 1} {name:<14} {timings[name][-1]:7.1f} s", flush=True)
    med = print_medians(timings, f"{args.model}, {n} cue-conflict stimuli, batch {args.batch_size}, torch threads "
                        f"{torch.get_num_threads()}, median of {args.rounds} interleaved rounds; decisions identical "
                        "in every run")  # fmt: skip
    print(f"default / sequential: {med['default'] / med['sequential']:.2f}")


def print_medians(timings: dict[str, list[float]], header: str) -> dict[str, float]:
    """Print the machine, ``header`` and each variant's median with its ratio to the forward alone."""
    med = {k: statistics.median(v) for k, v in timings.items()}
    print_machine()
    print(header)
    for name, seconds in med.items():
        print(f"  {name:<18} {seconds:7.1f} s   {seconds / med['forward alone']:.2f}x forward alone")
    return med


def whole_command(args: argparse.Namespace) -> None:
    """``texturebias shape-bias`` wall time (fresh process, fresh output) vs the forward alone on its stimuli."""
    tables = []
    for set_name in STIMULUS_SETS:
        folder = _set_folder(set_name, args.stimuli, download=False)
        if folder is not None:
            tables.append(stimulus_table(folder, cue_conflict=set_name == "cue-conflict"))
    paths = [p for t in tables for p in t["path"]]
    model, pre = load_model(args.model)
    model = model.eval().to(memory_format=torch.channels_last)
    transform = pre.eval_transform("auto")
    timings: dict[str, list[float]] = {"forward alone": [], "shape-bias command": []}
    if args.baseline_src:
        timings["baseline command"] = []

    def forward_alone() -> None:
        elapsed = 0.0
        with torch.inference_mode():
            for start in range(0, len(paths), args.batch_size):
                batch = paths[start : start + args.batch_size]
                x = torch.stack([transform(load_image(p)) for p in batch]).contiguous(memory_format=torch.channels_last)
                t0 = time.perf_counter()
                inference_forward(model, x)
                elapsed += time.perf_counter() - t0
        timings["forward alone"].append(elapsed)

    def command(src: str | None = None) -> None:
        with tempfile.TemporaryDirectory() as out:
            cmd = [sys.executable, "-m", "texturebias", "shape-bias", "--model", args.model, "--out", out,
                   "--batch-size", str(args.batch_size)]  # fmt: skip
            if args.stimuli:
                cmd += ["--stimuli", args.stimuli]
            # PYTHONPATH comes before the editable install, so the baseline runs its own checkout's code.
            env = {**os.environ, "PYTHONPATH": str(Path(src).resolve() / "src")} if src else None
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
            timings["baseline command" if src else "shape-bias command"].append(time.perf_counter() - t0)

    runs = [("forward alone", forward_alone), ("shape-bias command", command)]
    if args.baseline_src:
        runs.append(("baseline command", lambda: command(args.baseline_src)))
    with torch.inference_mode():
        model(torch.zeros(2, 3, 224, 224).contiguous(memory_format=torch.channels_last))
    for r in range(args.rounds):
        for name, fn in runs:
            fn()
            print(f"round {r + 1} {name:<18} {timings[name][-1]:7.1f} s", flush=True)
    print_medians(timings, f"{args.model}, {len(paths)} stimuli ({len(tables)} sets), batch {args.batch_size}, "
                  f"torch threads {torch.get_num_threads()}, median of {args.rounds} interleaved rounds")  # fmt: skip


if __name__ == "__main__":
    main()
