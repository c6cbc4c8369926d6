"""hubconf.py: torch.hub.load(repo, name, source="local") for the BagNets and the SIN ResNet-50s."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from texturebias.errors import TextureBiasError
from texturebias.models import get_model_entry

REPO = Path(__file__).resolve().parents[1]


def test_hub_lists_the_original_names() -> None:
    import importlib.util

    # What torch.hub.list does (it has no source="local"): the public callables of hubconf.py.
    spec = importlib.util.spec_from_file_location("texturebias_hubconf", REPO / "hubconf.py")
    assert spec is not None and spec.loader is not None
    hub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hub)
    names = {n for n in dir(hub) if callable(getattr(hub, n)) and not n.startswith("_")}
    assert hub.dependencies == ["torch", "torchvision"]
    assert {"bagnet9", "bagnet17", "bagnet33", "resnet50_sin", "resnet50_sin_in", "resnet50_sin_in_in"} <= names
    assert "resnet50_trained_on_SIN_and_IN_then_finetuned_on_IN" in names


@pytest.mark.parametrize("name", ["bagnet33", "resnet50_trained_on_SIN"])
def test_hub_load_local_without_weights(name: str) -> None:
    model = torch.hub.load(str(REPO), name, pretrained=False, source="local")
    assert not model.training
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)


def test_hub_pretrained_goes_through_the_hash_checked_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEXTUREBIAS_HOME", str(tmp_path))
    record = get_model_entry("bagnet33").weights
    assert record is not None
    path = record.cache_path()
    assert tmp_path in path.parents
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not the published weights")  # a corrupt cached file must be refused, not loaded
    with pytest.raises(TextureBiasError, match="(?i)hash|sha256"):
        torch.hub.load(str(REPO), "bagnet33", pretrained=True, source="local")
