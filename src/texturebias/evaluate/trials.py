"""THE reader and writer of trial CSVs in the human-data schema of texture-vs-shape / model-vs-human.

Schema (REFERENCE §3), one row per trial::

    subj,session,trial,rt,object_response,category,condition,imagename

``subj`` is ``subject-01``… for humans or a model name; ``rt`` seconds or NaN; ``object_response`` one of the
16 categories or ``na`` (no response); ``category`` the true (shape) class; ``condition`` a distortion level
or ``0``; ``imagename`` ends with the stimulus file name, e.g. ``0001_s5n_s01_0_bird_00_bird3-bird2.png``.
Humans and models share the schema, so every analysis treats them alike.

API:

- :func:`read_trials` (file, folder or several of them → one ``pandas.DataFrame`` with exactly
  :data:`TRIAL_COLUMNS`; headers case-insensitive — the parametric model-vs-human sets spell ``Session``;
  ``condition`` and ``object_response`` kept as lower-case *strings*, ``rt`` float with NaN).
- :func:`write_trials` (atomic; ``rt`` NaN written as ``NaN`` like the human files).
- :func:`stimulus_name` (file name shown, with the ``0001_s5n_s01_0_bird_00_`` prefix stripped),
  :func:`texture_category` (cue-conflict texture class from the stimulus name), :func:`canonical_condition`
  (``"0.60"`` and ``"0.6"`` compare equal), :func:`image_key` (condition + stimulus: pairs a model's and a
  human's trial on the same image; :func:`image_keys` and :func:`canonical_conditions` for a whole table),
  :func:`model_imagename` (a model row's imagename in the human pattern), :func:`is_human`,
  :func:`decision_makers`.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from texturebias.data.datasets import dataset_dir, folder_in_root, get_dataset
from texturebias.data.images import FAILED_CSV
from texturebias.data.labels import stimulus_name
from texturebias.errors import DataError, first_line
from texturebias.utils.io import atomic_open
from texturebias.utils.progress import get_logger

_log = get_logger(__name__)

TRIAL_COLUMNS: tuple[str, ...] = (
    "subj", "session", "trial", "rt", "object_response", "category", "condition", "imagename",
)  # fmt: skip
NO_RESPONSE = "na"

# trial number, experiment code, subject code (s01.. for humans, dnn for models), condition, category,
# a two-digit field, then the stimulus file name (which may itself contain underscores: n03662601_12531.png).
_HUMAN = re.compile(r"^subject-\d+$", re.IGNORECASE)


_NOT_TRIAL_FILES = frozenset({FAILED_CSV, "skipped.csv"})


def _csv_files(path: Path) -> list[Path]:
    if path.is_dir():
        # failed.csv/skipped.csv list unreadable inputs next to the trials; they are not trials.
        files = sorted(
            p
            for p in path.rglob("*")
            if p.suffix.lower() == ".csv" and not p.name.startswith(".") and p.name not in _NOT_TRIAL_FILES
        )
        if not files:
            raise DataError(f"{path}: folder contains no .csv trial files")
        return files
    if path.is_file():
        return [path]
    raise DataError(f"trial file or folder not found: {path}")


def _read_one(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, skipinitialspace=True)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: not a readable trial CSV ({first_line(exc)})") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in TRIAL_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (expected {','.join(TRIAL_COLUMNS)})")
    df = df[list(TRIAL_COLUMNS)].copy()
    for col in ("subj", "object_response", "category", "condition", "imagename"):
        df[col] = df[col].str.strip()
    for col in ("object_response", "category", "condition"):
        df[col] = df[col].str.lower()
    # Responses left empty / "nan" in some exports mean "no response", like the humans' "na".
    df.loc[df["object_response"].isin(["", "nan", "none"]), "object_response"] = NO_RESPONSE
    rt = pd.to_numeric(df["rt"].replace({"": "nan", "na": "nan", "NA": "nan"}), errors="coerce")
    bad_rt = rt.isna() & ~df["rt"].str.lower().isin(["", "na", "nan"])
    if bad_rt.any():
        row = int(np.flatnonzero(bad_rt.to_numpy())[0])
        raise DataError(f"{path}: row {row + 2}: rt {df['rt'].iloc[row]!r} is not a number")
    df["rt"] = rt.astype(float)
    for col in ("session", "trial"):
        num = pd.to_numeric(df[col], errors="coerce")
        if num.isna().any():
            row = int(np.flatnonzero(num.isna().to_numpy())[0])
            raise DataError(f"{path}: row {row + 2}: {col} {df[col].iloc[row]!r} is not an integer")
        df[col] = num.astype(int)
    if (df["imagename"] == "").any() or (df["category"] == "").any():
        raise DataError(f"{path}: some rows have an empty category or imagename")
    return df


def read_trials(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> pd.DataFrame:
    """Read one or more trial CSVs (files, or folders searched recursively for ``*.csv``) into one table.

    Args:
        paths: A path or several.

    Returns:
        DataFrame with exactly :data:`TRIAL_COLUMNS`, rows in file order (files sorted within folders).
        ``session``/``trial`` int, ``rt`` float (NaN where missing), all other columns str; ``object_response``,
        ``category`` and ``condition`` lower-cased.

    Raises:
        DataError: missing file/folder, unreadable CSV, missing columns, non-numeric rt/session/trial, no rows.
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise DataError("no trial files given")
    files = [f for item in items for f in _csv_files(Path(item))]
    frames = [_read_one(f) for f in files]
    table = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if table.empty:
        where = str(files[0]) if len(files) == 1 else f"{len(files)} files ({files[0]}, ...)"
        raise DataError(f"{where}: no trials (only a header)")
    return table


def write_trials(path: str | os.PathLike[str], trials: pd.DataFrame) -> Path:
    """Write trials in the human schema atomically (column order of :data:`TRIAL_COLUMNS`, ``rt`` NaN as ``NaN``)."""
    missing = [c for c in TRIAL_COLUMNS if c not in trials.columns]
    if missing:
        raise ValueError(f"trials lack column(s) {missing}")
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        trials[list(TRIAL_COLUMNS)].to_csv(fh, index=False, na_rep="NaN", lineterminator="\n")
    return Path(path)


def reuse_trials(
    csv_path: str | os.PathLike[str],
    config_path: str | os.PathLike[str],
    config: dict[str, object],
    *,
    n: int | None = None,
) -> pd.DataFrame | None:
    """Trials written by an earlier run with the same settings, or ``None`` (then compute them again).

    Args:
        csv_path: The trial CSV.
        config_path: The JSON sidecar written next to it with the settings that made it.
        config: The current settings; the trials are reused only if the sidecar equals it.
        n: Expected number of trials (a run interrupted mid-set is not reused); ``None``: any.
    """
    csv_path, config_path = Path(csv_path), Path(config_path)
    if not (csv_path.is_file() and config_path.is_file()):
        return None
    try:
        if json.loads(config_path.read_text(encoding="utf-8")) != config:
            return None
        trials = read_trials(csv_path)
    except (OSError, ValueError, DataError):
        return None
    if n is not None and len(trials) != n:
        return None
    _log.info("reusing %s", csv_path)
    return trials


def canonical_condition(condition: object) -> str:
    """A condition label that compares equal across spellings.

    ``"0.60"``, ``"0.6"`` and ``0.6`` → ``"0.6"``; ``"0.00"`` → ``"0"``; ``"True"`` → ``"true"``.
    """
    text = str(condition).strip().lower()
    try:
        value = float(text)
    except ValueError:
        return text
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(int(value)) if value.is_integer() else repr(value)


def image_key(condition: object, imagename: str) -> str:
    """Identity of the image shown in a trial (condition + stimulus name), to pair a model's trial with a human's."""
    return f"{canonical_condition(condition)}|{stimulus_name(imagename)}"


def canonical_conditions(conditions: Iterable[object]) -> list[str]:
    """:func:`canonical_condition` of every value; each distinct value is canonicalised once (a table has a few)."""
    # Keyed by type too: True == 1 and hash alike, but canonicalise to "true" and "1".
    canonical: dict[tuple[type, object], str] = {}
    out = []
    for condition in _as_list(conditions):
        memo = (type(condition), condition)
        if memo not in canonical:
            canonical[memo] = canonical_condition(condition)
        out.append(canonical[memo])
    return out


def image_keys(conditions: Iterable[object], imagenames: Iterable[str]) -> list[str]:
    """:func:`image_key` of every trial."""
    return [
        f"{condition}|{stimulus_name(imagename)}"
        for condition, imagename in zip(canonical_conditions(conditions), _as_list(imagenames), strict=True)
    ]


def _as_list(values: Iterable[object]) -> list[object]:
    # Iterating a pandas string column yields element by element through its extension array, ~10x slower.
    tolist = getattr(values, "tolist", None)
    return tolist() if callable(tolist) else list(values)


def model_imagename(trial: int, code: str, condition: object, category: str, stimulus: str) -> str:
    """An ``imagename`` for a model's trial in the human pattern (``0001_s5n_dnn_0_bird_00_bird3-bird2.png``)."""
    return f"{trial:04d}_{code}_dnn_{condition}_{category}_00_{stimulus}"


def is_human(subj: str) -> bool:
    """Whether a ``subj`` value names a human observer (``subject-01`` …)."""
    return bool(_HUMAN.match(str(subj)))


def decision_makers(trials: pd.DataFrame) -> list[str]:
    """The distinct ``subj`` values in first-appearance order."""
    return list(dict.fromkeys(trials["subj"]))


def check_categories(trials: pd.DataFrame, categories: Sequence[str], *, what: str = "trials") -> None:
    """Raise :class:`DataError` when a response or category is neither one of ``categories`` nor ``na``."""
    allowed = set(categories) | {NO_RESPONSE}
    for col in ("object_response", "category"):
        bad = sorted(set(trials[col]) - allowed)
        if bad:
            raise DataError(f"{what}: unknown {col} value(s) {bad[:5]}")


def load_human_trials(name: str, root: str | os.PathLike[str] | None = None, *, download: bool = True) -> pd.DataFrame:
    """The human trials of registry data set ``name`` (``cue-conflict-humans``, ``mvh-humans/<dataset>`` ...).

    The one loader of human data. ``root`` may be a data root laid out like ``shared/data``, a model-vs-human
    ``raw-data`` folder (``<root>/<dataset>/*.csv``), or the folder of CSVs itself; when it holds none of
    these, the registry is used (``$TEXTUREBIAS_DATA``, then the cache, downloading when ``download``).

    Raises:
        DataError, DownloadError: the data are nowhere to be found.
    """
    ds = get_dataset(name)
    folder: Path | None = None
    if root is not None:
        base = Path(root).expanduser()
        leaf = name.rsplit("/", 1)[-1]
        folder = next((c for c in (folder_in_root(ds, base), base / leaf) if c.is_dir()), None)
        if folder is None and base.is_dir() and any(base.glob("*.csv")):
            folder = base
    if folder is None:
        folder = dataset_dir(name, download=download, show_progress=False)
    files = _csv_files(folder)
    # A shape-bias run reads each set's humans once for the report and once per model; the files' sizes and
    # modification times key the copy kept, so an edited file is read again.
    key = tuple((str(f.resolve()), st.st_size, st.st_mtime_ns) for f in files for st in (f.stat(),))
    if key not in _HUMAN_TRIALS:
        trials = read_trials(files)
        if len(_HUMAN_TRIALS) >= 8:
            del _HUMAN_TRIALS[next(iter(_HUMAN_TRIALS))]
        _HUMAN_TRIALS[key] = trials[trials["subj"].map(is_human)].reset_index(drop=True)
    return _HUMAN_TRIALS[key].copy()


_HUMAN_TRIALS: dict[tuple[tuple[str, int, int], ...], pd.DataFrame] = {}
