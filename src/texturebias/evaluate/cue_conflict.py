"""Evaluate a model on the cue-conflict (and edge / silhouette) stimuli and analyse trial CSVs.

The protocol of Geirhos et al. (ICLR 2019), REFERENCE §3: 224×224 stimuli fed without resize or crop
(``resize="auto"``) with the model's own normalisation, softmax over all outputs, 16-class decision by
``mean`` aggregation (``sum``/``max`` selectable), one trial per image written in the human trial-CSV schema.

API:

- :func:`evaluate_shape_bias` → :class:`ModelShapeBias`; writes ``<out>/<name>/cue-conflict_<name>_session-1.csv``
  (plus ``edge_…``/``silhouette_…`` when those sets are found) and ``summary.json``.
- :func:`classify_stimuli` → trial table of one model on one stimulus folder (no files written).
- :func:`shape_bias_report` → several models + humans + existing CSVs, figures and ``results.json``.
- :func:`human_trials_of_set` → the human trials of ``cue-conflict``/``edge``/``silhouette``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from texturebias.data.datasets import dataset_dir, env_data_root, folder_in_root, get_dataset
from texturebias.data.images import (
    UnreadableImage,
    check_readable,
    describe_unreadable,
    find_images,
    load_image,
    readable_or_failed,
    write_failed_csv,
)
from texturebias.data.labels import CATEGORIES, texture_category
from texturebias.data.loader import prefetch_batches
from texturebias.errors import DataError, ImageReadError, TextureBiasError, UsageError
from texturebias.evaluate.figures import plot_shape_bias_matrix, plot_shape_bias_summary
from texturebias.evaluate.mapping import Aggregation, CategoryMapping, logits_to_decisions, resolve_mapping
from texturebias.evaluate.metrics import (
    HUMANS,
    ShapeBias,
    accuracy,
    analyze_trials,
    average_consistency,
    bootstrap_shape_bias,
    consistency_table,
    human_human_consistency,
    shape_bias,
)
from texturebias.evaluate.trials import (
    TRIAL_COLUMNS,
    load_human_trials,
    model_imagename,
    reuse_trials,
    write_trials,
)
from texturebias.models import Preprocessing, load_model, resolve_preprocessing
from texturebias.utils.device import autocast, inference_forward, resolve_device
from texturebias.utils.io import file_identity, finite_or_none, json_safe, prepare_output_dir, write_json
from texturebias.utils.progress import get_logger, progress

STIMULUS_SETS: tuple[str, ...] = ("cue-conflict", "edge", "silhouette")
# The experiment codes in the human imagenames (0001_s5n_s01_...), reused for model rows.
_SET_CODES = {"cue-conflict": "s5n", "edge": "edg", "silhouette": "sif"}
_log = get_logger(__name__)


@dataclass
class ModelShapeBias:
    """Result of :func:`evaluate_shape_bias` for one model.

    Attributes:
        name: Decision-maker name (``subj`` column, file names).
        shape: Shape-bias result on the cue-conflict stimuli.
        ci: Bootstrap 95 % CI of the shape bias over images.
        accuracy: 16-class accuracy per evaluated set (cue conflict: the shape class counts as correct).
        consistency: Per set, the model-vs-humans averages (observed/error consistency, accuracy difference)
            and the human-human baseline.
        files: Paths written.
    """

    name: str
    shape: ShapeBias
    ci: tuple[float, float]
    accuracy: dict[str, float] = field(default_factory=dict)
    consistency: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    failed: dict[str, list[UnreadableImage]] = field(default_factory=dict)


def safe_name(name: str) -> str:
    """A decision-maker name usable in file names (``/`` and spaces replaced)."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", name).strip("_") or "model"


def stimulus_table(folder: str | os.PathLike[str], *, cue_conflict: bool) -> pd.DataFrame:
    """Index a stimulus folder laid out ``<category>/<file>.png``: columns ``path, category, stimulus``.

    Raises:
        DataError: empty folder, files outside a category folder, unknown categories, unparsable
            cue-conflict names, or (``cue_conflict``) no stimulus whose texture differs from its shape.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"stimulus folder not found: {root}")
    files = find_images(root)
    if not files:
        raise DataError(f"{root}: no images found")
    rows = []
    for p in files:
        rel = p.relative_to(root)
        if len(rel.parts) != 2 or rel.parts[0] not in CATEGORIES:
            raise DataError(f"{root}: {rel} is not <category>/<file> with one of the 16 categories {CATEGORIES}")
        if cue_conflict and texture_category(p.name) not in CATEGORIES:
            raise DataError(f"{root}: cannot parse the texture class of {rel} (expected <shape><i>-<texture><j>.png)")
        rows.append({"path": p, "category": rel.parts[0], "stimulus": p.name})
    if cue_conflict and all(texture_category(r["stimulus"]) == r["category"] for r in rows):
        # Without a single conflict there is no shape bias to measure (it would be NaN): the wrong folder.
        raise DataError(
            f"{root}: no cue-conflict stimuli (<shape><i>-<texture><j>.png with two different classes); "
            "is this the edge or silhouette set? Pass the cue-conflict folder or a data root as --stimuli"
        )
    return pd.DataFrame(rows)


def stimulus_imagenames(stimuli: pd.DataFrame, set_name: str) -> list[str]:
    """The ``imagename`` :func:`classify_stimuli` gives each row of ``stimuli`` (its trial, when readable)."""
    code = _SET_CODES.get(set_name, "dnn")
    return [
        model_imagename(i + 1, code, 0, c, s)
        for i, (c, s) in enumerate(zip(stimuli["category"], stimuli["stimulus"], strict=True))
    ]


def reuse_stimulus_trials(
    csv_path: str | os.PathLike[str],
    config_path: str | os.PathLike[str],
    config: dict[str, object],
    paths: Sequence[Path],
    imagenames: Sequence[str],
) -> tuple[pd.DataFrame, list[UnreadableImage]] | None:
    """Trials of an earlier run with the same settings and the stimuli it could not read, or ``None``.

    The trials are reused only when every stimulus without a trial is still unreadable (re-checked, which
    costs nothing when none failed): an image repaired since the last run is evaluated, not left out again.

    Args:
        csv_path, config_path, config: As in :func:`~texturebias.evaluate.trials.reuse_trials`.
        paths: The stimulus files, in order.
        imagenames: The trial ``imagename`` of each stimulus.
    """
    trials = reuse_trials(csv_path, config_path, config)
    if trials is None:
        return None
    have = set(trials["imagename"])
    missing = [p for p, n in zip(paths, imagenames, strict=True) if n not in have]
    if len(trials) + len(missing) != len(paths) or not have <= set(imagenames):
        return None
    failed = check_readable(missing)
    if len(failed) != len(missing):
        return None
    return trials, failed


@torch.inference_mode()
def classify_stimuli(
    model: nn.Module,
    preprocessing: Preprocessing,
    stimuli: pd.DataFrame,
    *,
    name: str,
    set_name: str = "cue-conflict",
    mapping: str | os.PathLike[str] | CategoryMapping | None = None,
    aggregation: Aggregation = "mean",
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    loader_threads: int | None = None,
    failed: list[UnreadableImage] | None = None,
) -> pd.DataFrame:
    """Run ``model`` on the stimuli of :func:`stimulus_table` and return its trials in the human schema.

    Images of the model's input size are not resized or cropped; larger/smaller ones get the standard
    resize + centre crop of the preprocessing record. The next batches are decoded in background threads
    while the model runs (:func:`~texturebias.data.loader.prefetch_batches`); the decisions do not depend
    on ``loader_threads`` (``None``: default count; ``0``: decode in this thread, no overlap).

    Stimuli that cannot be read are appended to ``failed`` and have no trial (the others keep their trial
    number and image name, so the rows pair with the human trials as usual); with ``failed=None`` the first
    one raises :class:`~texturebias.errors.ImageReadError`. When none can be read, :class:`DataError`.
    Rows follow ``stimuli`` with the failed ones left out.
    """
    dev = resolve_device(device)
    # channels_last: ~1.5x faster convolutions on CPU (measured on EfficientNet-Lite0), same results.
    model = model.eval().to(dev, memory_format=torch.channels_last)
    transform = preprocessing.eval_transform("auto")
    decisions: list[str] = []
    resolved: CategoryMapping | None = mapping if isinstance(mapping, CategoryMapping) else None
    paths = list(stimuli["path"])
    load = readable_or_failed(lambda p: transform(load_image(p)))
    batches = prefetch_batches(paths, load, batch_size=batch_size, threads=loader_threads)
    kept: list[int] = []
    unreadable: list[UnreadableImage] = []
    for start, loaded in zip(
        range(0, len(paths), batch_size),
        progress(batches, total=math.ceil(len(paths) / batch_size), desc=f"{set_name} {name}", unit="batch"),
        strict=True,
    ):
        images = []
        for i, x in enumerate(loaded, start):
            if isinstance(x, UnreadableImage):
                if failed is None:
                    raise ImageReadError(f"{x.path}: {x.reason}")
                unreadable.append(x)
            else:
                kept.append(i)
                images.append(x)
        if not images:
            continue
        x = torch.stack(images).to(dev, memory_format=torch.channels_last)
        with autocast(dev, precision):  # type: ignore[arg-type]
            logits = inference_forward(model, x)
        if resolved is None:
            resolved = resolve_mapping(mapping, int(logits.shape[-1]))  # type: ignore[arg-type]
        decisions += logits_to_decisions(logits.float(), resolved, aggregation)[0]
    if failed is not None:
        failed.extend(unreadable)
    if paths and not kept:
        raise DataError(f"none of the {len(paths)} {set_name} images could be read: {describe_unreadable(unreadable)}")
    n = len(kept)
    categories, imagenames = list(stimuli["category"]), stimulus_imagenames(stimuli, set_name)
    return pd.DataFrame(
        {
            "subj": [name] * n,
            "session": [1] * n,
            "trial": [i + 1 for i in kept],
            "rt": [math.nan] * n,
            "object_response": decisions,
            "category": [categories[i] for i in kept],
            "condition": ["0"] * n,
            "imagename": [imagenames[i] for i in kept],
        },
        columns=list(TRIAL_COLUMNS),
    )


def _set_folder(set_name: str, stimuli: str | os.PathLike[str] | None, *, download: bool) -> Path | None:
    """Folder of a stimulus set; for edge/silhouette ``None`` when unavailable (they are optional)."""
    if set_name == "cue-conflict":
        return dataset_dir(set_name, stimuli, download=download)
    ds = get_dataset(set_name)
    # An explicit --stimuli is the only place looked at: edge/silhouette sets from $TEXTUREBIAS_DATA would
    # silently mix another copy of the data into a run that named its own.
    roots = [Path(stimuli)] if stimuli is not None else [r for r in (env_data_root(),) if r is not None]
    for root in roots:
        if folder_in_root(ds, root).is_dir():
            return folder_in_root(ds, root)
    if stimuli is not None or env_data_root() is not None:
        return None
    try:
        return dataset_dir(set_name, download=download, show_progress=False)
    except TextureBiasError as exc:
        _log.warning("skipping %s: %s", set_name, exc)
        return None


def human_trials_of_set(
    set_name: str, data_root: str | os.PathLike[str] | None = None, *, download: bool = True
) -> pd.DataFrame | None:
    """Human trials of a stimulus set (``cue-conflict``, ``edge``, ``silhouette``), or ``None`` if unavailable."""
    try:
        return load_human_trials(f"{set_name}-humans", data_root, download=download)
    except TextureBiasError as exc:
        _log.warning("no human data for %s: %s", set_name, exc)
        return None


def _config(
    model_name: str,
    checkpoint: str | os.PathLike[str] | None,
    checkpoint_identity: dict[str, Any] | None,
    mapping: object,
    aggregation: str,
    precision: str,
    folder: Path,
    preprocessing: Preprocessing,
) -> dict[str, object]:
    # The resolved preprocessing is part of the settings: trials made with another mean/std/size/crop
    # (a --mean/--crop-pct override, or a changed timm config) are recomputed, not reused.
    return {
        "model": model_name,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        # The file's content (utils.io.file_identity), not its path: train overwrites checkpoint_best.pt in place.
        "checkpoint_identity": checkpoint_identity,
        "mapping": str(mapping) if mapping is not None else "auto",
        "aggregation": aggregation,
        "precision": precision,
        "stimuli": str(folder.resolve()),
        "preprocessing": preprocessing.to_dict(),
    }


def evaluate_shape_bias(
    model_name: str = "efficientnet_lite0",
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    name: str | None = None,
    stimuli: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] = "shape-bias",
    aggregation: Aggregation = "mean",
    mapping: str | os.PathLike[str] | None = None,
    sets: Sequence[str] = STIMULUS_SETS,
    batch_size: int = 32,
    device: str = "auto",
    precision: str = "fp32",
    n_boot: int = 10_000,
    seed: int = 0,
    download: bool = True,
    human_consistency: bool = True,
    model: nn.Module | None = None,
    preprocessing_overrides: Mapping[str, Any] | None = None,
) -> ModelShapeBias:
    """Evaluate one model on the cue-conflict stimuli (and edge/silhouette when available).

    Writes into ``<out_dir>/<name>/``: ``<set>_<name>_session-1.csv`` per set (human trial schema) and
    ``summary.json``. A rerun with the same configuration reuses the existing trial CSVs (resumable per set).

    Args:
        model_name: Registered model; its weight record gives the preprocessing.
        checkpoint: Local weights instead of the declared pretrained ones.
        name: Decision-maker name in the CSVs (default: the model name, plus the checkpoint's stem).
        stimuli: Local copy: the cue-conflict folder itself, or a data root laid out like ``shared/data``.
        out_dir: Output folder.
        aggregation: "mean" (default), "sum" or "max".
        mapping: "auto", "imagenet16", "identity16" or a JSON mapping file (see :mod:`.mapping`).
        sets: Stimulus sets to evaluate; edge/silhouette are skipped with a warning when not found.
        batch_size: Images per forward pass.
        device: "auto", "cpu", "cuda", ...
        precision: "fp32" (default, exact), "bf16" or "fp16".
        n_boot: Bootstrap resamples for the CI.
        seed: Bootstrap seed.
        download: Allow downloading missing data into the cache.
        human_consistency: Also compute error consistency against each human subject.
        model: An already-built module to evaluate instead of building ``model_name`` (its preprocessing is
            still taken from ``model_name``).
        preprocessing_overrides: Fields replacing the model's preprocessing (``mean``, ``std``, ``input_size``,
            ``crop_pct`` or ``resize_size``, ``interpolation``); see :func:`~texturebias.models.resolve_preprocessing`.
    """
    unknown = [s for s in sets if s not in STIMULUS_SETS]
    if unknown or "cue-conflict" not in sets:
        raise TextureBiasError(f"sets must include cue-conflict and be among {STIMULUS_SETS}, got {list(sets)}")
    if name is None:
        name = model_name if checkpoint is None else f"{model_name}_{Path(checkpoint).stem}"
    folder_name = safe_name(name)
    out = prepare_output_dir(Path(out_dir) / folder_name)
    folders = {s: _set_folder(s, stimuli, download=download) for s in sets}
    preprocessing = resolve_preprocessing(model_name, checkpoint, overrides=preprocessing_overrides)
    net: nn.Module | None = model
    dev = resolve_device(device)
    result_trials: dict[str, pd.DataFrame] = {}
    files: dict[str, Path] = {}
    failed: dict[str, list[UnreadableImage]] = {}
    checkpoint_identity = file_identity(checkpoint)  # hashed once, not once per stimulus set
    for set_name, folder in folders.items():
        if folder is None:
            _log.warning("%s stimuli not found; skipped", set_name)
            continue
        table = stimulus_table(folder, cue_conflict=set_name == "cue-conflict")
        csv_path = out / f"{set_name}_{folder_name}_session-1.csv"
        config_path = out / f".{set_name}.config.json"
        config = _config(
            model_name, checkpoint, checkpoint_identity, mapping, aggregation, precision, folder, preprocessing
        )
        paths = list(table["path"])
        reused = reuse_stimulus_trials(csv_path, config_path, config, paths, stimulus_imagenames(table, set_name))
        if reused is None:
            if net is None:
                net, preprocessing = load_model(model_name, checkpoint, preprocessing_overrides=preprocessing_overrides)
            set_failed: list[UnreadableImage] = []
            trials = classify_stimuli(
                net, preprocessing, table, name=name, set_name=set_name, mapping=mapping,
                aggregation=aggregation, batch_size=batch_size, device=dev, precision=precision, failed=set_failed,
            )  # fmt: skip
            write_trials(csv_path, trials)
            write_json(config_path, config)
        else:
            trials, set_failed = reused
        result_trials[set_name] = trials
        files[set_name] = csv_path
        # failed.csv names each input by its set and its place in the set's folder: cue-conflict/cat/cat1-dog2.png
        failed[set_name] = [UnreadableImage(Path(set_name) / f.path.relative_to(folder), f.reason) for f in set_failed]
    files["failed"] = write_failed_csv(out, [f for fs in failed.values() for f in fs])

    cc = result_trials["cue-conflict"]
    sb = shape_bias(cc)
    ci = bootstrap_shape_bias(cc, n_boot=n_boot, seed=seed)
    acc = {s: accuracy(t) for s, t in result_trials.items()}
    consistency: dict[str, dict[str, dict[str, float]]] = {}
    if human_consistency:
        root = Path(stimuli) if stimuli is not None else env_data_root()
        for set_name, trials in result_trials.items():
            humans = human_trials_of_set(set_name, root, download=download)
            if humans is None or humans.empty:
                continue
            try:
                model_vs = average_consistency(consistency_table(trials, humans))
            except DataError as exc:  # a custom stimulus set shares no images with the human experiment
                _log.warning("no consistency for %s: %s", set_name, exc)
                continue
            consistency[set_name] = {"model_vs_humans": model_vs, "human_vs_human": _human_baseline(set_name, humans)}
    result = ModelShapeBias(name, sb, ci, acc, consistency, files, failed)
    files["summary"] = write_json(out / "summary.json", summary_dict(result, aggregation=aggregation, n_boot=n_boot))
    return result


_BASELINES: dict[tuple[str, int], dict[str, float]] = {}


def _human_baseline(set_name: str, humans: pd.DataFrame) -> dict[str, float]:
    # 45 subject pairs on cue conflict take a few seconds; cache per process for multi-model runs.
    key = (set_name, len(humans))
    if key not in _BASELINES:
        _BASELINES[key] = human_human_consistency(humans)
    return _BASELINES[key]


def summary_dict(result: ModelShapeBias, *, aggregation: str = "mean", n_boot: int = 10_000) -> dict[str, object]:
    """The JSON written as ``summary.json``."""

    return {
        "name": result.name,
        "aggregation": aggregation,
        **result.shape.to_dict(),
        "shape_bias_ci95": [finite_or_none(result.ci[0]), finite_or_none(result.ci[1])],
        "bootstrap": {"n_boot": n_boot, "resampled": "images"},
        "accuracy_16class": {k: finite_or_none(v) for k, v in result.accuracy.items()},
        "consistency": json_safe(result.consistency),
        "files": {k: Path(v).name for k, v in result.files.items()},
        "failed": {k: len(v) for k, v in result.failed.items()},
        "n_failed": sum(len(v) for v in result.failed.values()),
    }


@dataclass
class ShapeBiasReport:
    """Result of :func:`shape_bias_report`: every decision maker's shape bias and the files written."""

    models: list[ModelShapeBias]
    results: dict[str, ShapeBias]
    ci: dict[str, tuple[float, float]]
    figures: list[Path]
    results_file: Path


def shape_bias_report(
    models: Sequence[str] = ("efficientnet_lite0",),
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    name: str | None = None,
    stimuli: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] = "shape-bias",
    compare: Sequence[str | os.PathLike[str]] = (),
    humans: bool = True,
    n_boot: int = 10_000,
    seed: int = 0,
    **evaluate_kwargs: object,
) -> ShapeBiasReport:
    """Evaluate several models, add humans and existing trial CSVs, write one figure set and ``results.json``.

    Args:
        models: Registered model names (each evaluated with :func:`evaluate_shape_bias`).
        checkpoint: Local weights (only with a single model).
        name: Decision-maker name (only with a single model).
        stimuli: Local stimuli (cue-conflict folder or a data root).
        out_dir: Output folder: ``<name>/`` per model, ``shape-bias-matrix.{png,pdf}``,
            ``shape-bias-summary.{png,pdf}``, ``results.json``.
        compare: Further cue-conflict trial CSVs or folders to include (e.g. published model results).
        humans: Include the pooled human observers (from the human data of the registry / local copy).
        n_boot: Bootstrap resamples.
        seed: Bootstrap seed.
        **evaluate_kwargs: Passed to :func:`evaluate_shape_bias` (aggregation, mapping, batch_size, device, ...).
    """
    if (checkpoint is not None or name is not None) and len(models) != 1:
        raise UsageError("--checkpoint and --name need exactly one --model")
    out = prepare_output_dir(out_dir)
    results: dict[str, ShapeBias] = {}
    ci: dict[str, tuple[float, float]] = {}
    if humans:
        root = Path(stimuli) if stimuli is not None else env_data_root()
        human_trials = human_trials_of_set("cue-conflict", root, download=bool(evaluate_kwargs.get("download", True)))
        if human_trials is not None and not human_trials.empty:
            results[HUMANS] = shape_bias(human_trials)
            ci[HUMANS] = bootstrap_shape_bias(human_trials, n_boot=n_boot, seed=seed)
    evaluated = []
    for model_name in models:
        r = evaluate_shape_bias(
            model_name, checkpoint=checkpoint, name=name, stimuli=stimuli, out_dir=out, n_boot=n_boot, seed=seed,
            **evaluate_kwargs,  # type: ignore[arg-type]
        )  # fmt: skip
        evaluated.append(r)
        results[r.name] = r.shape
        ci[r.name] = r.ci
    if compare:
        for who, sb in analyze_trials(compare).items():
            key = who if who not in results else f"{who} (compare)"
            results[key] = sb
    figures = plot_all(results, out, ci=ci)
    payload = {
        who: {**sb.to_dict(), "shape_bias_ci95": [finite_or_none(x) for x in ci.get(who, (math.nan, math.nan))]}
        for who, sb in results.items()
    }
    results_file = write_json(out / "results.json", payload)
    return ShapeBiasReport(evaluated, results, ci, figures, results_file)


def plot_all(
    results: dict[str, ShapeBias], out_dir: str | os.PathLike[str], *, ci: dict[str, tuple[float, float]] | None = None
) -> list[Path]:
    """Matrix and summary figures (PNG + PDF) into ``out_dir``."""

    out = Path(out_dir)
    return plot_shape_bias_matrix(results, out / "shape-bias-matrix") + plot_shape_bias_summary(
        results, out / "shape-bias-summary", ci=ci
    )
