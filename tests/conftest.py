"""Shared test fixtures: paths to the real data and golden fixtures, a private cache, fast settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# Keep the 2-core CI machine predictable and progress bars out of the logs.
torch.set_num_threads(min(2, os.cpu_count() or 1))
os.environ.setdefault("TEXTUREBIAS_NO_PROGRESS", "1")


def _shared(env: str, sub: str) -> Path | None:
    value = os.environ.get(env)
    if value:
        p = Path(value)
        return p if p.is_dir() else None
    p = REPO.parent / "shared" / sub
    return p if p.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``$TEXTUREBIAS_DATA`` or ../shared/data (real stimuli and human CSVs); skip when absent."""
    p = _shared("TEXTUREBIAS_DATA", "data")
    if p is None:
        pytest.skip("real data not available (set TEXTUREBIAS_DATA to a folder laid out like shared/data)")
    return p


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """``$TEXTUREBIAS_FIXTURES`` or ../shared/fixtures (golden outputs of the reference code); skip when absent."""
    p = _shared("TEXTUREBIAS_FIXTURES", "fixtures")
    if p is None:
        pytest.skip("golden fixtures not available (set TEXTUREBIAS_FIXTURES)")
    return p


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own empty weights cache, so no test depends on what another downloaded."""
    monkeypatch.setenv("TEXTUREBIAS_HOME", str(tmp_path_factory.mktemp("tbhome")))


@pytest.fixture(scope="session")
def adain_weight_files(fixtures_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``vgg_normalised.pth`` and ``decoder.pth`` rebuilt with the fixtures' detinit-v1 recipe (gain 2.0)."""
    from detinit import detinit_state_dict

    d = tmp_path_factory.mktemp("adain_weights")
    torch.save(detinit_state_dict(fixtures_dir / "adain/keys_vgg_normalised.json", 2.0), d / "vgg_normalised.pth")
    torch.save(detinit_state_dict(fixtures_dir / "adain/keys_decoder.json", 2.0), d / "decoder.pth")
    return d / "vgg_normalised.pth", d / "decoder.pth"
