"""Pascal VOC in the devkit layout: reading, writing and fetching (REFERENCE §6).

A VOC year folder (``VOCdevkit/VOC2007``, ``VOCdevkit/VOC2012``) holds ``JPEGImages/<id>.jpg``,
``Annotations/<id>.xml`` and ``ImageSets/Main/<set>.txt`` (one image id a line). Each XML ``object`` has a
``name``, a ``difficult`` flag and a ``bndbox`` whose integer ``xmin ymin xmax ymax`` are **1-based and
inclusive**. torchvision's detectors take 0-based float ``x1 y1 x2 y2``, so :func:`parse_annotation`
subtracts 1 from every XML value and :func:`write_annotation` (and the results writer) add it back: a round
trip is exact.

Train sets are named ``<year>-<set>`` (``2007-trainval``, ``2012-trainval``); ``07+12`` is the usual
``2007-trainval,2012-trainval`` concatenation (16,551 images). Problems with a file (missing image or XML,
box outside the image or with ``xmax < xmin``, unknown class, unreadable XML) are collected per image:
:func:`load_voc` raises one :class:`~texturebias.errors.DataError` that counts them and names the first
ones, or with ``skip_bad=True`` keeps the good images and reports every bad one in
:attr:`VocSet.bad` — never a silent drop.

The archives are declared as data (:data:`VOC_ARCHIVES`: URL + md5 from the devkit's distribution) and
fetched through the hash-checked downloader by :func:`fetch_voc_archive`.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from texturebias.errors import DataError, DownloadError
from texturebias.utils.download import download_file, sha256_file, texturebias_home
from texturebias.utils.io import atomic_open
from texturebias.utils.progress import get_logger, progress

#: The 20 VOC classes in the canonical order; detector label ``i + 1`` is ``VOC_CLASSES[i]`` (0 = background).
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

#: Optional file in a year folder that names the classes of a non-VOC data set in the devkit layout
#: (one a line), e.g. the generated scenes of :mod:`texturebias.detect.synthetic`. Absent: :data:`VOC_CLASSES`.
CLASSES_FILE = "classes.txt"

#: Shorthands for ``--train-sets``.
SET_ALIASES: dict[str, tuple[str, ...]] = {
    "07+12": ("2007-trainval", "2012-trainval"),
    "07": ("2007-trainval",),
    "12": ("2012-trainval",),
}

log = get_logger("detect.voc")


@dataclass(frozen=True)
class VocObject:
    """One annotated object.

    Attributes:
        name: Class name.
        box: 0-based ``(x1, y1, x2, y2)``: the XML's 1-based inclusive values minus 1.
        difficult: The devkit's ``difficult`` flag (ignored by the evaluation, left out of training).
        truncated: The ``truncated`` flag.
    """

    name: str
    box: tuple[float, float, float, float]
    difficult: bool = False
    truncated: bool = False


@dataclass(frozen=True)
class VocAnnotation:
    """The annotation of one image.

    Attributes:
        image_id: The id (file stem) used in the image sets and results files.
        width: Image width in pixels (from ``size``).
        height: Image height in pixels.
        objects: The objects, in file order.
        filename: The ``filename`` tag (``<id>.jpg``).
        depth: Number of channels (``size/depth``).
    """

    image_id: str
    width: int
    height: int
    objects: tuple[VocObject, ...]
    filename: str = ""
    depth: int = 3


@dataclass(frozen=True)
class VocImage:
    """An image of a VOC set: where its pixels are and its annotation."""

    image_path: Path
    annotation: VocAnnotation

    @property
    def image_id(self) -> str:
        return self.annotation.image_id


@dataclass
class VocSet:
    """Images of one or more VOC image sets.

    Attributes:
        images: The readable images with valid annotations, in image-set order (sets concatenated).
        classes: Class names; detector label ``i + 1`` is ``classes[i]``.
        sets: ``(year folder, image set)`` pairs that were read.
        bad: ``(image id, problem)`` for every image left out (only with ``skip_bad=True``).
    """

    images: list[VocImage]
    classes: tuple[str, ...]
    sets: list[tuple[Path, str]] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


def _text(node: ET.Element, tag: str, path: Path) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise DataError(f"{path}: missing <{tag}>")
    return child.text.strip()


def _int(node: ET.Element, tag: str, path: Path) -> int:
    text = _text(node, tag, path)
    try:
        # The devkit's values are integers; a few tools write "12.0" — accept those, refuse 12.5.
        value = float(text)
    except ValueError:
        raise DataError(f"{path}: <{tag}> is not a number ({text!r})") from None
    if value != int(value):
        raise DataError(f"{path}: <{tag}> is not an integer pixel coordinate ({text!r})")
    return int(value)


def _flag(node: ET.Element, tag: str) -> bool:
    child = node.find(tag)
    return child is not None and child.text is not None and child.text.strip() not in ("", "0")


def parse_annotation(path: str | os.PathLike[str], classes: Sequence[str] = VOC_CLASSES) -> VocAnnotation:
    """Read one VOC annotation XML and convert its 1-based inclusive boxes to 0-based (REFERENCE §6).

    Args:
        path: ``Annotations/<id>.xml``.
        classes: Allowed class names.

    Returns:
        The annotation; ``image_id`` is the file stem.

    Raises:
        DataError: missing or malformed file, unknown class name, ``xmax < xmin`` or ``ymax < ymin``, or a box
            outside the image (``xmin < 1``, ``xmax > width``, same for y).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"annotation not found: {p}")
    try:
        root = ET.parse(p).getroot()
    except ET.ParseError as exc:
        raise DataError(f"{p}: not a readable XML file ({exc})") from None
    size = root.find("size")
    if size is None:
        raise DataError(f"{p}: missing <size>")
    width, height = _int(size, "width", p), _int(size, "height", p)
    depth_node = size.find("depth")
    depth = int(depth_node.text) if depth_node is not None and (depth_node.text or "").strip().isdigit() else 3
    if width <= 0 or height <= 0:
        raise DataError(f"{p}: image size {width}x{height} is not positive")
    known = set(classes)
    objects = []
    for k, obj in enumerate(root.findall("object")):
        name = _text(obj, "name", p)
        if name not in known:
            raise DataError(f"{p}: object {k + 1} has unknown class {name!r}")
        bb = obj.find("bndbox")
        if bb is None:
            raise DataError(f"{p}: object {k + 1} ({name}) has no <bndbox>")
        xmin, ymin, xmax, ymax = (_int(bb, t, p) for t in ("xmin", "ymin", "xmax", "ymax"))
        if xmax < xmin or ymax < ymin:
            raise DataError(
                f"{p}: object {k + 1} ({name}) has xmax < xmin or ymax < ymin ({xmin} {ymin} {xmax} {ymax})"
            )
        if xmin < 1 or ymin < 1 or xmax > width or ymax > height:
            raise DataError(
                f"{p}: object {k + 1} ({name}) box {xmin} {ymin} {xmax} {ymax} lies outside the {width}x{height} "
                "image (1-based inclusive coordinates)"
            )
        objects.append(
            VocObject(
                name=name,
                box=(float(xmin - 1), float(ymin - 1), float(xmax - 1), float(ymax - 1)),
                difficult=_flag(obj, "difficult"),
                truncated=_flag(obj, "truncated"),
            )
        )
    filename_node = root.find("filename")
    filename = (filename_node.text or "").strip() if filename_node is not None else ""
    return VocAnnotation(p.stem, width, height, tuple(objects), filename or f"{p.stem}.jpg", depth)


def xml_box(box: Sequence[float]) -> tuple[int, int, int, int]:
    """0-based ``(x1, y1, x2, y2)`` → the XML's 1-based inclusive integers (rounded, then ``+ 1``)."""
    return tuple(int(round(v)) + 1 for v in box)  # type: ignore[return-value]


def write_annotation(path: str | os.PathLike[str], annotation: VocAnnotation, *, folder: str = "VOC2007") -> Path:
    """Write ``annotation`` as a devkit XML file (atomically); :func:`parse_annotation` reads it back exactly.

    Boxes are converted back to 1-based inclusive integers (:func:`xml_box`).
    """
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = annotation.filename or f"{annotation.image_id}.jpg"
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(annotation.width)
    ET.SubElement(size, "height").text = str(annotation.height)
    ET.SubElement(size, "depth").text = str(annotation.depth)
    ET.SubElement(root, "segmented").text = "0"
    for obj in annotation.objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj.name
        ET.SubElement(node, "pose").text = "Unspecified"
        ET.SubElement(node, "truncated").text = str(int(obj.truncated))
        ET.SubElement(node, "difficult").text = str(int(obj.difficult))
        bb = ET.SubElement(node, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), xml_box(obj.box), strict=True):
            ET.SubElement(bb, tag).text = str(value)
    ET.indent(root, space="\t")
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(ET.tostring(root, encoding="unicode"))
        fh.write("\n")
    return Path(path)


def read_image_set(year_dir: str | os.PathLike[str], image_set: str) -> list[str]:
    """Image ids of ``ImageSets/Main/<image_set>.txt`` (first token of each non-empty line).

    Raises:
        DataError: file missing or empty.
    """
    path = Path(year_dir) / "ImageSets" / "Main" / f"{image_set}.txt"
    if not path.is_file():
        raise DataError(f"image set not found: {path}")
    ids = [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not ids:
        raise DataError(f"image set {path} is empty")
    return ids


def read_classes(year_dir: str | os.PathLike[str]) -> tuple[str, ...]:
    """The class names of a year folder: its :data:`CLASSES_FILE` when present, else :data:`VOC_CLASSES`."""
    path = Path(year_dir) / CLASSES_FILE
    if not path.is_file():
        return VOC_CLASSES
    names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if not names or len(set(names)) != len(names):
        raise DataError(f"{path}: expected distinct class names, one a line")
    return names


def resolve_year_dir(voc_root: str | os.PathLike[str], year: str) -> Path:
    """The ``VOC<year>`` folder for ``voc_root`` = ``VOCdevkit`` (its child), or the year folder itself.

    Raises:
        DataError: neither exists.
    """
    root = Path(voc_root)
    for candidate in (root / f"VOC{year}", root / "VOCdevkit" / f"VOC{year}"):
        if (candidate / "Annotations").is_dir():
            return candidate
    if root.name == f"VOC{year}" and (root / "Annotations").is_dir():
        return root
    if (root / "Annotations").is_dir() and not any(root.glob("VOC*/Annotations")):
        return root  # a single year folder under another name (e.g. the generated scenes)
    raise DataError(
        f"no VOC{year} folder with Annotations/ in {root} (expected VOCdevkit/VOC{year} or the year folder)"
    )


def parse_set_names(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"2007-trainval,2012-trainval"`` or ``"07+12"`` → ``("2007-trainval", "2012-trainval")``.

    Raises:
        DataError: a name that is not ``<year>-<set>`` or an alias.
    """
    parts = [p.strip() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    out: list[str] = []
    for part in parts:
        if part in SET_ALIASES:
            out.extend(SET_ALIASES[part])
            continue
        year, sep, name = part.partition("-")
        if not sep or not year.isdigit() or len(year) != 4 or not name:
            raise DataError(
                f"image set {part!r} is not <year>-<set> (e.g. 2007-trainval) or one of {sorted(SET_ALIASES)}"
            )
        out.append(part)
    if not out:
        raise DataError("no image set given")
    return tuple(out)


def _load_image(year_dir: Path, image_id: str, classes: Sequence[str], require_image: bool = True) -> VocImage:
    ann = parse_annotation(year_dir / "Annotations" / f"{image_id}.xml", classes)
    image = year_dir / "JPEGImages" / f"{image_id}.jpg"
    if require_image and not image.is_file():
        alt = year_dir / "JPEGImages" / ann.filename
        if not alt.is_file():
            raise DataError(f"image not found: {image}")
        image = alt
    return VocImage(image, ann)


def load_image_set(
    year_dir: str | os.PathLike[str],
    image_set: str,
    *,
    classes: Sequence[str] | None = None,
    skip_bad: bool = False,
    require_images: bool = True,
) -> VocSet:
    """Read one image set of one year folder (see :func:`load_voc`)."""
    year_dir = Path(year_dir)
    names = tuple(classes) if classes is not None else read_classes(year_dir)
    ids = read_image_set(year_dir, image_set)
    images: list[VocImage] = []
    bad: list[tuple[str, str]] = []
    for image_id in progress(ids, desc=f"read {year_dir.name}/{image_set}", unit="xml", leave=False):
        try:
            images.append(_load_image(year_dir, image_id, names, require_images))
        except DataError as exc:
            bad.append((image_id, str(exc)))
    if bad and not skip_bad:
        first = "; ".join(msg for _, msg in bad[:3])
        raise DataError(
            f"{len(bad)} of {len(ids)} images of {year_dir / 'ImageSets/Main' / image_set}.txt are unusable "
            f"(first: {first}); fix them or pass --skip-bad to leave them out (they are listed in the run's outputs)"
        )
    if bad:
        log.warning("%s/%s: left out %d of %d images with problems, e.g. %s", year_dir.name, image_set, len(bad),
                    len(ids), bad[0][1])  # fmt: skip
    if not images:
        raise DataError(f"image set {image_set} of {year_dir} has no usable image")
    return VocSet(images, names, [(year_dir, image_set)], bad)


def load_voc(
    voc_root: str | os.PathLike[str],
    sets: str | Iterable[str],
    *,
    classes: Sequence[str] | None = None,
    skip_bad: bool = False,
    require_images: bool = True,
) -> VocSet:
    """Read and validate VOC image sets, concatenated in the given order ("07+12").

    Args:
        voc_root: ``VOCdevkit`` (holding ``VOC2007``/``VOC2012``) or one year folder.
        sets: ``<year>-<set>`` names, comma-separated or a list, or an alias of :data:`SET_ALIASES`.
        classes: Class names (default: the first year folder's :data:`CLASSES_FILE`, else :data:`VOC_CLASSES`).
        skip_bad: Leave out images with problems (listed in :attr:`VocSet.bad` and logged with their count)
            instead of raising.
        require_images: Check that every image file exists (evaluating results files needs only the XML).

    Returns:
        The images; ``bad`` lists what was left out.

    Raises:
        DataError: missing folders or image-set files, an empty set, or (without ``skip_bad``) any bad image:
            one error that counts them and quotes the first three.
    """
    names = parse_set_names(sets)
    out: VocSet | None = None
    for name in names:
        year, _, image_set = name.partition("-")
        year_dir = resolve_year_dir(voc_root, year)
        part = load_image_set(
            year_dir, image_set, classes=classes if classes is not None else (out.classes if out else None),
            skip_bad=skip_bad, require_images=require_images,
        )  # fmt: skip
        if out is None:
            out = part
        else:
            if part.classes != out.classes:
                raise DataError(f"{year_dir} names other classes than {out.sets[0][0]}")
            out.images += part.images
            out.sets += part.sets
            out.bad += [(f"{year_dir.name}/{i}", m) for i, m in part.bad]
    assert out is not None
    return out


# --------------------------------------------------------------------------------------------- archives


@dataclass(frozen=True)
class VocArchive:
    """A declared VOC archive.

    Attributes:
        name: Short name (``voc2007-trainval``).
        filename: Archive file name.
        url: Download URL (the Oxford host is often down; pass a mirror or a local file).
        md5: The md5 published with the devkit (what torchvision's VOC dataset checks).
        sha256: sha256 when known (checked by the downloader as well).
        size_mb: Approximate size.
        contents: What it holds.
    """

    name: str
    filename: str
    url: str
    md5: str
    sha256: str | None = None
    size_mb: float | None = None
    contents: str = ""


_HOST = "http://host.robots.ox.ac.uk/pascal/VOC/"
VOC_ARCHIVES: dict[str, VocArchive] = {
    a.name: a
    for a in (
        VocArchive("voc2007-trainval", "VOCtrainval_06-Nov-2007.tar", _HOST + "voc2007/VOCtrainval_06-Nov-2007.tar",
                   "c52e279531787c972589f7e41ab4ae64", size_mb=439.0, contents="VOC2007 trainval (5,011 images)"),
        VocArchive("voc2007-test", "VOCtest_06-Nov-2007.tar", _HOST + "voc2007/VOCtest_06-Nov-2007.tar",
                   "b6e924de25625d8de591ea690078ad9f", size_mb=430.0, contents="VOC2007 test (4,952 images)"),
        VocArchive("voc2012-trainval", "VOCtrainval_11-May-2012.tar", _HOST + "voc2012/VOCtrainval_11-May-2012.tar",
                   "6cd6e144f989b92b3379bac3b3de84fd", size_mb=1900.0, contents="VOC2012 trainval (11,540 images)"),
    )
}  # fmt: skip
"""VOC archives (REFERENCE §6 for the 2007 md5s; the 2012 md5 is the one torchvision's VOC dataset checks)."""


def md5_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex md5 of a file (the checksum the VOC devkit publishes)."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _check_archive(path: Path, archive: VocArchive) -> None:
    digest = md5_file(path)
    if digest != archive.md5.lower():
        raise DownloadError(
            f"{archive.name}: md5 mismatch for {path} (expected {archive.md5}, got {digest}); file refused"
        )
    if archive.sha256 is not None and sha256_file(path) != archive.sha256.lower():
        raise DownloadError(f"{archive.name}: sha256 mismatch for {path}; file refused")


def voc_archive_fetched(name: str, root: str | os.PathLike[str] | None = None) -> bool:
    """Whether :func:`fetch_voc_archive` already unpacked archive ``name`` into ``root`` (default: the cache)."""
    archive = VOC_ARCHIVES[name]
    dest_root = Path(root) if root is not None else texturebias_home() / "data" / "voc"
    return (dest_root / f".{archive.filename}.extracted").is_file()


def fetch_voc_archive(
    archive: str | VocArchive,
    root: str | os.PathLike[str] | None = None,
    *,
    local: str | os.PathLike[str] | None = None,
    url: str | None = None,
    extract: bool = True,
) -> Path:
    """Download (or take a local copy of) a VOC archive, check its md5, and unpack it into ``root``.

    The archive is downloaded through :func:`~texturebias.utils.download.download_file` to a temporary name
    and gets its final name only after the md5 (and sha256, when declared) matched. The tar files contain
    ``VOCdevkit/VOC<year>/...``, so after extraction ``root/VOCdevkit`` is the ``--voc-root``.

    Args:
        archive: A name of :data:`VOC_ARCHIVES` or a record.
        root: Destination folder (default ``$TEXTUREBIAS_HOME/data/voc``).
        local: An already downloaded archive to verify and unpack instead of downloading.
        url: A mirror URL instead of the declared one.
        extract: Unpack (skipped when it was unpacked before).

    Returns:
        ``root/VOCdevkit``.

    Raises:
        DownloadError: unknown name, failed download, or checksum mismatch (nothing is kept).
    """
    if isinstance(archive, str):
        if archive not in VOC_ARCHIVES:
            raise DownloadError(f"unknown VOC archive {archive!r}; declared: {', '.join(VOC_ARCHIVES)}")
        archive = VOC_ARCHIVES[archive]
    dest_root = Path(root) if root is not None else texturebias_home() / "data" / "voc"
    target = dest_root / archive.filename
    if local is not None:
        src = Path(local)
        if not src.is_file():
            raise DownloadError(f"{archive.name}: local archive not found: {src}")
        _check_archive(src, archive)
        target = src
    elif not target.is_file():
        # download_file renames into place only after the transfer; the md5 is checked right after, and a
        # mismatching file is removed, so nothing unverified stays under the final name.
        hint = f"unpack it with `tar -xf {archive.filename} -C {dest_root}` (then --voc-root {dest_root / 'VOCdevkit'})"
        download_file(url or archive.url, target, sha256=archive.sha256, hint=hint)
        try:
            _check_archive(target, archive)
        except DownloadError:
            target.unlink(missing_ok=True)
            raise
    else:
        _check_archive(target, archive)
    marker = dest_root / f".{archive.filename}.extracted"
    if extract and not marker.is_file():
        dest_root.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(target) as tar:
                tar.extractall(dest_root, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise DownloadError(f"{archive.name}: cannot unpack {target} ({exc})") from None
        marker.write_text("ok\n")
    return dest_root / "VOCdevkit"
