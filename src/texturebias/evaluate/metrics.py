"""Shape bias and human-comparison metrics on trial tables (REFERENCE §3).

All functions take trial tables as returned by :func:`texturebias.evaluate.trials.read_trials` (columns
``subj, session, trial, rt, object_response, category, condition, imagename``).

API:

- :func:`shape_bias` → :class:`ShapeBias` (ratio, counts, per-category values) — Geirhos et al., ICLR 2019:
  shape hits / (shape hits + texture hits) over cue-conflict trials whose shape ≠ texture; any other
  response (another class, ``na``) is ignored; several subjects are pooled before the ratio.
- :func:`analyze_trials` → ``{decision maker: ShapeBias}`` from trial CSV paths, human subjects pooled as
  ``"humans"``.
- :func:`bootstrap_shape_bias` → (low, high) percentile CI, resampling *images* (all trials of an image move
  together, so pooled humans are handled correctly); deterministic for a seed.
- :func:`accuracy` (16-class; cue conflict counts the shape class as correct), :func:`is_correct`.
- Geirhos et al., NeurIPS 2020/2021 — :func:`observed_consistency`, :func:`expected_consistency`,
  :func:`cohens_kappa` on two boolean "correct" vectors; :func:`consistency_table` gives per (subject,
  condition) n, accuracies, c_obs, c_exp, κ and
  squared accuracy difference of a model against every human; :func:`average_consistency` averages as the
  benchmark does (over conditions, then subjects); :func:`human_human_consistency` is the baseline.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from texturebias.data.labels import CATEGORIES, texture_category
from texturebias.errors import DataError
from texturebias.evaluate.trials import canonical_condition, canonical_conditions, image_keys, is_human, read_trials
from texturebias.utils.io import finite_or_none
from texturebias.utils.seed import rng_for

HUMANS = "humans"


@dataclass(frozen=True)
class ShapeBias:
    """Shape-bias result of one decision maker (or pooled group).

    Attributes:
        shape_bias: shape / (shape + texture); NaN when there is no shape or texture decision.
        n_shape: Conflict trials answered with the shape class.
        n_texture: Conflict trials answered with the texture class.
        n_other: Conflict trials answered otherwise (another class or ``na``).
        n_excluded: Trials whose shape equals the texture (not cue conflict), left out.
        per_category: shape category → shape bias within it (NaN when undefined).
    """

    shape_bias: float
    n_shape: int
    n_texture: int
    n_other: int
    n_excluded: int = 0
    per_category: dict[str, float] = field(default_factory=dict)

    @property
    def n_conflict(self) -> int:
        return self.n_shape + self.n_texture + self.n_other

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly dict (NaN → None)."""
        return {
            "shape_bias": finite_or_none(self.shape_bias),
            "n_shape": self.n_shape,
            "n_texture": self.n_texture,
            "n_other": self.n_other,
            "per_category": {k: finite_or_none(v) for k, v in self.per_category.items()},
        }


def _ratio(shape: int, texture: int) -> float:
    return shape / (shape + texture) if shape + texture else math.nan


def cue_conflict_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Cue-conflict trials only (shape ≠ texture), with ``texture`` and ``decision`` columns added.

    ``texture`` comes from the stimulus name; ``decision`` is "shape", "texture" or "other".
    """
    df = trials.assign(texture=[texture_category(n) for n in trials["imagename"]])
    df = df[df["texture"] != df["category"]]
    decision = np.where(
        df["object_response"] == df["category"],
        "shape",
        np.where(df["object_response"] == df["texture"], "texture", "other"),
    )
    return df.assign(decision=decision)


def shape_bias(trials: pd.DataFrame, categories: Sequence[str] = CATEGORIES) -> ShapeBias:
    """Shape bias of the (pooled) trials — Geirhos et al., ICLR 2019, Fig. 4.

    Args:
        trials: Cue-conflict trials of one decision maker, or of several to pool (humans).
        categories: Shape categories reported in ``per_category`` (in this order).

    Raises:
        DataError: no trials at all.
    """
    if len(trials) == 0:
        raise DataError("no trials to compute a shape bias from")
    df = cue_conflict_table(trials)
    counts = df["decision"].value_counts()
    n_shape, n_texture = int(counts.get("shape", 0)), int(counts.get("texture", 0))
    per = df.groupby(["category", "decision"]).size().unstack(fill_value=0)
    per_category = {}
    for cat in categories:
        s = int(per.at[cat, "shape"]) if cat in per.index and "shape" in per.columns else 0
        t = int(per.at[cat, "texture"]) if cat in per.index and "texture" in per.columns else 0
        per_category[cat] = _ratio(s, t)
    return ShapeBias(
        shape_bias=_ratio(n_shape, n_texture),
        n_shape=n_shape,
        n_texture=n_texture,
        n_other=int(counts.get("other", 0)),
        n_excluded=len(trials) - len(df),
        per_category=per_category,
    )


@functools.lru_cache(maxsize=2)
def _resample_counts(n: int, n_boot: int, seed: int) -> tuple[np.ndarray, ...]:
    # Drawing the multinomial counts is most of a bootstrap's time, and every decision maker on the same images
    # with the same seed gets the same draws (humans and each model of a shape-bias run, the demo's models), so a
    # process draws them once. Chunks of 1,000 keep the draws identical to drawing them chunk by chunk; the
    # smallest dtype that holds a chunk keeps 10,000 x 1,280 counts at ~13 MB.
    rng = rng_for("bootstrap_shape_bias", seed)
    chunks = []
    for start in range(0, n_boot, 1000):
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=min(1000, n_boot - start))
        counts = counts.astype(np.min_scalar_type(int(counts.max())))
        counts.flags.writeable = False
        chunks.append(counts)
    return tuple(chunks)


def bootstrap_shape_bias(
    trials: pd.DataFrame, *, n_boot: int = 10_000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the shape bias over images.

    Images (stimulus names) are resampled with replacement; all trials of a drawn image count (for pooled
    humans every subject's response to it). Deterministic for a given seed.

    Returns:
        (low, high); NaN when undefined.
    """
    df = cue_conflict_table(trials)
    if df.empty:
        return math.nan, math.nan
    keys = image_keys(df["condition"], df["imagename"])
    per_image = (
        pd.DataFrame({"key": keys, "shape": df["decision"] == "shape", "texture": df["decision"] == "texture"})
        .groupby("key", sort=True)[["shape", "texture"]]
        .sum()
    )
    s = per_image["shape"].to_numpy(float)
    t = per_image["texture"].to_numpy(float)
    stats = np.empty(n_boot)
    start = 0
    for counts in _resample_counts(len(s), n_boot, seed):
        m = len(counts)
        shape_hits, texture_hits = counts @ s, counts @ t
        with np.errstate(invalid="ignore", divide="ignore"):
            stats[start : start + m] = shape_hits / (shape_hits + texture_hits)
        start += m
    stats = stats[~np.isnan(stats)]
    if stats.size == 0:
        return math.nan, math.nan
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return float(low), float(high)


def is_correct(trials: pd.DataFrame) -> np.ndarray:
    """Boolean per trial: response equals the true (shape) category (``na`` counts as wrong)."""
    return (trials["object_response"] == trials["category"]).to_numpy()


def accuracy(trials: pd.DataFrame) -> float:
    """16-class accuracy (fraction of trials answered with ``category``); NaN for no trials."""
    return float(is_correct(trials).mean()) if len(trials) else math.nan


def _bools(values: Iterable[bool]) -> np.ndarray:
    # list() only for other iterables (generators): on an array it would box every element.
    return np.asarray(values if isinstance(values, np.ndarray) else list(values), bool)


def observed_consistency(correct_a: Iterable[bool], correct_b: Iterable[bool]) -> float:
    """Fraction of paired trials where both are right or both are wrong."""
    a, b = _bools(correct_a), _bools(correct_b)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("need two non-empty vectors of equal length")
    return float((a == b).mean())


def expected_consistency(p_a: float, p_b: float) -> float:
    """Consistency of two independent observers with accuracies ``p_a``, ``p_b``: p_a·p_b + (1−p_a)(1−p_b)."""
    return p_a * p_b + (1 - p_a) * (1 - p_b)


def cohens_kappa(correct_a: Iterable[bool], correct_b: Iterable[bool]) -> float:
    """Error consistency: Cohen's κ = (c_obs − c_exp) / (1 − c_exp) on paired correctness vectors.

    Geirhos, Meding & Wichmann, NeurIPS 2020. When c_exp = 1 (both always right or always wrong) the
    observers agree perfectly and κ is defined as 1, as in model-vs-human.
    """
    a, b = _bools(correct_a), _bools(correct_b)
    c_obs = observed_consistency(a, b)
    c_exp = expected_consistency(float(a.mean()), float(b.mean()))
    if c_obs == 1.0 or c_exp == 1.0:
        return 1.0
    return (c_obs - c_exp) / (1.0 - c_exp)


@dataclass(frozen=True)
class _Keyed:
    """One decision maker's trials, sorted by image key (unique): canonical condition and correctness."""

    keys: np.ndarray
    condition: np.ndarray
    correct: np.ndarray


def _keyed(df: pd.DataFrame) -> _Keyed:
    """Index one decision maker's trials by image key; an image seen twice is an error."""
    keys = np.asarray(image_keys(df["condition"], df["imagename"]), dtype=str)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    if len(sorted_keys) > 1 and (sorted_keys[1:] == sorted_keys[:-1]).any():
        first = pd.Index(keys)[pd.Index(keys).duplicated()][0]
        raise DataError(f"image {first!r} appears twice for {df['subj'].iloc[0]!r}")
    condition = np.asarray(canonical_conditions(df["condition"]), dtype=str)
    return _Keyed(sorted_keys, condition[order], is_correct(df)[order])


def _consistency_rows(subj: str, a: _Keyed, b: _Keyed, excluded: set[str]) -> list[dict[str, object]]:
    """Per condition (sorted), the consistency of ``a`` and ``b`` on the images both saw."""
    # Arrays, not a pandas join and groupby: the human baseline pairs 45 subjects per data set, and the
    # per-condition arithmetic below is unchanged, so the numbers are the same to the last bit.
    _, ia, ib = np.intersect1d(a.keys, b.keys, assume_unique=True, return_indices=True)
    condition, correct_a, correct_b = a.condition[ia], a.correct[ia], b.correct[ib]
    if excluded:
        kept = ~np.isin(condition, sorted(excluded))
        condition, correct_a, correct_b = condition[kept], correct_a[kept], correct_b[kept]
    rows = []
    for cond in np.unique(condition):
        in_cond = condition == cond
        ca, cb = correct_a[in_cond], correct_b[in_cond]
        acc_m, acc_h = float(ca.mean()), float(cb.mean())
        rows.append(
            {
                "subj": subj,
                "condition": str(cond),
                "n": int(in_cond.sum()),
                "acc_model": acc_m,
                "acc_human": acc_h,
                "observed": observed_consistency(ca, cb),
                "expected": expected_consistency(acc_m, acc_h),
                "kappa": cohens_kappa(ca, cb),
                "accuracy_difference": (acc_m - acc_h) ** 2,
            }
        )
    return rows


def consistency_table(
    model_trials: pd.DataFrame,
    human_trials: pd.DataFrame,
    *,
    excluded_conditions: Iterable[object] = (),
) -> pd.DataFrame:
    """Model vs. each human subject, per condition, on the images both saw.

    Args:
        model_trials: One decision maker's trials on a dataset.
        human_trials: The human trials of the same dataset (all subjects).
        excluded_conditions: Conditions left out (compared via :func:`canonical_condition`).

    Returns:
        One row per (subject, condition): ``subj, condition, n, acc_model, acc_human, observed, expected,
        kappa, accuracy_difference`` (the last = (acc_model − acc_human)²).

    Raises:
        DataError: no image in common (after exclusions), or an image twice for one decision maker.
    """
    excluded = {canonical_condition(c) for c in excluded_conditions}
    model = _keyed(model_trials)
    rows = []
    for subj, human in human_trials.groupby("subj", sort=True):
        rows += _consistency_rows(str(subj), model, _keyed(human), excluded)
    if not rows:
        raise DataError("model and human trials share no images (check the imagename and condition columns)")
    return pd.DataFrame(rows)


def average_consistency(table: pd.DataFrame) -> dict[str, float]:
    """Benchmark averaging of a :func:`consistency_table`: mean over conditions, then over subjects.

    Returns:
        ``{"observed_consistency", "error_consistency", "accuracy_difference", "n_subjects"}``.
    """
    per_subject = table.groupby("subj")[["observed", "kappa", "accuracy_difference"]].mean()
    return {
        "observed_consistency": float(per_subject["observed"].mean()),
        "error_consistency": float(per_subject["kappa"].mean()),
        "accuracy_difference": float(per_subject["accuracy_difference"].mean()),
        "n_subjects": int(len(per_subject)),
    }


def human_human_consistency(
    human_trials: pd.DataFrame, *, excluded_conditions: Iterable[object] = ()
) -> dict[str, float]:
    """The human baseline: every pair of subjects, averaged over conditions, then over pairs."""
    excluded = {canonical_condition(c) for c in excluded_conditions}
    subjects = sorted(s for s in set(human_trials["subj"]) if is_human(s)) or sorted(set(human_trials["subj"]))
    keyed = {s: _keyed(human_trials[human_trials["subj"] == s]) for s in subjects}
    pairs = []
    for i, s1 in enumerate(subjects):
        for s2 in subjects[i + 1 :]:
            rows = _consistency_rows(s1, keyed[s1], keyed[s2], excluded)
            if rows:
                pairs.append(pd.DataFrame(rows)[["observed", "kappa", "accuracy_difference"]].mean())
    if not pairs:
        raise DataError("need at least two human subjects sharing images for a human-human baseline")
    mean = pd.DataFrame(pairs).mean()
    return {
        "observed_consistency": float(mean["observed"]),
        "error_consistency": float(mean["kappa"]),
        "accuracy_difference": float(mean["accuracy_difference"]),
        "n_pairs": len(pairs),
    }


def analyze_trials(paths: Sequence[str | os.PathLike[str]], *, pool_humans: bool = True) -> dict[str, ShapeBias]:
    """Shape bias per decision maker in cue-conflict trial CSVs (files or folders).

    Humans (``subj`` = ``subject-NN``) are pooled into one entry ``"humans"`` (REFERENCE §3); every other
    ``subj`` value is its own decision maker, in order of first appearance.

    Raises:
        DataError: unreadable files or no trials.
    """
    trials = read_trials(paths)
    if pool_humans:
        trials = trials.assign(subj=[HUMANS if is_human(s) else s for s in trials["subj"]])
    return {str(subj): shape_bias(group) for subj, group in trials.groupby("subj", sort=False)}
