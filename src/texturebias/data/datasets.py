"""Registry of downloadable data sets: stimuli and human trial data, pinned by commit and sha256.

Every data set is a list of files, each with its path in a public repository at a pinned commit and its
sha256 (a *manifest*, shipped as package data in ``texturebias/data/manifests/*.json``). A data set can be

- fetched on demand into the cache (``$TEXTUREBIAS_HOME/data``, laid out like ``../shared/data``) with
  :func:`fetch_dataset` — atomic, hash-checked downloads through :func:`~texturebias.models.weights.download_file`;
- taken from a local copy: an explicit folder (``--stimuli DIR``: either the data set's own folder or a data
  root) or ``$TEXTUREBIAS_DATA`` (a folder laid out like ``../shared/data``), see :func:`dataset_dir`;
- validated (:func:`validate_dataset`): every manifest file present, image names parse, images 224×224,
  optionally sha256 of every file.

Extending: drop another manifest JSON into ``texturebias/data/manifests/`` or call :func:`register_dataset`
with a :class:`Dataset`. A file may carry its own ``url`` (e.g. a release tarball) and ``extract: true``
(a ``.tar.gz`` unpacked into the data set's folder after the hash check).

Manifest format::

    {"source": "texture-vs-shape", "repository": "github.com/rgeirhos/texture-vs-shape",
     "commit": "<40 hex>", "base_url": "https://raw.githubusercontent.com/.../<commit>/",
     "local_root": "texture-vs-shape", "license": "CC-BY 4.0", "citation": "...",
     "datasets": {"cue-conflict": {"folder": "stimuli/style-transfer-preprocessed-512", "kind": "images",
                                    "count": 1280, "image_size": 224, "description": "..."}, ...},
     "files": [{"path": "stimuli/.../airplane1-bicycle2.png", "sha256": "...", "size": 12345}, ...]}

A data set takes the manifest files under its ``folder`` (or its own ``files`` list).
"""

from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from texturebias.data.labels import CATEGORIES, texture_category
from texturebias.errors import DataError, DownloadError
from texturebias.utils.download import check_hash, download_file, offline_hint, sha256_file, texturebias_home
from texturebias.utils.progress import get_logger, progress

DATA_ENV = "TEXTUREBIAS_DATA"
_log = get_logger(__name__)


@dataclass(frozen=True)
class DataFile:
    """One file of a data set.

    Attributes:
        path: Path relative to the source root (= path in the upstream repository at the pinned commit).
        sha256: Expected sha256 hex digest.
        size: Size in bytes (for listings; not enforced beyond the hash).
        local: Path relative to the source's local root when it differs from ``path`` (e.g. a renamed licence).
        url: Download URL overriding ``base_url + path`` (release assets).
        extract: Unpack this ``.tar``/``.tar.gz`` into the data set's folder after download.
    """

    path: str
    sha256: str
    size: int | None = None
    local: str | None = None
    url: str | None = None
    extract: bool = False

    @property
    def local_path(self) -> str:
        return self.local or self.path


@dataclass(frozen=True)
class Dataset:
    """A named data set of one source.

    Attributes:
        name: Registry name (``"cue-conflict"``, ``"cue-conflict-humans"``, ``"mvh-humans/colour"``, ...).
        source: Source name (the manifest's ``source``).
        base_url: Raw-file URL prefix at the pinned commit (ends with ``/``).
        local_root: Folder of the source inside a data root (``texture-vs-shape``).
        folder: The data set's folder relative to the source root.
        files: Its files.
        kind: ``"images"`` (class sub-folders of PNGs), ``"trials"`` (trial CSVs) or ``"files"``.
        count: Expected number of images / trial files (validation).
        image_size: Expected square image side (validation), if any.
        description: One line for ``texturebias data list``.
        license: License of the data.
        citation: Paper to cite.
        repository: Upstream repository.
        commit: Pinned commit.
    """

    name: str
    source: str
    base_url: str
    local_root: str
    folder: str
    files: tuple[DataFile, ...]
    kind: str = "files"
    count: int | None = None
    image_size: int | None = None
    description: str = ""
    license: str = "unknown"
    citation: str = ""
    repository: str = ""
    commit: str = ""
    extra: dict[str, object] = field(default_factory=dict, compare=False)

    def url(self, f: DataFile) -> str:
        """Download URL of one file."""
        return f.url or self.base_url + f.path

    def size_bytes(self) -> int:
        return sum(f.size or 0 for f in self.files)

    def _payload(self) -> list[DataFile]:
        """The files that must exist in the folder (licence and other files outside it excluded)."""
        prefix = self.folder.rstrip("/") + "/"
        return [f for f in self.files if f.local_path.startswith(prefix) and not f.extract]


_DATASETS: dict[str, Dataset] = {}
_LOADED = False


def register_dataset(dataset: Dataset) -> Dataset:
    """Add a data set to the registry (same name twice with different content is an error)."""
    if dataset.name in _DATASETS and _DATASETS[dataset.name] != dataset:
        raise ValueError(f"data set {dataset.name!r} registered twice with different content")
    _DATASETS[dataset.name] = dataset
    return dataset


def load_manifest(path_or_text: str | os.PathLike[str], *, text: bool = False) -> list[Dataset]:
    """Parse a manifest (file path, or JSON text with ``text=True``) into :class:`Dataset` records."""
    raw = json.loads(path_or_text if text else Path(path_or_text).read_text(encoding="utf-8"))
    files = [DataFile(**f) for f in raw.get("files", [])]
    out = []
    for name, spec in raw.get("datasets", {}).items():
        spec = dict(spec)
        folder = spec.pop("folder", "")
        own = spec.pop("files", None)
        if own is not None:
            chosen = tuple(DataFile(**f) for f in own)
        else:
            prefix = folder.rstrip("/") + "/"
            chosen = tuple(f for f in files if f.local_path.startswith(prefix))
        license_file = spec.pop("license_file", None)
        if license_file is not None:
            chosen += tuple(f for f in files if f.local_path == license_file)
        if not chosen:
            raise ValueError(f"manifest {raw.get('source')}: data set {name!r} has no files")
        out.append(
            Dataset(
                name=name,
                source=raw["source"],
                base_url=raw["base_url"],
                local_root=raw["local_root"],
                folder=folder,
                files=chosen,
                kind=spec.pop("kind", "files"),
                count=spec.pop("count", None),
                image_size=spec.pop("image_size", None),
                description=spec.pop("description", ""),
                license=raw.get("license", "unknown"),
                citation=raw.get("citation", ""),
                repository=raw.get("repository", ""),
                commit=raw.get("commit", ""),
                extra=spec,
            )
        )
    return out


def _ensure_loaded() -> None:
    global _LOADED
    if _LOADED:
        return
    manifests = resources.files("texturebias.data").joinpath("manifests")
    for entry in sorted(manifests.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            for ds in load_manifest(entry.read_text(encoding="utf-8"), text=True):
                register_dataset(ds)
    _LOADED = True


def list_datasets() -> list[Dataset]:
    """All registered data sets, sorted by name."""
    _ensure_loaded()
    return [_DATASETS[k] for k in sorted(_DATASETS)]


def get_dataset(name: str) -> Dataset:
    """Look up a data set by name.

    Raises:
        DataError: unknown name (the message lists the known ones).
    """
    _ensure_loaded()
    try:
        return _DATASETS[name]
    except KeyError:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(sorted(_DATASETS))}") from None


def data_cache_dir() -> Path:
    """Root of downloaded data (``$TEXTUREBIAS_HOME/data``), laid out like ``../shared/data``."""
    return texturebias_home() / "data"


def env_data_root() -> Path | None:
    """``$TEXTUREBIAS_DATA`` when set."""
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else None


def folder_in_root(dataset: Dataset, root: str | os.PathLike[str]) -> Path:
    """Where ``dataset`` lives inside a data root laid out like ``../shared/data``."""
    return Path(root) / dataset.local_root / dataset.folder


def dataset_dir(
    name: str, local: str | os.PathLike[str] | None = None, *, download: bool = True, show_progress: bool = True
) -> Path:
    """A folder holding the data set, looking in this order:

    1. ``local`` (``--stimuli DIR``): the data set's own folder, or a data root containing it;
    2. ``$TEXTUREBIAS_DATA`` (a data root);
    3. the cache, downloading missing files when ``download`` is true.

    Raises:
        DataError: ``local``/``$TEXTUREBIAS_DATA`` given but the data set is not there, or not downloadable.
        DownloadError: download failed (offline) — the message says how to use a local copy.
    """
    ds = get_dataset(name)
    if local is not None:
        p = Path(local).expanduser()
        if not p.is_dir():
            raise DataError(f"{name}: local folder not found: {p}")
        inside = folder_in_root(ds, p)
        return inside if inside.is_dir() else p
    env = env_data_root()
    if env is not None:
        p = folder_in_root(ds, env)
        if not p.is_dir():
            raise DataError(
                f"{name}: ${DATA_ENV}={env} has no {ds.local_root}/{ds.folder} (expected shared/data layout)"
            )
        return p
    return fetch_dataset(name, download=download, show_progress=show_progress)


def fetch_dataset(
    name: str, *, root: str | os.PathLike[str] | None = None, download: bool = True, show_progress: bool = True
) -> Path:
    """Make sure every file of ``name`` is in ``root`` (default: the cache), downloading what is missing.

    Files already present are trusted when their size matches (a full hash check is :func:`validate_dataset`
    with ``check_hashes=True``); downloads are verified against the manifest sha256 before they get their
    final name. Returns the data set's folder.

    Raises:
        DataError: files missing and ``download`` is false.
        DownloadError: a download failed or a hash did not match.
    """
    ds = get_dataset(name)
    base = Path(root) if root is not None else data_cache_dir()
    src_root = base / ds.local_root
    missing = [f for f in ds.files if not _present(src_root, f)]
    if missing and not download:
        advice = offline_hint("data", "pass --stimuli DIR")
        raise DataError(
            f"{name}: {len(missing)} of {len(ds.files)} files missing in {src_root} "
            f"(run `texturebias data fetch {name}`, or {advice} with a local copy, or set ${DATA_ENV})"
        )
    if missing:
        _log.info("fetching %d file(s) of %s into %s", len(missing), name, src_root)
    for f in progress(missing, desc=f"fetch {name}", unit="file", disable=not show_progress or len(missing) < 2):
        dest = src_root / f.local_path
        try:
            download_file(ds.url(f), dest, sha256=f.sha256, show_progress=False)
        except DownloadError as exc:
            reason = str(exc).split(" If this machine is offline")[0].rstrip(".")
            advice = offline_hint("data", "pass --stimuli DIR")
            raise DownloadError(
                f"{name}: {reason}. Offline? Copy the data set from a machine that has it and {advice}, "
                f"or set ${DATA_ENV} to a data folder laid out like <root>/{ds.local_root}/{ds.folder}"
            ) from None
        if f.extract:
            _extract(dest, src_root / ds.folder)
    return src_root / ds.folder


def _present(src_root: Path, f: DataFile) -> bool:
    p = src_root / f.local_path
    if f.extract:
        return (p.parent / (p.name + ".extracted")).is_file()
    return p.is_file() and (f.size is None or p.stat().st_size == f.size)


def _extract(archive: Path, dest: Path) -> None:
    """Unpack a downloaded tarball safely (no absolute paths or ``..``), then mark it as extracted."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    (archive.parent / (archive.name + ".extracted")).write_text("ok\n")


@dataclass
class ValidationReport:
    """Result of :func:`validate_dataset`."""

    name: str
    folder: Path
    n_expected: int
    n_found: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self, max_items: int = 8) -> str:
        head = f"{self.name}: {self.n_found}/{self.n_expected} files in {self.folder}"
        if self.ok:
            return head + " — OK"
        items = self.problems[:max_items]
        more = f"\n  ... and {len(self.problems) - max_items} more" if len(self.problems) > max_items else ""
        return head + f" — {len(self.problems)} problem(s):\n  " + "\n  ".join(items) + more


def validate_dataset(
    name: str, folder: str | os.PathLike[str] | None = None, *, check_hashes: bool = False
) -> ValidationReport:
    """Check a local copy of a data set against its manifest.

    Checks that every manifest file exists (names relative to the data set's folder), that image names parse
    (class folder is one of the 16 categories; cue-conflict names end in ``-<texture><j>.png``), that images
    have the expected size, and — with ``check_hashes`` — every sha256.

    Args:
        name: Registry name.
        folder: The data set's folder (default: resolved by :func:`dataset_dir` without downloading).
        check_hashes: Also hash every file (slower).

    Raises:
        DataError: ``folder`` is given but is not a folder.
    """
    from PIL import Image, UnidentifiedImageError

    ds = get_dataset(name)
    if folder is None:
        try:
            folder = dataset_dir(name, download=False)
        except DataError as exc:
            return ValidationReport(name, Path("?"), len(ds._payload()), 0, [str(exc)])
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{name}: folder not found: {root}")
    payload = ds._payload()
    prefix = ds.folder.rstrip("/") + "/"
    problems: list[str] = []
    found = 0
    for f in progress(payload, desc=f"validate {name}", unit="file", disable=len(payload) < 50):
        rel = f.local_path[len(prefix) :]
        p = root / rel
        if not p.is_file():
            problems.append(f"missing: {rel}")
            continue
        found += 1
        if check_hashes:
            try:
                check_hash(sha256_file(p), sha256=f.sha256, hash_prefix=None, what=rel)
            except DownloadError as exc:
                problems.append(str(exc))
                continue
        if ds.kind == "images":
            parts = Path(rel).parts
            if len(parts) != 2 or parts[0] not in CATEGORIES:
                problems.append(f"{rel}: expected <category>/<file> with one of the 16 categories")
            elif name.startswith("cue-conflict") and texture_category(parts[1]) not in CATEGORIES:
                problems.append(f"{rel}: texture class {texture_category(parts[1])!r} does not parse")
            if ds.image_size is not None:
                try:
                    with Image.open(p) as im:
                        size = im.size
                except (OSError, UnidentifiedImageError) as exc:
                    problems.append(f"{rel}: unreadable image ({exc})")
                    continue
                if size != (ds.image_size, ds.image_size):
                    problems.append(f"{rel}: size {size[0]}×{size[1]}, expected {ds.image_size}×{ds.image_size}")
    if ds.count is not None and ds.kind == "images":
        actual = sum(1 for q in root.rglob("*.png") if not q.name.startswith("."))
        if actual != ds.count:
            problems.append(f"expected {ds.count} images, found {actual}")
    return ValidationReport(name, root, len(payload), found, problems)


def is_available(name: str) -> bool:
    """Whether a complete local copy of data set ``name`` exists (cache, ``$TEXTUREBIAS_DATA``), without downloading."""
    ds = get_dataset(name)
    try:
        folder = dataset_dir(name, download=False, show_progress=False)
    except (DataError, DownloadError):
        return False
    if any(f.extract for f in ds.files):  # release tarballs: available once unpacked
        return folder.is_dir() and any(p for p in folder.iterdir() if not p.name.startswith("."))
    if ds._payload():
        return validate_dataset(name, folder).n_found == len(ds._payload())
    # Files outside a data-set folder (e.g. the G18 .npy files): check them under the source root.
    depth = len(Path(ds.folder.strip("/")).parts) if ds.folder.strip("/") else 0
    src_root = folder.parents[depth - 1] if depth else folder
    return bool(ds.files) and all(_present(src_root, f) for f in ds.files)
