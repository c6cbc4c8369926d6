"""Dataset registry: pinned manifests, hash-checked download (file:// URLs), local copies, validation."""

from __future__ import annotations

import dataclasses
import io
import shutil
import tarfile

import pytest
from PIL import Image

from texturebias.cli import main
from texturebias.data.datasets import (
    DataFile,
    Dataset,
    dataset_dir,
    fetch_dataset,
    get_dataset,
    list_datasets,
    register_dataset,
    validate_dataset,
)
from texturebias.errors import DataError, DownloadError
from texturebias.utils.download import sha256_file

TVS_COMMIT = "ccd0c01d42c0a8a834e90ec141e7f24fa915dc23"


def test_manifest_contents() -> None:
    names = {d.name for d in list_datasets()}
    assert {"cue-conflict", "edge", "silhouette", "cue-conflict-humans", "edge-humans", "silhouette-humans"} <= names
    assert len([n for n in names if n.startswith("mvh-humans/")]) == 17
    cc = get_dataset("cue-conflict")
    assert cc.commit == TVS_COMMIT and cc.base_url.endswith(f"/{TVS_COMMIT}/")
    assert len(cc._payload()) == 1280 and cc.count == 1280 and cc.image_size == 224
    assert any(f.path == "DATASET_LICENSE" for f in cc.files)
    assert all(len(f.sha256) == 64 for f in cc.files)
    url = cc.url(cc.files[0])
    assert url.startswith("https://raw.githubusercontent.com/rgeirhos/texture-vs-shape/" + TVS_COMMIT)
    assert len(get_dataset("edge")._payload()) == len(get_dataset("silhouette")._payload()) == 160
    with pytest.raises(DataError, match="unknown data set"):
        get_dataset("imagenet-c")


def test_shared_copy_validates_with_hashes(shared_data) -> None:
    for name in ("cue-conflict", "edge", "silhouette"):
        folder = dataset_dir(name, shared_data)
        report = validate_dataset(name, folder, check_hashes=True)
        assert report.ok, report.summary()
        assert report.n_found == report.n_expected
    for name in ("cue-conflict-humans", "mvh-humans/colour", "mvh-humans/sketch"):
        assert validate_dataset(name, dataset_dir(name, shared_data), check_hashes=True).ok


def _local_edge(shared_data, name: str = "edge-test") -> Dataset:
    """The edge data set with its URLs pointed at the local shared copy (file://)."""
    ds = get_dataset("edge")
    local = dataclasses.replace(ds, name=name, base_url=(shared_data / "texture-vs-shape").as_uri() + "/")
    return register_dataset(local)


def test_fetch_with_file_urls(shared_data, tmp_path) -> None:
    _local_edge(shared_data)
    with pytest.raises(DataError, match="161 files missing"):
        fetch_dataset("edge-test", root=tmp_path, download=False)
    folder = fetch_dataset("edge-test", root=tmp_path, show_progress=False)
    assert folder == tmp_path / "texture-vs-shape" / "stimuli" / "edges"
    assert validate_dataset("edge-test", folder, check_hashes=True).ok
    assert (tmp_path / "texture-vs-shape" / "DATASET_LICENSE").is_file()
    # the cache is used by default ($TEXTUREBIAS_HOME is private per test)
    cached = dataset_dir("edge-test", show_progress=False)
    assert cached.is_dir() and "texture-vs-shape/stimuli/edges" in cached.as_posix()


def test_hash_mismatch_leaves_nothing(shared_data, tmp_path) -> None:
    ds = _local_edge(shared_data, "edge-corrupt")
    bad = dataclasses.replace(ds.files[0], sha256="0" * 64)
    register_dataset(dataclasses.replace(ds, name="edge-corrupt-2", files=(bad,)))
    with pytest.raises(DownloadError, match="sha256 mismatch.*Offline\\?"):
        fetch_dataset("edge-corrupt-2", root=tmp_path, show_progress=False)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_offline_download_message(tmp_path) -> None:
    ds = get_dataset("silhouette")
    register_dataset(dataclasses.replace(ds, name="silhouette-offline", base_url=(tmp_path / "nowhere").as_uri() + "/"))
    with pytest.raises(DownloadError, match="--stimuli DIR"):
        fetch_dataset("silhouette-offline", root=tmp_path / "root", show_progress=False)


def test_tarball_extraction(tmp_path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"hello"
        info = tarfile.TarInfo("bird/bird1.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    archive = tmp_path / "src" / "release.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(buf.getvalue())
    f = DataFile(path="toy/release.tar.gz", sha256=sha256_file(archive), url=archive.as_uri(), extract=True)
    register_dataset(Dataset("toy-release", "toy", "unused://", "toy-root", "toy", (f,)))
    folder = fetch_dataset("toy-release", root=tmp_path / "root", show_progress=False)
    assert (folder / "bird" / "bird1.txt").read_bytes() == b"hello"
    fetch_dataset("toy-release", root=tmp_path / "root", download=False)  # marked as extracted: nothing missing


def test_local_copies_and_env(shared_data, tmp_path, monkeypatch) -> None:
    edges = shared_data / "texture-vs-shape" / "stimuli" / "edges"
    assert dataset_dir("edge", shared_data) == edges  # a data root
    assert dataset_dir("edge", edges) == edges  # the data set's own folder
    with pytest.raises(DataError, match="not found"):
        dataset_dir("edge", tmp_path / "missing")
    monkeypatch.setenv("TEXTUREBIAS_DATA", str(shared_data))
    assert dataset_dir("edge") == edges
    monkeypatch.setenv("TEXTUREBIAS_DATA", str(tmp_path))
    with pytest.raises(DataError, match="TEXTUREBIAS_DATA"):
        dataset_dir("edge")


def test_validation_reports_problems(shared_data, tmp_path) -> None:
    copy = tmp_path / "edges"
    shutil.copytree(shared_data / "texture-vs-shape" / "stimuli" / "edges", copy)
    (copy / "bear" / "bear1.png").unlink()
    Image.new("RGB", (100, 80)).save(copy / "cat" / "cat1.png")
    report = validate_dataset("edge", copy, check_hashes=True)
    assert not report.ok and report.n_found == 159
    text = report.summary()
    assert "missing: bear/bear1.png" in text
    assert "cat/cat1.png: sha256 mismatch" in text
    assert "expected 160 images, found 159" in text
    report = validate_dataset("edge", copy)  # without hashes the size check catches the bad file
    assert any("cat/cat1.png: size 100×80, expected 224×224" in p for p in report.problems)


def test_data_cli(shared_data, tmp_path, capsys, monkeypatch) -> None:
    assert main(["data", "validate", "edge", "silhouette", "--dir", str(shared_data)]) == 0
    assert capsys.readouterr().out.count("OK") == 2
    monkeypatch.setenv("TEXTUREBIAS_DATA", str(shared_data))
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "cue-conflict" in out and "mvh-humans/uniform-noise" in out
    assert main(["data", "validate", "edge", "--dir", str(tmp_path)]) == 1
    assert "failed validation" in capsys.readouterr().err
    assert main(["data", "fetch", "no-such-set"]) == 1


def test_is_available_reflects_local_copies(shared_data, monkeypatch) -> None:
    from texturebias.data.datasets import is_available

    monkeypatch.delenv("TEXTUREBIAS_DATA", raising=False)
    # nothing cached, no data root: nothing is available, archives included
    assert not is_available("cue-conflict")
    assert not is_available("mvh/colour")
    assert not is_available("g18/power-spectrum")
    monkeypatch.setenv("TEXTUREBIAS_DATA", str(shared_data))
    assert is_available("cue-conflict") and is_available("edge-humans") and is_available("g18/power-spectrum")
    assert not is_available("mvh/colour")  # release images are not part of shared/data
