"""The two data files of Geirhos et al. (NeurIPS 2018) that power equalisation and false colour need.

Fetched by URL + sha256 (or read from a path / ``$TEXTUREBIAS_DATA``) by :func:`g18_data_file`; never shipped
with the package (CC-BY 4.0, github.com/rgeirhos/generalisation-humans-DNNs).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from texturebias.errors import DataError
from texturebias.utils.download import download_file, sha256_file, texturebias_home

# ----------------------------------------------------------------------------------------------------------------
# Data files (power spectrum, gamma table)
# ----------------------------------------------------------------------------------------------------------------

G18_COMMIT = "0b88343536ec21acc2d635c0e325f827111e149a"
_G18_RAW = f"https://raw.githubusercontent.com/rgeirhos/generalisation-humans-DNNs/{G18_COMMIT}/code/"


@dataclass(frozen=True)
class DataFile:
    """A small data file of the original code, fetched by URL and verified by sha256 (CC-BY 4.0, G18)."""

    filename: str
    url: str
    sha256: str
    description: str


G18_DATA_FILES: dict[str, DataFile] = {
    "mean_power_spectrum_grey.npy": DataFile(
        "mean_power_spectrum_grey.npy",
        _G18_RAW + "mean_power_spectrum_grey.npy",
        "e174b43499e15bb9be6dc798efd5a8565abd064feaf58f2f5e269e4795b4170c",
        "224x224 mean amplitude spectrum (fftshifted) for power equalisation",
    ),
    "x_gamma_function.npy": DataFile(
        "x_gamma_function.npy",
        _G18_RAW + "x_gamma_function.npy",
        "8a9680db77b2a24156a19d3fd8e82187aee1995ea8de6b048f354ba44b6196a2",
        "256-entry monitor gamma table for false colour",
    ),
}


def g18_data_file(filename: str, path: str | os.PathLike[str] | None = None, *, download: bool = True) -> Path:
    """Locate (or download) one of G18's data files.

    Search order: ``path`` (a file, or a folder holding it); ``$TEXTUREBIAS_DATA/<filename>`` and
    ``$TEXTUREBIAS_DATA/generalisation-humans-DNNs/<filename>``; the cache
    ``$TEXTUREBIAS_HOME/data/generalisation-humans-DNNs/``; finally a download from the pinned raw GitHub URL.
    Every candidate is checked against the recorded sha256.

    Raises:
        DataError: unknown file, or a local file whose hash does not match.
        DownloadError: the download failed (offline) or the download's hash does not match.
    """

    if filename not in G18_DATA_FILES:
        raise DataError(f"unknown data file {filename!r}; known: {', '.join(G18_DATA_FILES)}")
    record = G18_DATA_FILES[filename]
    candidates: list[Path] = []
    if path is not None:
        p = Path(path).expanduser()
        candidates.append(p / filename if p.is_dir() else p)
        if not candidates[-1].is_file():
            raise DataError(f"{candidates[-1]}: file not found (expected {filename})")
    env = os.environ.get("TEXTUREBIAS_DATA")
    if env:
        root = Path(env).expanduser()
        candidates += [root / filename, root / "generalisation-humans-DNNs" / filename]
    cached = texturebias_home() / "data" / "generalisation-humans-DNNs" / filename
    candidates.append(cached)
    for candidate in candidates:
        if candidate.is_file():
            digest = sha256_file(candidate)
            if digest != record.sha256:
                raise DataError(f"{candidate}: sha256 {digest} does not match the recorded {record.sha256}")
            return candidate
    if not download:
        raise DataError(f"{filename} not found locally (pass a path or set $TEXTUREBIAS_DATA)")
    return download_file(record.url, cached, sha256=record.sha256)


@functools.lru_cache(maxsize=8)
def _load_npy(path: str) -> np.ndarray:
    arr = np.load(path, allow_pickle=False)
    arr.setflags(write=False)
    return arr


def load_power_spectrum(path: str | os.PathLike[str] | None = None) -> np.ndarray:
    """G18's 224×224 mean amplitude spectrum (fftshifted, DC 22803.9 at the centre)."""
    return _load_npy(str(g18_data_file("mean_power_spectrum_grey.npy", path)))


def load_gamma_table(path: str | os.PathLike[str] | None = None) -> np.ndarray:
    """G18's monitor gamma table: 256 linear luminances, one per 8-bit value (monotonic)."""
    return _load_npy(str(g18_data_file("x_gamma_function.npy", path))).reshape(-1)
