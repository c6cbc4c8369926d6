"""detect.voc and detect.synthetic: devkit layout, exact 1-based boxes, clear errors, declared archives."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from texturebias.detect.synthetic import SHAPES, make_scene, write_synthetic_voc
from texturebias.detect.voc import (
    VOC_ARCHIVES,
    VOC_CLASSES,
    VocAnnotation,
    VocArchive,
    VocObject,
    fetch_voc_archive,
    load_voc,
    parse_annotation,
    parse_set_names,
    write_annotation,
)
from texturebias.errors import DataError, DownloadError

XML = """<annotation><folder>VOC2007</folder><filename>000005.jpg</filename>
<size><width>500</width><height>375</height><depth>3</depth></size>
<object><name>chair</name><pose>Rear</pose><truncated>0</truncated><difficult>0</difficult>
<bndbox><xmin>263</xmin><ymin>211</ymin><xmax>324</xmax><ymax>339</ymax></bndbox></object>
<object><name>chair</name><truncated>1</truncated><difficult>1</difficult>
<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>500</xmax><ymax>375</ymax></bndbox></object></annotation>"""


def test_xml_boxes_are_shifted_to_zero_based_exactly_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "000005.xml"
    path.write_text(XML)
    ann = parse_annotation(path)
    assert ann.image_id == "000005" and (ann.width, ann.height) == (500, 375)
    assert ann.objects[0] == VocObject("chair", (262.0, 210.0, 323.0, 338.0), difficult=False, truncated=False)
    # 1-based inclusive (1, 1, 500, 375) covers the whole image: 0-based (0, 0, 499, 374).
    assert ann.objects[1].box == (0.0, 0.0, 499.0, 374.0) and ann.objects[1].difficult and ann.objects[1].truncated
    again = parse_annotation(write_annotation(tmp_path / "copy" / "000005.xml", ann))
    assert again == ann


@pytest.mark.parametrize(
    ("box", "name", "message"),
    [
        ((10, 10, 5, 20), "dog", "xmax < xmin"),
        ((0, 10, 20, 20), "dog", "outside"),
        ((10, 10, 501, 20), "dog", "outside"),
        ((10, 10, 20, 20), "unicorn", "unknown class 'unicorn'"),
    ],
)
def test_bad_annotations_give_clear_errors(tmp_path: Path, box: tuple[int, ...], name: str, message: str) -> None:
    xml = XML.replace("<name>chair</name><pose>", f"<name>{name}</name><pose>", 1)
    for tag, value in zip(("263", "211", "324", "339"), box, strict=True):
        xml = xml.replace(f">{tag}<", f">{value}<", 1)
    (tmp_path / "a.xml").write_text(xml)
    with pytest.raises(DataError, match=message):
        parse_annotation(tmp_path / "a.xml")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("voc")
    write_synthetic_voc(root, splits={"trainval": 6, "test": 3}, size=(64, 48), object_size=(10, 24), seed=1)
    write_synthetic_voc(root, splits={"trainval": 4}, year="2012", size=(64, 48), object_size=(10, 24), seed=2)
    return root


def test_synthetic_world_is_devkit_layout_deterministic_and_exact(world: Path, tmp_path: Path) -> None:
    voc = load_voc(world, "2007-trainval")
    assert len(voc) == 6 and voc.classes == SHAPES and not voc.bad
    assert (world / "VOC2007/ImageSets/Main/train.txt").read_text().split() == ["000001", "000002", "000003"]
    # Same seed -> same bytes; the tight box touches the drawn pixels on every side.
    write_synthetic_voc(tmp_path, splits={"trainval": 6, "test": 3}, size=(64, 48), object_size=(10, 24), seed=1)
    for sub in ("JPEGImages/000004.jpg", "Annotations/000004.xml"):
        assert (tmp_path / "VOC2007" / sub).read_bytes() == (world / "VOC2007" / sub).read_bytes()
    scene = make_scene("x", size=(64, 48), object_size=(10, 24), difficult_prob=0.0)
    assert all(not o.difficult for o in scene.annotation.objects)
    faint = make_scene("x", size=(64, 48), object_size=(10, 24), difficult_prob=1.0)
    assert all(o.difficult for o in faint.annotation.objects)


def test_07_plus_12_concatenates_in_order(world: Path) -> None:
    assert parse_set_names("07+12") == ("2007-trainval", "2012-trainval")
    voc = load_voc(world, "07+12")
    assert len(voc) == 10 and [d.name for d, _ in voc.sets] == ["VOC2007", "VOC2012"]
    assert voc.images[0].image_path.parent.parent.name == "VOC2007"
    assert voc.images[-1].image_path.parent.parent.name == "VOC2012"
    with pytest.raises(DataError, match="<year>-<set>"):
        parse_set_names("trainval")


def test_missing_files_empty_sets_and_skip_bad_are_reported_and_counted(world: Path, tmp_path: Path) -> None:
    root = tmp_path / "broken"
    year = write_synthetic_voc(root, splits={"trainval": 5}, size=(48, 48), object_size=(10, 20))
    (year / "JPEGImages/000002.jpg").unlink()
    (year / "Annotations/000004.xml").unlink()
    with pytest.raises(DataError, match=r"2 of 5 images .* unusable .*image not found"):
        load_voc(root, "2007-trainval")
    voc = load_voc(root, "2007-trainval", skip_bad=True)
    assert len(voc) == 3 and [i for i, _ in voc.bad] == ["000002", "000004"]
    assert "annotation not found" in voc.bad[1][1]
    (year / "ImageSets/Main/empty.txt").write_text("\n")
    with pytest.raises(DataError, match="is empty"):
        load_voc(root, "2007-empty")
    with pytest.raises(DataError, match="image set not found"):
        load_voc(root, "2007-nosuchset")
    with pytest.raises(DataError, match="no VOC2012 folder"):
        load_voc(root, "2012-trainval")


def _tar_with(tmp_path: Path) -> Path:
    archive = tmp_path / "VOCmini.tar"
    with tarfile.open(archive, "w") as tar:
        data = b"000001\n"
        info = tarfile.TarInfo("VOCdevkit/VOC2007/ImageSets/Main/test.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return archive


def test_declared_archives_are_fetched_with_md5_check(tmp_path: Path) -> None:
    assert VOC_ARCHIVES["voc2007-trainval"].md5 == "c52e279531787c972589f7e41ab4ae64"
    assert VOC_ARCHIVES["voc2007-test"].md5 == "b6e924de25625d8de591ea690078ad9f"
    archive = _tar_with(tmp_path)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    record = VocArchive("mini", "VOCmini.tar", archive.as_uri(), md5)
    devkit = fetch_voc_archive(record, tmp_path / "dl")
    assert devkit == tmp_path / "dl" / "VOCdevkit"
    assert (devkit / "VOC2007/ImageSets/Main/test.txt").read_text() == "000001\n"
    assert (tmp_path / "dl" / "VOCmini.tar").is_file()
    bad = VocArchive("mini", "VOCmini.tar", archive.as_uri(), "0" * 32)
    with pytest.raises(DownloadError, match="md5 mismatch"):
        fetch_voc_archive(bad, tmp_path / "dl2")
    assert not any((tmp_path / "dl2").glob("*.tar*"))  # nothing kept under the final or a temporary name
    with pytest.raises(DownloadError, match="md5 mismatch"):
        fetch_voc_archive(bad, tmp_path / "dl3", local=archive)
    assert fetch_voc_archive(record, tmp_path / "dl4", local=archive) == tmp_path / "dl4" / "VOCdevkit"
    with pytest.raises(DownloadError, match="unknown VOC archive"):
        fetch_voc_archive("voc1999")


def test_annotation_writer_uses_the_class_list(tmp_path: Path) -> None:
    ann = VocAnnotation("img", 20, 10, (VocObject("dog", (0.0, 0.0, 19.0, 9.0)),), "img.jpg")
    path = write_annotation(tmp_path / "img.xml", ann)
    assert "<xmax>20</xmax>" in path.read_text() and parse_annotation(path, VOC_CLASSES) == ann


def test_data_command_lists_and_fetches_voc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`texturebias data list|fetch` covers the VOC archives: md5-checked, unpacked into --root."""
    from texturebias.cli import main
    from texturebias.detect import voc

    archive = _tar_with(tmp_path)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(
        voc.VOC_ARCHIVES, "voc2007-test", VocArchive("voc2007-test", "VOCmini.tar", archive.as_uri(), md5)
    )
    assert main(["data", "list"]) == 0
    assert "voc2007-trainval" in capsys.readouterr().out
    assert main(["data", "fetch", "voc2007-test", "--root", str(tmp_path / "r")]) == 0
    assert "VOCdevkit" in capsys.readouterr().out
    assert (tmp_path / "r" / "VOCdevkit/VOC2007/ImageSets/Main/test.txt").is_file()
    assert voc.voc_archive_fetched("voc2007-test", tmp_path / "r")
