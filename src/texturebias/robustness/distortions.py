"""The catalogue of parametric image distortions of Geirhos et al. (NeurIPS 2018) and model-vs-human (NeurIPS 2021).

Conventions follow the original code (github.com/rgeirhos/generalisation-humans-DNNs, commit 0b88343):

* inputs are float64 HWC RGB arrays in [0, 1] (``imread(path) / 255``); 2-D greyscale arrays are accepted too;
* "grey" is skimage's ``rgb2gray`` on the sRGB values (0.2125/0.7154/0.0721, no linearisation);
* contrast, uniform noise and salt-and-pepper return 2-D arrays, the other greyscale recipes stack the grey image
  into three channels, false colour returns colour;
* saving multiplies by 255 and casts to uint8 — **truncation**, not rounding (:func:`to_uint8`);
* randomness comes from an explicit :class:`numpy.random.Generator` (the original used the global NumPy state or a
  shared ``RandomState``; the published stimuli cannot be regenerated pixel-exactly anyway).

Eidolon ("partially coherent disarray") is a clean-room re-implementation of the algorithm described in
``DISTORTIONS.md`` §4 (the Eidolon toolbox by Koenderink et al., as wrapped by G18 with its PR #1 fix); it is
validated statistically, not pixel-wise.

The two data files needed by power equalisation and false colour are downloaded by URL + sha256 (or read from a
path / ``$TEXTUREBIAS_DATA``) by :func:`g18_data_file`; they are never shipped with the package.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from texturebias.errors import DataError
from texturebias.robustness.datafiles import load_gamma_table, load_power_spectrum
from texturebias.robustness.eidolon import eidolon
from texturebias.robustness.manipulations import (
    PhaseMode,
    contrast,
    false_colour,
    greyscale,
    high_pass,
    low_pass,
    phase_noise,
    power_equalise,
    rotate,
    salt_and_pepper,
    to_uint8,
    uniform_noise,
)

# ----------------------------------------------------------------------------------------------------------------
# Registry: datasets, condition strings, excluded conditions
# ----------------------------------------------------------------------------------------------------------------

DistortFn = Callable[[np.ndarray, str, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Distortion:
    """One parametric distortion as a model-vs-human dataset.

    Attributes:
        name: model-vs-human dataset name ("uniform-noise", "eidolonI", ...).
        code: The experiment code in model-vs-human image names ("nse", "eid", ...).
        conditions: Condition strings, in plotting order (model-vs-human spelling).
        excluded: Conditions excluded from OOD accuracy and consistency (MVH ``EXCLUDE_CONDITIONS``: the
            control and the conditions where humans were below 20 %).
        xlabel: Axis label for the curves.
        apply: ``apply(img, condition, rng)`` → float [0, 1] array (2-D or HWC) or uint8 array.
        in_mvh: Whether model-vs-human has the dataset (salt-and-pepper is G18-only).
    """

    name: str
    code: str
    conditions: tuple[str, ...]
    excluded: tuple[str, ...]
    xlabel: str
    apply: DistortFn
    in_mvh: bool = True

    def normalise_condition(self, text: str) -> str:
        """Map a user level ("0.5", "c50", "3", "3.0", "1") to this distortion's condition string."""
        return normalise_condition(self, text)


def _numeric(text: str) -> float:
    return float("inf") if text.strip().lower() in ("inf", "infinity") else float(text)


def _phase_mode_apply(mode: PhaseMode) -> DistortFn:
    return lambda img, cond, rng: phase_noise(img, float(cond), rng, mode=mode)


def _eidolon_apply(img: np.ndarray, cond: str, rng: np.random.Generator) -> np.ndarray:
    reach, coh, grain = cond.split("-")
    return eidolon(img, float(reach), int(coh) / 10.0, rng, grain=float(grain))


def _colour_apply(img: np.ndarray, cond: str, rng: np.random.Generator) -> np.ndarray:
    if cond == "cr":
        return np.asarray(img, dtype=np.float64)
    return greyscale(img)


def _contrast_apply(img: np.ndarray, cond: str, rng: np.random.Generator) -> np.ndarray:
    return contrast(img, int(cond.lstrip("c")) / 100.0)


def _power_apply(img: np.ndarray, cond: str, rng: np.random.Generator) -> np.ndarray:
    if cond == "0":
        return greyscale(img)
    return power_equalise(img, load_power_spectrum())


def _false_colour_apply(img: np.ndarray, cond: str, rng: np.random.Generator) -> np.ndarray:
    if cond.lower() == "true":
        return np.asarray(img, dtype=np.float64)
    return false_colour(img, load_gamma_table())


_EIDOLON_REACHES = (1, 2, 4, 8, 16, 32, 64, 128)


def _eidolon_conditions(coh10: int) -> tuple[str, ...]:
    return tuple(f"{r}-{coh10}-10" for r in _EIDOLON_REACHES)


DISTORTIONS: dict[str, Distortion] = {
    d.name: d
    for d in (
        Distortion("colour", "cl", ("cr", "bw"), ("cr",), "colour", _colour_apply),
        Distortion(
            "contrast",
            "cop",
            ("c100", "c50", "c30", "c15", "c10", "c05", "c03", "c01"),
            ("c100", "c03", "c01"),
            "contrast in percent",
            _contrast_apply,
        ),
        Distortion(
            "high-pass",
            "hp",
            ("inf", "3.0", "1.5", "1.0", "0.7", "0.55", "0.45", "0.4"),
            ("inf", "0.55", "0.45", "0.4"),
            "filter standard deviation",
            lambda img, cond, rng: high_pass(img, _numeric(cond)),
        ),
        Distortion(
            "low-pass",
            "lp",
            ("0", "1", "3", "5", "7", "10", "15", "40"),
            ("0", "15", "40"),
            "filter standard deviation",
            lambda img, cond, rng: low_pass(img, float(cond)),
        ),
        Distortion(
            "phase-scrambling",
            "ps",
            ("0", "30", "60", "90", "120", "150", "180"),
            ("0", "150", "180"),
            "phase noise width [°]",
            _phase_mode_apply("faithful"),
        ),
        Distortion("power-equalisation", "pow", ("0", "pow"), ("0",), "power spectrum", _power_apply),
        Distortion("false-colour", "fc", ("True", "False"), ("True",), "colour", _false_colour_apply),
        Distortion(
            "rotation",
            "rot",
            ("0", "90", "180", "270"),
            ("0",),
            "rotation angle [°]",
            lambda img, cond, rng: rotate(img, int(cond)),
        ),
        Distortion(
            "eidolonI",
            "eid",
            _eidolon_conditions(10),
            ("1-10-10", "64-10-10", "128-10-10"),
            "log$_2$ of 'reach' parameter",
            _eidolon_apply,
        ),
        Distortion(
            "eidolonII",
            "eid",
            _eidolon_conditions(3),
            ("1-3-10", "32-3-10", "64-3-10", "128-3-10"),
            "log$_2$ of 'reach' parameter",
            _eidolon_apply,
        ),
        Distortion(
            "eidolonIII",
            "eid",
            _eidolon_conditions(0),
            ("1-0-10", "16-0-10", "32-0-10", "64-0-10", "128-0-10"),
            "log$_2$ of 'reach' parameter",
            _eidolon_apply,
        ),
        Distortion(
            "uniform-noise",
            "nse",
            ("0.0", "0.03", "0.05", "0.1", "0.2", "0.35", "0.6", "0.9"),
            ("0.0", "0.6", "0.9"),
            "uniform noise width",
            lambda img, cond, rng: uniform_noise(img, float(cond), rng),
        ),
        Distortion(
            "salt-and-pepper",
            "snp",
            ("0.0", "0.1", "0.2", "0.35", "0.5", "0.65", "0.8", "0.95"),
            ("0.0",),
            "salt-and-pepper probability",
            lambda img, cond, rng: salt_and_pepper(img, float(cond), rng),
            in_mvh=False,
        ),
    )
}

#: Friendlier names accepted everywhere a distortion name is.
ALIASES: dict[str, str] = {
    "greyscale": "colour",
    "grayscale": "colour",
    "phase-noise": "phase-scrambling",
    "phase": "phase-scrambling",
    "power": "power-equalisation",
    "opponent-colour": "false-colour",
    "noise": "uniform-noise",
    "eidolon-i": "eidolonI",
    "eidolon-ii": "eidolonII",
    "eidolon-iii": "eidolonIII",
}


def get_distortion(name: str, *, phase_mode: PhaseMode = "faithful") -> Distortion:
    """Look up a distortion by model-vs-human name or alias (case-insensitive).

    Args:
        name: e.g. "uniform-noise", "eidolonII", "greyscale".
        phase_mode: For phase scrambling: "faithful" (original quirk) or "corrected".

    Raises:
        DataError: unknown name (the message lists the known ones).
    """
    key = ALIASES.get(name.lower(), name)
    lookup = {k.lower(): v for k, v in DISTORTIONS.items()}
    if key.lower() not in lookup:
        raise DataError(f"unknown distortion {name!r}; known: {', '.join(DISTORTIONS)}")
    dist = lookup[key.lower()]
    if dist.name == "phase-scrambling" and phase_mode != "faithful":
        return Distortion(**{**dist.__dict__, "apply": _phase_mode_apply(phase_mode)})
    return dist


def list_distortions() -> list[str]:
    """Names of all distortions (model-vs-human names, plus G18's salt-and-pepper)."""
    return list(DISTORTIONS)


def normalise_condition(dist: Distortion, text: str) -> str:
    """The canonical condition string of ``dist`` that ``text`` denotes.

    Accepts the condition strings themselves (case-insensitive for colour/false colour), numeric spellings
    ("3" for "3.0", "0" for "0.0"), contrast as a fraction ("0.5" → "c50") and an Eidolon reach ("8").

    Raises:
        DataError: ``text`` is not a level of this distortion.
    """
    raw = text.strip()
    for cond in dist.conditions:
        if raw.lower() == cond.lower():
            return cond
    if dist.name.startswith("eidolon"):
        # A bare reach ("8") names the condition of this Eidolon variant ("8-10-10" for Eidolon I).
        for cond in dist.conditions:
            if raw == cond.split("-")[0]:
                return cond
    try:
        value = _numeric(raw.lstrip("cC") if dist.name == "contrast" else raw)
    except ValueError:
        value = None
    if value is not None:
        for cond in dist.conditions:
            try:
                cv = _numeric(cond.lstrip("c")) if dist.name == "contrast" else _numeric(cond)
            except ValueError:
                continue
            if dist.name == "contrast" and (math.isclose(cv, value) or math.isclose(cv, value * 100)):
                return cond
            if dist.name != "contrast" and (cv == value or math.isclose(cv, value)):
                return cond
    raise DataError(f"{text!r} is not a level of {dist.name}; levels: {' '.join(dist.conditions)}")


def condition_x(name: str, condition: str) -> float:
    """x-axis position of a condition in the accuracy curves: its index in the registry's condition order.

    Equal spacing keeps the small levels readable (0, 0.03, 0.05 ...); for Eidolon the index is log2(reach), as in
    the published figures. Conditions run from the control (left) to the strongest distortion (right).
    """
    dist = DISTORTIONS[ALIASES.get(name.lower(), name)]
    return float(dist.conditions.index(condition))


def distort_image(
    img: np.ndarray, name: str, condition: str, rng: np.random.Generator, *, phase_mode: PhaseMode = "faithful"
) -> np.ndarray:
    """Apply distortion ``name`` at ``condition`` (any spelling :func:`normalise_condition` accepts)."""
    dist = get_distortion(name, phase_mode=phase_mode)
    return dist.apply(img, dist.normalise_condition(condition), rng)


# ----------------------------------------------------------------------------------------------------------------
# Distorting a whole dataset folder
# ----------------------------------------------------------------------------------------------------------------


def _mvh_layout(name: str, stem: str, ext: str) -> str:
    # Output names are complete model-vs-human image names; every file goes into dnn/session-1/.
    return f"dnn/session-1/{name}.{ext}"


def _center_224(img: Image.Image, size: int) -> Image.Image:
    if size <= 0 or img.size == (size, size):
        return img
    import torchvision.transforms as T

    resize = T.Resize(round(size * 256 / 224), interpolation=T.InterpolationMode.BILINEAR)
    return T.CenterCrop(size)(resize(img))


def _category_of(relpath: str) -> str:
    parts = relpath.split("/")
    return (parts[0] if len(parts) > 1 else "none").replace("_", "-")


def distort_folder(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    distortion: str,
    *,
    levels: Sequence[str] | None = None,
    seed: int = 0,
    size: int = 224,
    phase_mode: PhaseMode = "faithful",
    image_format: str = "png",
    batch_size: int = 16,
    workers: int = 0,
    limit: int | None = None,
):  # -> FolderJobSummary (imported lazily: folder_job imports torch)
    """Write a distorted copy of an ImageFolder at every level, laid out like a model-vs-human release.

    Every input ``<category>/<file>`` becomes, per level,
    ``OUT/dnn/session-1/<nnnn>_<code>_dnn_<condition>_<category>_00_<file stem>.png`` (underscores in the
    category are replaced by ``-`` so the name parses), so the output can be evaluated with
    ``texturebias benchmark`` exactly like the release tarballs. Inputs are first brought to ``size``×``size``
    (Resize(256) + CenterCrop(224) for 224; ``size=0`` keeps them as they are). Randomness is seeded per
    (seed, input path, distortion, level); the folder job (:mod:`texturebias.data.folder_job`) provides
    ``manifest.csv``, ``failed.csv``, atomic writes and resume.

    Args:
        data_dir: Input ImageFolder.
        out_dir: Output folder.
        distortion: Distortion name.
        levels: Conditions (any accepted spelling); default all of the distortion's.
        seed: Job seed.
        size: Working size (224, as the experiments; 0 keeps the input size).
        phase_mode: Phase scrambling: "faithful" or "corrected".
        image_format: "png" (default) or "jpg".
        batch_size, workers, limit: Passed to :func:`~texturebias.data.folder_job.run_folder_job`.

    Returns:
        The folder job's summary.
    """

    # Here, not at the top: the folder job needs torch, and the catalogue above is read by `--help`.
    from texturebias.data.folder_job import ItemResult, run_folder_job

    dist = get_distortion(distortion, phase_mode=phase_mode)
    conditions = list(dict.fromkeys(dist.normalise_condition(c) for c in levels)) if levels else list(dist.conditions)
    n_levels = len(conditions)

    def process(items: list, images: list) -> list:
        results = []
        for item, pil in zip(items, images, strict=True):
            arr = np.asarray(_center_224(pil, size), dtype=np.float64) / 255.0
            category = _category_of(item.relpath)
            stem = Path(item.relpath).stem
            outputs, seeds = {}, {}
            for j, cond in enumerate(conditions):
                trial = item.index * n_levels + j + 1
                name = f"{trial:04d}_{dist.code}_dnn_{cond}_{category}_00_{stem}"
                outputs[name] = to_uint8(dist.apply(arr, cond, item.rng(dist.name, cond)))
                seeds[name] = item.seed(dist.name, cond)
            results.append(ItemResult(outputs=outputs, info={"seed": seeds}))
        return results

    return run_folder_job(
        data_dir,
        out_dir,
        process,
        seed=seed,
        batch_size=batch_size,
        workers=workers,
        image_format=image_format,
        layout=_mvh_layout,
        manifest_fields=["seed"],
        desc=f"distort {dist.name}",
        limit=limit,
        # Each level and distortion writes files of its own name, so other --levels/--distortion add outputs;
        # anything that changes the pixels of an existing name must match.
        settings={"seed": seed, "size": size, "phase_mode": phase_mode, "format": image_format},
        expected_outputs=lambda item: [
            f"{item.index * n_levels + j + 1:04d}_{dist.code}_dnn_{cond}_{_category_of(item.relpath)}_00_"
            f"{Path(item.relpath).stem}"
            for j, cond in enumerate(conditions)
        ],
        check_collisions=False,
    )
