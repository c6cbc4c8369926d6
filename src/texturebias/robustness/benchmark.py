"""The model-vs-human benchmark (Geirhos et al., NeurIPS 2021) in PyTorch, without TensorFlow or LaTeX.

A model is run on the 17 out-of-distribution datasets, its decisions are written in the human trial schema
(:mod:`texturebias.evaluate.trials`) and compared with the human observers' trials:

- **OOD accuracy**: 16-class top-1 pooled over a dataset's non-excluded conditions, averaged over datasets
  (cue conflict counts the shape class as correct);
- **accuracy difference**: (acc_model − acc_human)² per (human, condition), averaged over conditions, humans,
  then datasets;
- **observed consistency** and **error consistency** (Cohen's κ) on trials paired by image, same averaging.

Conditions excluded from these metrics (the control and where humans were below 20 %) are MVH's
``EXCLUDE_CONDITIONS`` (REFERENCE §3), kept in :data:`EXCLUDED_CONDITIONS`.

Dataset folders are read in two layouts:

1. the release tarballs (``https://github.com/bethgelab/model-vs-human/releases/download/v0.1/<name>.tar.gz``):
   ``<name>/dnn/session-1/<nnnn>_<code>_dnn_<condition>_<category>_<xx>_<stimulus>.png``;
2. an ImageFolder of the 16 categories (``<category>/<file>.png``, e.g. the texture-vs-shape stimuli for
   cue-conflict, edge and silhouette): condition ``0``, image names built in the same pattern.

API: :func:`index_dataset`, :func:`evaluate_dataset` (model → trial table), :func:`dataset_scores`,
:func:`human_scores`, :func:`run_benchmark` (all of it, with CSVs and figures), :func:`leaderboard`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from texturebias.data.datasets import dataset_dir
from texturebias.data.images import UnreadableImage, find_images, write_failed_csv
from texturebias.data.labels import CATEGORIES
from texturebias.errors import DataError, UsageError
from texturebias.evaluate.cue_conflict import classify_stimuli, reuse_stimulus_trials, safe_name
from texturebias.evaluate.mapping import Aggregation
from texturebias.evaluate.metrics import accuracy, average_consistency, consistency_table, human_human_consistency
from texturebias.evaluate.trials import (
    canonical_condition,
    image_key,
    is_human,
    load_human_trials,
    model_imagename,
    read_trials,
    write_trials,
)
from texturebias.models import Preprocessing, load_model, resolve_preprocessing
from texturebias.robustness.distortions import DISTORTIONS
from texturebias.robustness.figures import plot_accuracy_curves, plot_benchmark_bars
from texturebias.utils.io import atomic_open, file_identity, prepare_output_dir, write_json

#: The 17 datasets, in model-vs-human's order (12 parametric + 5 non-parametric).
MVH_DATASETS: tuple[str, ...] = (
    "colour", "contrast", "high-pass", "low-pass", "phase-scrambling", "power-equalisation", "false-colour",
    "rotation", "eidolonI", "eidolonII", "eidolonIII", "uniform-noise",
    "sketch", "stylized", "edge", "silhouette", "cue-conflict",
)  # fmt: skip
NONPARAMETRIC: tuple[str, ...] = ("sketch", "stylized", "edge", "silhouette", "cue-conflict")
#: Experiment codes in image names of the non-parametric sets (parametric ones: the distortion registry).
_CODES = {"sketch": "ske", "stylized": "sty", "edge": "edg", "silhouette": "sif", "cue-conflict": "s5n"}
RELEASE_URL = "https://github.com/bethgelab/model-vs-human/releases/download/v0.1/{name}.tar.gz"


def _excluded() -> dict[str, tuple[str, ...]]:

    out = {name: DISTORTIONS[name].excluded for name in MVH_DATASETS if name in DISTORTIONS}
    out.update({name: () for name in NONPARAMETRIC})
    return out


#: MVH ``plotting/plot.py::EXCLUDE_CONDITIONS``: per dataset, conditions left out of every benchmark metric.
EXCLUDED_CONDITIONS: dict[str, tuple[str, ...]] = _excluded()


def dataset_code(name: str) -> str:
    """The experiment code used in image names (``nse`` for uniform noise, ``s5n`` for cue conflict ...)."""

    if name in DISTORTIONS:
        return DISTORTIONS[name].code
    return _CODES.get(name, "img")


def conditions_of(name: str) -> tuple[str, ...]:
    """Condition strings of a dataset in plotting order (``("0",)`` for the non-parametric ones)."""

    return DISTORTIONS[name].conditions if name in DISTORTIONS else ("0",)


@dataclass(frozen=True)
class DatasetImage:
    """One image of a benchmark dataset.

    Attributes:
        path: The file.
        imagename: Its name in the trial schema (``0001_nse_dnn_0.03_elephant_10_n02504458_7209.png``).
        condition: Condition string as in the file name.
        category: True (shape) category.
        session: Session number (1 unless the folder has several).
    """

    path: Path
    imagename: str
    condition: str
    category: str
    session: int = 1


_SESSION = re.compile(r"^session-(\d+)$")


def index_dataset(root: str | os.PathLike[str], name: str | None = None) -> list[DatasetImage]:
    """List a dataset folder's images with condition and category, in either supported layout.

    Args:
        root: The dataset folder (``<name>/`` of a release tarball, with ``dnn/session-*/``; or a folder of the
            16 category sub-folders).
        name: Dataset name (for the experiment code of built image names); default: the folder name.

    Raises:
        DataError: neither layout, empty, or an image name that does not parse.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}")
    name = name or root.name
    if not (root / "dnn").is_dir() and (root / name / "dnn").is_dir():
        root = root / name  # an extracted release tarball: <folder>/<name>/dnn/session-1
    dnn = root / "dnn"
    out: list[DatasetImage] = []
    if dnn.is_dir():
        sessions = sorted((p for p in dnn.iterdir() if p.is_dir()), key=lambda p: p.name)
        for session in sessions:
            m = _SESSION.match(session.name)
            if not m:
                raise DataError(f"{session}: expected only session-<n> folders under {dnn}")
            for path in find_images(session, recursive=False):
                parts = path.name.split("_")
                if len(parts) < 6:
                    raise DataError(f"{path}: image name does not follow <n>_<code>_dnn_<condition>_<category>_...")
                category = parts[4].lower()
                if category not in CATEGORIES:
                    raise DataError(f"{path}: category {parts[4]!r} is not one of the 16")
                out.append(DatasetImage(path, path.name, parts[3], category, int(m.group(1))))
    else:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        unknown = [p.name for p in folders if p.name.lower() not in CATEGORIES]
        if not folders or unknown:
            raise DataError(
                f"{root}: expected dnn/session-*/ (model-vs-human release layout) or sub-folders named after the "
                f"16 categories; found {', '.join(unknown[:5]) or 'no sub-folders'}"
            )
        code = dataset_code(name)
        for folder in folders:
            for path in find_images(folder, recursive=False):
                out.append(DatasetImage(path, "", "0", folder.name.lower()))
        out = [
            DatasetImage(d.path, model_imagename(i + 1, code, 0, d.category, d.path.name), d.condition, d.category)
            for i, d in enumerate(out)
        ]
    if not out:
        raise DataError(f"{root}: no images found")
    return out


def evaluate_dataset(
    model_name: str,
    root: str | os.PathLike[str],
    name: str | None = None,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    subject: str | None = None,
    mapping: str | None = None,
    aggregation: Aggregation = "mean",
    batch_size: int = 32,
    device: str = "auto",
    precision: str = "fp32",
    model: object | None = None,
    preprocessing_overrides: Mapping[str, Any] | None = None,
    failed: list[UnreadableImage] | None = None,
    images: Sequence[DatasetImage] | None = None,
) -> pd.DataFrame:
    """Run a model on a benchmark dataset folder and return its trials in the human schema.

    Images are fed as model-vs-human does for 224 px datasets: no resize or crop when they already have the
    model's input size, the model's normalisation; decisions are the argmax of the 16 aggregated probabilities.

    Args:
        model_name: Registry name (also the ``subj`` value unless ``subject`` is given).
        root: Dataset folder (see :func:`index_dataset`).
        name: Dataset name; default the folder name.
        checkpoint: Local weights instead of the declared pretrained ones.
        subject: ``subj`` value written to the trials.
        mapping: Category mapping spec (see :func:`~texturebias.evaluate.mapping.resolve_mapping`).
        aggregation: "mean" (default) or "sum"/"max" over a category's member probabilities.
        batch_size: Images per forward pass.
        device: "auto", "cpu", "cuda", ...
        precision: "fp32" or "bf16" (CPU AMX / GPU) or "fp16" (GPU).
        model: An already built ``nn.Module`` to use instead of creating ``model_name`` (tests, notebooks).
        preprocessing_overrides: Fields replacing the model's preprocessing (``mean``, ``std``, ``input_size``,
            ``crop_pct`` or ``resize_size``, ``interpolation``); see :func:`~texturebias.models.resolve_preprocessing`.
        failed: Collects the images that cannot be read, which get no trial; ``None``: the first one raises.
        images: The folder's index when the caller already has it (:func:`index_dataset`).
    """

    images = list(images) if images is not None else index_dataset(root, name)
    if model is None:
        model, preprocessing = load_model(model_name, checkpoint, preprocessing_overrides=preprocessing_overrides)
    else:
        preprocessing = Preprocessing().with_overrides(preprocessing_overrides)
    stimuli = pd.DataFrame(
        {"path": [d.path for d in images], "category": [d.category for d in images],
         "stimulus": [d.path.name for d in images]}
    )  # fmt: skip
    # The shared decision loop of the cue-conflict evaluation; conditions and names come from our index.
    unreadable: list[UnreadableImage] = []
    trials = classify_stimuli(model, preprocessing, stimuli, name=subject or model_name,  # type: ignore[arg-type]
                              set_name=name or Path(root).name, mapping=mapping, aggregation=aggregation,
                              batch_size=batch_size, device=device, precision=precision,
                              failed=unreadable if failed is not None else None)  # fmt: skip
    if failed is not None:
        failed.extend(unreadable)
        bad = {f.path for f in unreadable}
        images = [d for d in images if d.path not in bad]  # the rows of `trials`
    trials["session"] = [d.session for d in images]
    trials["condition"] = [d.condition.lower() for d in images]
    trials["imagename"] = [d.imagename for d in images]
    return trials


# ------------------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------------------


def _keep(trials: pd.DataFrame, dataset: str) -> pd.DataFrame:
    excluded = {canonical_condition(c) for c in EXCLUDED_CONDITIONS.get(dataset, ())}
    conds = trials["condition"].map(canonical_condition)
    return trials[~conds.isin(excluded)]


def accuracy_by_condition(trials: pd.DataFrame, conditions: Sequence[str] | None = None) -> pd.DataFrame:
    """16-class accuracy per (subj, condition): columns ``subj, condition, n, correct, accuracy``.

    Conditions are compared by :func:`~texturebias.evaluate.trials.canonical_condition` ("0.60" = "0.6") and
    reported as given in ``conditions`` (in that order) when given, else as found.
    """
    df = trials.assign(
        cond_key=trials["condition"].map(canonical_condition),
        correct=(trials["object_response"] == trials["category"]).astype(int),
    )
    table = df.groupby(["subj", "cond_key"], sort=False).agg(n=("correct", "size"), correct=("correct", "sum"))
    table = table.reset_index()
    table["accuracy"] = table["correct"] / table["n"]
    if conditions is not None:
        order = {canonical_condition(c): i for i, c in enumerate(conditions)}
        label = {canonical_condition(c): c for c in conditions}
        table = table[table["cond_key"].isin(order)]
        table = table.assign(_o=table["cond_key"].map(order)).sort_values(["subj", "_o"], kind="stable")
        table["condition"] = table["cond_key"].map(label)
        table = table.drop(columns="_o")
    else:
        table["condition"] = table["cond_key"]
    return table[["subj", "condition", "n", "correct", "accuracy"]].reset_index(drop=True)


def accuracy_report(paths: Sequence[str | os.PathLike[str]], *, pool_humans: bool = True) -> pd.DataFrame:
    """Accuracy per condition from any trial CSVs (``texturebias analyze --accuracy``).

    Args:
        paths: Trial CSV files or folders (humans and/or models, human schema).
        pool_humans: Pool the human subjects (``subject-NN``) into one decision maker ``humans``.

    Returns:
        ``subj, condition, n, correct, accuracy``; conditions in the order of the distortion registry when all
        of them belong to one known distortion, else in order of appearance.
    """

    trials = read_trials(list(paths))
    if pool_humans:
        trials = trials.assign(subj=[("humans" if is_human(s) else s) for s in trials["subj"]])
    found = {canonical_condition(c) for c in trials["condition"]}
    for dist in DISTORTIONS.values():
        if found <= {canonical_condition(c) for c in dist.conditions} and len(found) > 1:
            return accuracy_by_condition(trials, dist.conditions)
    return accuracy_by_condition(trials)


def dataset_scores(model_trials: pd.DataFrame, human_trials: pd.DataFrame, dataset: str) -> dict[str, float]:
    """The benchmark metrics of one decision maker on one dataset.

    Returns:
        ``ood_accuracy`` (pooled over non-excluded conditions), ``accuracy_difference``,
        ``observed_consistency``, ``error_consistency`` (averaged over conditions, then humans), ``n_trials``
        and ``n_subjects``.
    """

    kept = _keep(model_trials, dataset)
    if kept.empty:
        raise DataError(f"{dataset}: no model trials outside the excluded conditions")
    table = consistency_table(model_trials, human_trials, excluded_conditions=EXCLUDED_CONDITIONS.get(dataset, ()))
    avg = average_consistency(table)
    return {
        "ood_accuracy": accuracy(kept),
        "accuracy_difference": avg["accuracy_difference"],
        "observed_consistency": avg["observed_consistency"],
        "error_consistency": avg["error_consistency"],
        "n_trials": int(len(kept)),
        "n_subjects": int(avg["n_subjects"]),
    }


def human_scores(human_trials: pd.DataFrame, dataset: str) -> dict[str, float]:
    """The human reference on one dataset: mean per-subject OOD accuracy and human-vs-human metrics.

    Each subject is compared with every *other* subject (leave-one-out), as model-vs-human's "humans" entry.
    """

    kept = _keep(human_trials, dataset)
    per_subject = [accuracy(g) for _, g in kept.groupby("subj")]
    hh = human_human_consistency(human_trials, excluded_conditions=EXCLUDED_CONDITIONS.get(dataset, ()))
    return {
        "ood_accuracy": float(np.mean(per_subject)),
        "accuracy_difference": hh["accuracy_difference"],
        "observed_consistency": hh["observed_consistency"],
        "error_consistency": hh["error_consistency"],
        "n_trials": int(len(kept)),
        "n_subjects": len(per_subject),
    }


def check_coverage(
    model_trials: pd.DataFrame,
    human_trials: pd.DataFrame,
    dataset: str,
    *,
    unreadable: Sequence[DatasetImage] = (),
) -> None:
    """Raise unless the model saw every image the humans saw (pairing by condition + stimulus name).

    This is also the integrity check of a downloaded release tarball, whose sha256 is not recorded. Images
    in ``unreadable`` (recorded in ``failed.csv``) are excused: their trials are left out of every metric.
    """

    seen = {image_key(c, n) for c, n in zip(model_trials["condition"], model_trials["imagename"], strict=True)}
    seen |= {image_key(d.condition, d.imagename) for d in unreadable}
    wanted = {image_key(c, n) for c, n in zip(human_trials["condition"], human_trials["imagename"], strict=True)}
    missing = wanted - seen
    if missing:
        raise DataError(
            f"{dataset}: {len(missing)} of {len(wanted)} human images have no model trial (e.g. "
            f"{sorted(missing)[0]!r}); is the dataset folder complete and in the model-vs-human layout?"
        )


def human_trials_for(dataset: str, raw_data: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Human trials of a model-vs-human dataset (``raw_data``: MVH ``raw-data`` folder; default the registry)."""
    return load_human_trials(f"mvh-humans/{dataset}", raw_data)


# ------------------------------------------------------------------------------------------------------------
# Whole benchmark
# ------------------------------------------------------------------------------------------------------------

METRICS: tuple[str, ...] = ("ood_accuracy", "accuracy_difference", "observed_consistency", "error_consistency")
_METRIC_LABELS = {
    "ood_accuracy": "OOD accuracy",
    "accuracy_difference": "accuracy difference",
    "observed_consistency": "observed consistency",
    "error_consistency": "error consistency",
}


def leaderboard(per_dataset: pd.DataFrame) -> pd.DataFrame:
    """Average the per-dataset metrics of each decision maker over datasets (model-vs-human's table).

    Args:
        per_dataset: Rows ``subj, dataset`` + :data:`METRICS`.

    Returns:
        One row per ``subj`` with the mean of each metric and ``n_datasets``; sorted by OOD accuracy.
    """
    agg = per_dataset.groupby("subj", sort=False)[list(METRICS)].mean()
    agg["n_datasets"] = per_dataset.groupby("subj", sort=False)["dataset"].nunique()
    return agg.reset_index().sort_values("ood_accuracy", ascending=False, ignore_index=True)


@dataclass
class BenchmarkResult:
    """Outcome of :func:`run_benchmark`: tables and the files written."""

    per_dataset: pd.DataFrame
    per_condition: pd.DataFrame
    leaderboard: pd.DataFrame
    files: list[Path]
    failed: list[UnreadableImage] = field(default_factory=list)


def dataset_folder(name: str, data_root: str | os.PathLike[str] | None = None, *, download: bool = True) -> Path:
    """Where the images of benchmark dataset ``name`` are.

    ``<data_root>/<name>`` when given and present; otherwise the registry: the texture-vs-shape stimuli for
    cue-conflict/edge/silhouette (``$TEXTUREBIAS_DATA`` or the cache), else the release tarball ``mvh/<name>``
    (downloaded into the cache when ``download``).
    """

    if name not in MVH_DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(MVH_DATASETS)}")
    if data_root is not None and (Path(data_root) / name).is_dir():
        return Path(data_root) / name
    if name in ("cue-conflict", "edge", "silhouette"):
        try:
            return dataset_dir(name, download=False)
        except DataError:
            pass
    return dataset_dir(f"mvh/{name}", download=download)


def run_benchmark(
    models: Sequence[str],
    data_root: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
    *,
    datasets: Sequence[str] | None = None,
    human_data: str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    mapping: str | None = None,
    aggregation: Aggregation = "mean",
    batch_size: int = 32,
    device: str = "auto",
    precision: str = "fp32",
    resume: bool = True,
    preprocessing_overrides: Mapping[str, Any] | None = None,
) -> BenchmarkResult:
    """Evaluate models on the model-vs-human datasets found in ``data_root`` and compare them with humans.

    Writes to ``out_dir``: ``raw-data/<dataset>/<dataset>_<model>_session_1.csv`` (trials in the human schema;
    reused when present and ``resume``), ``benchmark_per_dataset.csv``, ``benchmark_per_condition.csv``,
    ``leaderboard.csv``, and figures ``benchmark_<metric>.png/.pdf`` and ``<dataset>_accuracy.png/.pdf``.

    Args:
        models: Registry names.
        data_root: Folder holding one sub-folder per dataset (``<root>/<name>``), in either layout of
            :func:`index_dataset`; ``None``: resolve each dataset with :func:`dataset_folder`.
        out_dir: Output folder.
        datasets: Which datasets (default: every one of :data:`MVH_DATASETS` present in ``data_root``).
        human_data: MVH ``raw-data`` folder (default: registry ``mvh-humans/<name>``).
        checkpoint: Local weights (only with a single model).
        mapping, aggregation, batch_size, device, precision: As in :func:`evaluate_dataset`.
        resume: Reuse trial CSVs already written (only when made with the same settings, preprocessing
            included).
        preprocessing_overrides: Fields replacing the model's preprocessing (``mean``, ``std``, ``input_size``,
            ``crop_pct`` or ``resize_size``, ``interpolation``); see :func:`~texturebias.models.resolve_preprocessing`.

    Raises:
        DataError: no dataset found, unknown dataset, or a checkpoint with several models.
    """
    if checkpoint is not None and len(models) != 1:
        raise UsageError("--checkpoint needs exactly one model")
    if datasets is None:
        if data_root is None:
            raise DataError("name the datasets (--datasets) or give a folder holding them")
        datasets = [d for d in MVH_DATASETS if (Path(data_root) / d).is_dir()]
        if not datasets:
            raise DataError(f"{data_root}: contains none of the model-vs-human datasets ({', '.join(MVH_DATASETS)})")
    unknown = [d for d in datasets if d not in MVH_DATASETS]
    if unknown:
        raise DataError(f"unknown dataset(s) {unknown}; known: {', '.join(MVH_DATASETS)}")
    out = prepare_output_dir(out_dir)
    files: list[Path] = []
    unreadable: dict[Path, UnreadableImage] = {}
    rows, cond_rows = [], []
    # Per model, not per dataset: both read the checkpoint file (its recorded preprocessing, its sha256).
    checkpoint_identity = file_identity(checkpoint)
    preprocessing_of = {
        m: resolve_preprocessing(m, checkpoint, overrides=preprocessing_overrides).to_dict() for m in models
    }
    for dataset in datasets:
        humans = human_trials_for(dataset, human_data)
        conditions = conditions_of(dataset)
        h = human_scores(humans, dataset)
        rows.append({"subj": "humans", "dataset": dataset, **h})
        acc_h = accuracy_by_condition(humans.assign(subj="humans"), conditions)
        cond_rows.append(acc_h.assign(dataset=dataset))
        for model_name in models:
            path = out / "raw-data" / dataset / f"{dataset}_{safe_name(model_name).replace('_', '-')}_session_1.csv"
            # Trials are reused only when they were made with the same settings (sidecar JSON next to them).
            config = {"model": model_name, "dataset": dataset, "checkpoint": str(checkpoint) if checkpoint else None,
                      "preprocessing": preprocessing_of[model_name],
                      "checkpoint_identity": checkpoint_identity,
                      "mapping": mapping, "aggregation": aggregation, "precision": precision}  # fmt: skip
            config_path = path.with_suffix(".json")
            folder = dataset_folder(dataset, data_root)
            images = index_dataset(folder, dataset)
            paths, names = [d.path for d in images], [d.imagename for d in images]
            reused = reuse_stimulus_trials(path, config_path, config, paths, names) if resume else None
            if reused is None:
                failed: list[UnreadableImage] = []
                trials = evaluate_dataset(model_name, folder, dataset, checkpoint=checkpoint, mapping=mapping,
                                          aggregation=aggregation, batch_size=batch_size, device=device,
                                          precision=precision, preprocessing_overrides=preprocessing_overrides,
                                          failed=failed, images=images)  # fmt: skip
                write_trials(path, trials)
                write_json(config_path, config)
            else:
                trials, failed = reused
            files.append(path)
            bad = {f.path for f in failed}
            # failed.csv names each input by its dataset and its place in the dataset's folder.
            for f in failed:
                unreadable[f.path] = UnreadableImage(Path(dataset) / f.path.relative_to(folder), f.reason)
            check_coverage(trials, humans, dataset, unreadable=[d for d in images if d.path in bad])
            rows.append({"subj": model_name, "dataset": dataset, **dataset_scores(trials, humans, dataset)})
            cond_rows.append(accuracy_by_condition(trials.assign(subj=model_name), conditions).assign(dataset=dataset))
    per_dataset = pd.DataFrame(rows)
    per_condition = pd.concat(cond_rows, ignore_index=True)[
        ["dataset", "subj", "condition", "n", "correct", "accuracy"]
    ]
    board = leaderboard(per_dataset)
    for name, table in (
        ("benchmark_per_dataset.csv", per_dataset),
        ("benchmark_per_condition.csv", per_condition),
        ("leaderboard.csv", board),
    ):
        with atomic_open(out / name, "w", encoding="utf-8", newline="") as fh:
            table.to_csv(fh, index=False, float_format="%.6g", lineterminator="\n")
        files.append(out / name)

    for metric in METRICS:
        files += plot_benchmark_bars(per_dataset, metric, out / f"benchmark_{metric}", label=_METRIC_LABELS[metric])
    for dataset in datasets:
        if dataset not in NONPARAMETRIC:
            sub = per_condition[per_condition["dataset"] == dataset]
            files += plot_accuracy_curves(sub, dataset, out / f"{dataset}_accuracy")
    failed_all = list(unreadable.values())
    files.append(write_failed_csv(out, failed_all))
    return BenchmarkResult(per_dataset, per_condition, board, files, failed_all)
