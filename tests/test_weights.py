"""Weight records (schema), downloads with hash checks, offline errors, safe checkpoint loading."""

from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path

import pytest
import torch

from texturebias.errors import CheckpointError, DownloadError
from texturebias.models import create_model, get_model_entry, list_models, list_weights
from texturebias.models.preprocessing import Preprocessing
from texturebias.models.weights import WeightRecord, fetch_weights, load_checkpoint, unwrap_state_dict
from texturebias.utils.download import download_file


def test_weight_record_schema() -> None:
    """Like torchvision's schema test: every declared weight has the metadata users rely on."""
    records = list_weights()
    assert len(records) >= 80
    for w in records:
        assert w.url is not None or w.package is not None, w.name
        assert w.url is None or re.match(r"^(https|file)://", w.url), w.name
        assert w.sha256 is not None or w.hash_prefix is not None, w.name
        if w.sha256 is not None:
            assert re.fullmatch(r"[0-9a-f]{64}", w.sha256), w.name
        if w.hash_prefix is not None:
            assert re.fullmatch(r"[0-9a-f]{6,64}", w.hash_prefix), w.name
            assert w.hash_prefix in w.filename, w.name
        assert w.license and w.license != "unknown", w.name
        assert w.origin, w.name
        if w.num_classes is not None:
            assert isinstance(w.preprocessing, Preprocessing), w.name
            assert w.preprocessing.input_size <= w.preprocessing.resize_size, w.name
            assert len(w.preprocessing.mean) == 3 and len(w.preprocessing.std) == 3


def test_model_weights_match_architecture_output_size() -> None:
    for name in ("resnet50", "efficientnet_lite0", "resnet50_sin"):
        entry = get_model_entry(name)
        assert entry.weights is not None and entry.weights.num_classes == 1000


def test_efficientnet_lite_preprocessing_is_tflite_convention() -> None:
    """(x·255 − 127)/128 on 0–255 pixels (REFERENCE §5)."""
    pre = get_model_entry("efficientnet_lite0").weights.preprocessing
    x = torch.tensor([0.0, 127 / 255, 1.0]).view(3, 1, 1)
    y = pre.normalize(x).flatten()
    assert torch.allclose(y, torch.tensor([-127 / 128, 0.0, 128 / 128]), atol=1e-6)
    assert [get_model_entry(f"efficientnet_lite{i}").weights.preprocessing.input_size for i in range(3)] == [
        224,
        240,
        260,
    ]


def test_sin_records_point_at_the_published_files() -> None:
    w = get_model_entry("resnet50_sin").weights
    assert w.url.endswith("resnet50_train_60_epochs-c8e5653e.pth.tar")
    assert w.hash_prefix == "c8e5653e"
    assert w.metrics["top1"] == 60.18


def _file_url(path: Path) -> str:
    return path.resolve().as_uri()


def test_download_verifies_hash_and_is_atomic(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"texturebias" * 1000)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    dest = tmp_path / "cache" / "file.bin"
    download_file(_file_url(src), dest, sha256=digest, show_progress=False)
    assert dest.read_bytes() == src.read_bytes()

    bad = tmp_path / "cache" / "bad.bin"
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download_file(_file_url(src), bad, sha256="0" * 64, show_progress=False)
    assert not bad.exists()
    assert not [p for p in bad.parent.iterdir() if p.name.endswith(".part")]  # nothing half-written


def test_offline_download_names_url_and_checkpoint_flag(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/weights.pth"  # discard port: refused at once, like an offline machine
    with pytest.raises(DownloadError, match=r"127\.0\.0\.1:9/weights\.pth.*--checkpoint"):
        download_file(url, tmp_path / "w.pth", sha256="0" * 64, show_progress=False, timeout=5)
    assert not (tmp_path / "w.pth").exists()


def test_fetch_weights_uses_cache_and_rejects_tampered_file(tmp_path: Path) -> None:
    model = create_model("resnet18", num_classes=3)
    src = tmp_path / "weights.pth"
    torch.save(model.state_dict(), src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    rec = WeightRecord(
        name="t.r18",
        filename=f"r18-{digest[:8]}.pth",
        url=_file_url(src),
        hash_prefix=digest[:8],
        license="test",
        origin="test",
    )
    path = fetch_weights(rec, show_progress=False)
    assert path.is_file() and rec.is_cached()
    path.write_bytes(b"tampered")
    with pytest.raises(DownloadError, match="does not start with"):
        fetch_weights(rec, show_progress=False)


def test_offline_pretrained_request_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network here: asking for torchvision weights fails with the URL and the --checkpoint hint."""
    import texturebias.utils.download as download_mod

    def refuse(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(download_mod.urllib.request, "urlopen", refuse)
    with pytest.raises(DownloadError, match=r"download\.pytorch\.org.*--checkpoint"):
        create_model("resnet18", pretrained=True)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_non_weights_only_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": _Evil()}, path)
    with pytest.raises(CheckpointError, match="not a weights-only checkpoint.*print"):
        load_checkpoint(path)
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps({"hook": _Evil()}, protocol=5))
    with pytest.raises(CheckpointError, match="not a weights-only checkpoint"):
        load_checkpoint(raw)


def test_corrupt_and_missing_checkpoints(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_unwrap_state_dict_variants() -> None:
    sd = {"a.weight": torch.ones(2), "b.bias": torch.zeros(1)}
    for obj in (
        sd,
        {"state_dict": sd},
        {"model": sd, "epoch": 1},
        {f"module.{k}": v for k, v in sd.items()},
        {"state_dict": {f"module.module.{k}": v for k, v in sd.items()}},
    ):
        out = unwrap_state_dict(obj)
        assert list(out) == list(sd)
    with pytest.raises(CheckpointError):
        unwrap_state_dict({"epoch": 3})


def test_packaged_offline_weights_are_verified() -> None:
    for name in list_models("efficientnet_lite*"):
        w = get_model_entry(name).weights
        assert w.package is not None and w.is_cached()
        assert fetch_weights(w) == w.cache_path()
