"""Map an image folder to an output folder: the job machinery behind ``stylize``, ``scramble`` and ``distort``.

Every dataset builder of texturebias has the same shape: read every image under ``INPUT_DIR`` (sorted,
case-insensitive extensions, via :func:`~texturebias.data.images.find_images`), turn each into one or
several output images, and write them under ``OUTPUT_DIR`` in a tree that mirrors the input with the same
stems. :func:`run_folder_job` does everything around the per-batch computation, once and correctly:

- **Determinism.** Each item carries ``item.seed(*parts)`` = ``stable_hash(job_seed, relative path, *parts)``,
  so random choices (which style, which tile permutation, which noise) are a pure function of the seed and
  the item, never of batch size, worker count, number of processes or interruptions.
- **Records.** ``manifest.csv`` (one row per output: ``input, output_name, output, status`` + the extra
  columns your callback reports) and ``failed.csv`` (``input, reason``) in ``OUTPUT_DIR``. Progress is
  journaled *as it goes* in ``OUTPUT_DIR/.job/rank<r>.jsonl`` (flushed every batch); at the end of every run
  (also after Ctrl-C) the journals are merged into ``manifest.csv``/``failed.csv`` sorted in input order
  and removed, so the finished tree does not depend on how the work was split or interrupted.
- **Resume.** Rerun the same call: items whose outputs are recorded as done *and* exist on disk are
  skipped. Outputs are written to a hidden temporary name and renamed (atomic), and an item is journaled
  only after all its outputs are renamed, so ``kill -9`` at any moment followed by a rerun gives a tree
  byte-identical to an uninterrupted run. Failed items are retried on a rerun (a fixed file then works).
- **Odd inputs.** Reading happens through :func:`~texturebias.data.images.load_image` (CMYK, grey, palette,
  RGBA, 16-bit converted); unreadable files (corrupt, truncated, zero-byte, non-image, too large) and items
  whose processing raised are recorded in ``failed.csv`` with the reason; the run never aborts on them and
  ends with a printed summary.
- **Scale.** Under ``torchrun`` each rank takes a disjoint round-robin share
  (:func:`~texturebias.utils.distributed.shard`); rank 0 merges the records after a barrier. Decoding and
  the ``load`` transform run in DataLoader worker processes; encoding and writing run in a thread pool, so
  both overlap with the computation. Rank 0 shows a progress bar with images/s and ETA.
- **Tar shards.** ``shard_size=N`` writes WebDataset-style tar shards (``shard-000000.tar`` …, each holding
  ``N`` consecutive inputs as ``<key>.<output_name>.<ext>`` + ``<key>.json``) instead of a file tree. The
  unit of resume is then the shard: a shard on disk whose inputs are all recorded is skipped (its failed
  inputs are not retried).

Example (one output per level, as ``texturebias distort`` would do)::

    from texturebias.data.folder_job import ItemResult, run_folder_job

    def process(items, images):            # images: what ``load`` returned, one per item (a PIL RGB image)
        results = []
        for item, img in zip(items, images):
            rng = np.random.default_rng(item.seed("noise"))
            outs = {f"level{l}": add_noise(img, l, rng) for l in (1, 2, 3)}
            results.append(ItemResult(outputs=outs, info={"seed": item.seed("noise")}))
        return results

    summary = run_folder_job("in/", "out/", process, seed=0, batch_size=32, workers=4,
                             manifest_fields=["seed"])
    # out/level1/<class>/<stem>.png, out/level2/..., out/manifest.csv, out/failed.csv

Output names map to paths with ``layout(name, stem, ext)``; the default :func:`default_layout` puts the
output named ``""`` at ``<stem>.<ext>`` and any other name at ``<name>/<stem>.<ext>``. ``load(path)`` runs in
worker processes, so it must be picklable (a module-level function or ``functools.partial``); by default it
is :func:`load_rgb`. The callback may return, per item, an :class:`ItemResult` or a plain mapping
``name -> image``; an image is a PIL image, an ``HxWx3``/``HxW`` uint8 array, or a float tensor
``3xHxW`` in [0, 1] (clamped, then ``x*255+0.5`` truncated, as torchvision's ``save_image``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import tarfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from texturebias.data.images import find_images, load_image
from texturebias.errors import DataError, TextureBiasError
from texturebias.utils.distributed import DistInfo, dist_info, shard
from texturebias.utils.io import atomic_path, require_same_settings, write_csv, write_json
from texturebias.utils.progress import get_logger, progress
from texturebias.utils.seed import stable_hash

MANIFEST_NAME = "manifest.csv"
FAILED_NAME = "failed.csv"
JOURNAL_DIR = ".job"
SETTINGS_NAME = "job.json"
BASE_FIELDS: tuple[str, ...] = ("input", "output_name", "output", "status")
FORMATS: dict[str, str] = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}

ImageLike = Any  # PIL.Image.Image | np.ndarray (uint8) | torch.Tensor (float in [0, 1])


@dataclass(frozen=True)
class JobItem:
    """One input image of a folder job.

    Attributes:
        index: Position in the sorted list of all inputs (the same in every process).
        path: The input file.
        relpath: Path relative to the input folder, POSIX style (``"n01440764/x.JPEG"``).
        job_seed: The job's seed.
    """

    index: int
    path: Path
    relpath: str
    job_seed: int = 0

    @property
    def stem(self) -> str:
        """Relative path without the file suffix (``"n01440764/x"``): outputs keep it."""
        return self.relpath[: -len(Path(self.relpath).suffix)] if Path(self.relpath).suffix else self.relpath

    def seed(self, *parts: object) -> int:
        """A 63-bit seed that depends only on (job seed, relative path, ``parts``)."""
        return stable_hash(self.job_seed, self.relpath, *parts) >> 1

    def rng(self, *parts: object) -> np.random.Generator:
        """A NumPy Generator seeded with :meth:`seed`."""
        return np.random.default_rng(self.seed(*parts))


@dataclass
class ItemResult:
    """What the batch callback returns for one item.

    Attributes:
        outputs: Output name → image (see the module docstring for accepted image types).
        info: Extra manifest columns for every output row of this item (e.g. ``{"style": ..., "alpha": 1.0}``);
            values may also be per-output mappings ``{output_name: value}``.
        error: Set instead of ``outputs`` when this item could not be processed (recorded in failed.csv).
    """

    outputs: Mapping[str, ImageLike] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class FolderJobSummary:
    """What a run did (this rank's counts; ``failed``/``total_*`` are over all ranks on rank 0)."""

    input_dir: Path
    output_dir: Path
    total_inputs: int
    processed: int = 0
    skipped_done: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    done_total: int | None = None  # inputs done over all ranks and runs (rank 0, after the merge)

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        """A short human-readable summary, listing skipped (failed) inputs."""
        lines = [
            f"{self.processed} processed here, {self.skipped_done} already done, {len(self.failed)} failed "
            f"of {self.total_inputs} inputs in {self.seconds:.1f} s ({self.images_per_second:.2f} images/s)"
        ]
        if self.done_total is not None:
            lines.append(f"{self.output_dir}: {self.done_total} of {self.total_inputs} inputs done")
        if self.failed:
            lines.append(f"skipped {len(self.failed)} input(s) (see {self.output_dir / FAILED_NAME}):")
            lines += [f"  {rel}: {reason}" for rel, reason in self.failed[:20]]
            if len(self.failed) > 20:
                lines.append(f"  ... and {len(self.failed) - 20} more")
        return "\n".join(lines)


def default_layout(name: str, stem: str, ext: str) -> str:
    """``""`` → ``<stem>.<ext>`` (mirror the input tree); any other name → ``<name>/<stem>.<ext>``."""
    return f"{stem}.{ext}" if name == "" else f"{name}/{stem}.{ext}"


def load_rgb(path: Path) -> Image.Image:
    """Default ``load``: the image as 8-bit RGB PIL (raises ImageReadError for unreadable files)."""
    return load_image(path)


def to_pil(image: ImageLike) -> Image.Image:
    """Convert an output image (PIL, uint8 array, or float tensor in [0, 1]) to an 8-bit PIL image."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, torch.Tensor):
        t = image.detach().float().cpu()
        if t.ndim == 3 and t.shape[0] in (1, 3):
            t = t.permute(1, 2, 0)
        # torchvision.utils.save_image convention (what the AdaIN reference used to write SIN).
        arr = t.clamp(0, 1).mul(255).add(0.5).clamp(0, 255).to(torch.uint8).numpy()
        image = arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"output arrays must be uint8, got {arr.dtype}")
    return Image.fromarray(np.ascontiguousarray(arr))


def encode_image(image: ImageLike, fmt: str = "png", quality: int = 95, png_compress_level: int = 6) -> bytes:
    """Encode an output image to bytes in ``fmt`` (png, jpg, webp); deterministic for a given PIL."""
    pil = to_pil(image)
    buf = io.BytesIO()
    pil_fmt = FORMATS[fmt]
    if pil_fmt == "PNG":
        pil.save(buf, format="PNG", compress_level=png_compress_level)
    elif pil_fmt == "JPEG":
        pil.save(buf, format="JPEG", quality=quality, subsampling=0 if quality >= 90 else 2)
    else:
        pil.save(buf, format=pil_fmt, quality=quality)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------------
# Journal (records written as the job goes) and the merged manifest.


def _journal_path(out_dir: Path, rank: int) -> Path:
    return out_dir / JOURNAL_DIR / f"rank{rank}.jsonl"


def _read_journal(path: Path) -> list[dict[str, Any]]:
    """Complete records of a journal; a half-written last line (kill -9) is ignored."""
    records = []
    data = path.read_bytes()
    for line in data.split(b"\n")[:-1] if not data.endswith(b"\n") else data.split(b"\n"):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _open_journal(path: Path) -> io.TextIOWrapper:
    """Open a journal for appending, first cutting a half-written last line left by a killed run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(path, "r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)
    return open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by the caller


def _manifest_records(out_dir: Path) -> list[dict[str, Any]]:
    """Records of earlier finished runs, read back from manifest.csv/failed.csv."""
    records: dict[str, dict[str, Any]] = {}
    manifest = out_dir / MANIFEST_NAME
    if manifest.exists():
        with open(manifest, encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                rec = records.setdefault(row["input"], {"input": row["input"], "status": "done", "rows": []})
                if row.get("status") != "done":
                    rec["status"] = row.get("status", "failed")
                rec["rows"].append(row)
    failed = out_dir / FAILED_NAME
    if failed.exists():
        with open(failed, encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                records[row["input"]] = {"input": row["input"], "status": "failed", "reason": row["reason"]}
    return list(records.values())


def _all_records(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Latest record per input: manifest of finished runs, then journals of interrupted ones."""
    merged = {r["input"]: r for r in _manifest_records(out_dir)}
    jdir = out_dir / JOURNAL_DIR
    if jdir.is_dir():
        for path in sorted(jdir.glob("rank*.jsonl")):
            for rec in _read_journal(path):
                merged[rec["input"]] = rec
    return merged


def _is_done(rec: dict[str, Any] | None, out_dir: Path, expected: Collection[str] | None = None) -> bool:
    if rec is None or rec.get("status") != "done":
        return False
    if expected is not None and not set(expected) <= {row["output_name"] for row in rec["rows"]}:
        return False  # asked for outputs this record does not have (e.g. new --levels)
    return all((out_dir / row["output"]).is_file() for row in rec["rows"])


def check_job_settings(
    out_dir: Path, settings: Mapping[str, Any], *, what: str = "job", filename: str = SETTINGS_NAME, write: bool = True
) -> None:
    """Refuse to resume or extend ``out_dir`` when it was written with other settings; record them otherwise.

    ``out_dir/job.json`` holds the settings of the run that wrote the folder (flags and the identity of every
    input file that determines the pixels). A rerun with equal settings resumes; with other settings it is
    refused, naming the settings that differ. A folder with records but no ``job.json`` (an older texturebias)
    is refused too: what made its outputs is unknown.

    Raises:
        TextureBiasError: settings differ, or the folder's records cannot be attributed to any settings.
    """
    path = out_dir / filename
    current = json.loads(json.dumps(settings, default=str))
    if path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = None
        require_same_settings(saved, current, what=what, state_file=path)
        return
    if not write:
        return  # another rank records them; this one only compares when they are there
    if (out_dir / MANIFEST_NAME).exists():
        raise DataError(
            f"{out_dir} holds outputs without recorded settings ({filename} missing); "
            "choose another output folder or delete it"
        )
    write_json(path, current)


def finalize_records(
    out_dir: Path, inputs: Sequence[str], manifest_fields: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """Merge journals and earlier records into sorted ``manifest.csv``/``failed.csv``, then drop the journals.

    Args:
        out_dir: The job's output folder.
        inputs: All input relative paths in job order (records are written in this order).
        manifest_fields: The extra manifest columns.

    Returns:
        ``(input, reason)`` of every failed input.
    """
    records = _all_records(out_dir)
    order = {rel: i for i, rel in enumerate(inputs)}
    rows: list[dict[str, Any]] = []
    failed: list[tuple[str, str]] = []
    for rel in sorted(records, key=lambda r: (order.get(r, len(order)), r)):
        rec = records[rel]
        if rec.get("status") == "done":
            rows.extend(rec["rows"])
        elif rel in order:  # a failed input that has since been removed is no longer this job's failure
            failed.append((rel, str(rec.get("reason", "unknown"))))
            rows.append({"input": rel, "output_name": "", "output": "", "status": "failed"})
    fields = list(BASE_FIELDS) + [f for f in manifest_fields if f not in BASE_FIELDS]
    write_csv(out_dir / MANIFEST_NAME, ({k: r.get(k, "") for k in fields} for r in rows), fields)
    write_csv(out_dir / FAILED_NAME, ({"input": i, "reason": r} for i, r in failed), ["input", "reason"])
    # Temporary files of killed runs (hidden, never under a final name; see utils.io.atomic_path). Safe to
    # remove now: every rank has finished writing.
    for dirpath, _, filenames in os.walk(out_dir):
        for name in filenames:
            if name.startswith(".") and ".tmp" in name:
                Path(dirpath, name).unlink(missing_ok=True)
    jdir = out_dir / JOURNAL_DIR
    if jdir.is_dir():
        for path in jdir.glob("rank*.jsonl"):
            path.unlink(missing_ok=True)
        try:
            jdir.rmdir()
        except OSError:
            pass
    return failed


# --------------------------------------------------------------------------------------------------------
# Loading in DataLoader workers.


class _LoadDataset(torch.utils.data.Dataset):
    def __init__(
        self,
        items: Sequence[JobItem],
        load: Callable[[Path], Any],
        preset_errors: dict[int, str],
        load_item: Callable[[JobItem], Any] | None = None,
    ) -> None:
        self.items = list(items)
        self.load = load
        self.load_item = load_item
        self.preset_errors = preset_errors

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, Any, str | None]:
        item = self.items[i]
        if item.index in self.preset_errors:
            return i, None, self.preset_errors[item.index]
        try:
            return i, (self.load_item(item) if self.load_item is not None else self.load(item.path)), None
        except TextureBiasError as exc:
            # The input column already names the file: keep only the reason.
            return i, None, str(exc).removeprefix(f"{item.path}: ")
        except Exception as exc:  # a transform that cannot handle this image: record it, keep going
            return i, None, f"{type(exc).__name__}: {exc}"


def _collate(batch: list[tuple[int, Any, str | None]]) -> list[tuple[int, Any, str | None]]:
    return batch


def _loader(
    items: Sequence[JobItem],
    load: Callable[[Path], Any],
    batch_size: int,
    workers: int,
    preset_errors: dict[int, str],
    load_item: Callable[[JobItem], Any] | None = None,
) -> Iterator[Any]:
    dataset = _LoadDataset(items, load, preset_errors, load_item)
    return iter(
        torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            num_workers=workers,
            collate_fn=_collate,
            prefetch_factor=4 if workers > 0 else None,
            persistent_workers=False,
        )
    )


# --------------------------------------------------------------------------------------------------------
# Writers: a file tree, or WebDataset-style tar shards.


def _write_file(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _wds_key(stem: str) -> str:
    # WebDataset splits a member name at the first dot of its basename: keep dots out of the key.
    return stem.replace(".", "_")


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # fixed metadata: shards are byte-identical across runs
    info.mode = 0o644
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _write_shard(path: Path, members: list[tuple[str, bytes]]) -> None:
    with atomic_path(path) as tmp, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            _tar_member(tar, name, data)


def _normalise_result(result: ItemResult | Mapping[str, ImageLike]) -> ItemResult:
    if isinstance(result, ItemResult):
        return result
    return ItemResult(outputs=dict(result))


def _info_for(info: Mapping[str, Any], name: str) -> dict[str, Any]:
    out = {}
    for key, value in info.items():
        out[key] = value.get(name, "") if isinstance(value, Mapping) else value
    return out


def run_folder_job(
    input_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    process_batch: Callable[[list[JobItem], list[Any]], Sequence[ItemResult | Mapping[str, ImageLike]]],
    *,
    load: Callable[[Path], Any] = load_rgb,
    load_item: Callable[[JobItem], Any] | None = None,
    seed: int = 0,
    batch_size: int = 16,
    workers: int = 0,
    image_format: str = "png",
    quality: int = 95,
    png_compress_level: int = 6,
    layout: Callable[[str, str, str], str] = default_layout,
    manifest_fields: Sequence[str] = (),
    shard_size: int | None = None,
    write_threads: int | None = None,
    dist: DistInfo | None = None,
    desc: str = "images",
    limit: int | None = None,
    settings: Mapping[str, Any] | None = None,
    expected_outputs: Callable[[JobItem], Collection[str]] | None = None,
    check_collisions: bool = True,
) -> FolderJobSummary:
    """Run ``process_batch`` over every image of ``input_dir`` and write its outputs under ``output_dir``.

    Args:
        input_dir: Folder of input images (searched recursively, sorted, case-insensitive extensions).
        output_dir: Where outputs, ``manifest.csv`` and ``failed.csv`` go (created).
        process_batch: ``f(items, loaded) -> results``, one result per item (an :class:`ItemResult` or a
            mapping output name → image). Called on batches of successfully loaded items in input order.
        load: ``load(path)`` run in DataLoader workers (decode + cheap transforms); must be picklable.
        load_item: Instead of ``load``: ``load_item(item)``, when loading needs the item (its seed, its
            relative path), e.g. to read the style image chosen for this input.
        seed: Job seed; items expose ``item.seed(*parts)`` derived from it and their relative path.
        batch_size: Items per callback call.
        workers: DataLoader worker processes for loading (0: load in the main process).
        image_format: "png" (default, lossless), "jpg" or "webp".
        quality: JPEG/WebP quality.
        png_compress_level: zlib level for PNG (0–9; 6 is PIL's default, 1 is much faster and ~10% larger).
        layout: ``layout(output_name, stem, ext) -> relative output path`` (see :func:`default_layout`).
        manifest_fields: Extra manifest columns reported in ``ItemResult.info``.
        shard_size: If set, write WebDataset-style tar shards of this many inputs instead of a file tree.
        write_threads: Threads that encode and write outputs (default: ``max(2, workers)``).
        dist: Rank/world size (default: from the ``torchrun`` environment).
        desc: Progress-bar label.
        limit: Only consider the first ``limit`` inputs (quick trials).
        settings: Everything besides the inputs that determines the outputs (flags, identities of model files,
            see :func:`~texturebias.utils.io.file_identity`). Recorded in ``job.json``; a rerun with other
            settings is refused (:func:`check_job_settings`). Settings whose outputs live under their own names
            (distortion levels) belong in ``expected_outputs`` instead.
        expected_outputs: ``f(item) -> output names`` this run must produce; a recorded item that lacks one of
            them is processed again (so a rerun with new levels adds them instead of reporting "done").
        check_collisions: Record ``x.jpg`` after ``x.png`` as failed because both would write ``x.png``; off for
            layouts whose names never collide (``distort`` numbers every output).

    Returns:
        A :class:`FolderJobSummary`; call ``.describe()`` for the printed summary.

    Raises:
        DataError: ``input_dir`` missing or without images, or ``output_dir`` inside ``input_dir`` is the same.
    """
    in_dir, out_dir = Path(input_dir), Path(output_dir)
    if image_format not in FORMATS:
        raise DataError(f"unsupported output format {image_format!r} (choose from {', '.join(FORMATS)})")
    paths = _select_inputs(in_dir, out_dir, limit)
    info = dist or dist_info()
    items = [JobItem(i, p, p.relative_to(in_dir).as_posix(), seed) for i, p in enumerate(paths)]
    preset_errors = _collision_errors(items) if check_collisions else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    if settings is not None:
        check_job_settings(out_dir, settings, what=desc.split(" ")[0], write=info.rank == 0)
    summary = FolderJobSummary(in_dir, out_dir, total_inputs=len(items))
    units = (
        [items[i : i + shard_size] for i in range(0, len(items), shard_size)] if shard_size else [[it] for it in items]
    )
    todo, unit_of = _plan_work(
        units, shard(list(range(len(units))), info), out_dir, summary, shard_size, expected_outputs
    )

    end_group = _long_barrier_group()
    encoder = _Encoder(image_format, quality, png_compress_level, layout)
    journal = _Journal(_journal_path(out_dir, info.rank))
    threads = write_threads or max(2, workers)
    bar = progress(total=len(todo), desc=desc, unit="img")
    writer: _TreeWriter | _ShardWriter = (
        _ShardWriter(out_dir, encoder, journal, bar, units, unit_of)
        if shard_size
        else _TreeWriter(out_dir, encoder, journal, bar, threads, max_pending=4 * threads * batch_size)
    )
    start = time.perf_counter()
    completed = False
    try:
        for batch in _loader(todo, load, batch_size, workers, preset_errors, load_item):
            batch_items = [todo[i] for i, _, _ in batch]
            ok_items, ok_data = [], []
            for (_, data, err), item in zip(batch, batch_items, strict=True):
                if err is not None:
                    writer.fail(item, err)
                else:
                    ok_items.append(item)
                    ok_data.append(data)
            for item, result in zip(ok_items, _process_safely(process_batch, ok_items, ok_data), strict=True):
                if result.error is not None:
                    writer.fail(item, result.error)
                else:
                    writer.add(item, result)
                    summary.processed += 1
            writer.after_batch(batch_items[-1])
            bar.set_postfix_str(
                f"{summary.processed / max(time.perf_counter() - start, 1e-9):.1f} img/s", refresh=False
            )
        writer.finish()
        completed = True
    finally:
        writer.close()
        journal.close()
        bar.close()
        summary.seconds = time.perf_counter() - start
        if completed:
            _final_barrier(end_group)  # every rank's journal is complete before rank 0 merges them
        if info.is_main and (completed or not info.distributed):
            summary.failed = finalize_records(out_dir, [it.relpath for it in items], manifest_fields)
            summary.done_total = sum(1 for r in _manifest_records(out_dir) if r.get("status") == "done")
    if info.is_main:
        get_logger("folder_job").debug(summary.describe())
    return summary


def _select_inputs(in_dir: Path, out_dir: Path, limit: int | None) -> list[Path]:
    """The input images, minus anything under ``out_dir`` when it lies inside ``in_dir``."""
    paths = find_images(in_dir)
    if out_dir.resolve() == in_dir.resolve():
        raise DataError("the output folder must differ from the input folder")
    try:
        out_inside_in = out_dir.resolve().is_relative_to(in_dir.resolve())
    except ValueError:
        out_inside_in = False
    if out_inside_in:
        # Never feed our own outputs back in on a rerun.
        out_rel = out_dir.resolve().relative_to(in_dir.resolve()).as_posix() + "/"
        paths = [p for p in paths if not p.resolve().relative_to(in_dir.resolve()).as_posix().startswith(out_rel)]
    if limit is not None:
        paths = paths[:limit]
    if not paths:
        raise DataError(f"{in_dir}: no images found")
    return paths


def _collision_errors(items: Sequence[JobItem]) -> dict[int, str]:
    """x.jpg and x.png would both write x.png: the first in sorted order wins, the others are recorded as failed."""
    first_by_stem: dict[str, str] = {}
    errors: dict[int, str] = {}
    for it in items:
        other = first_by_stem.setdefault(it.stem.lower(), it.relpath)
        if other != it.relpath:
            errors[it.index] = f"output name collides with {other} (same path without extension)"
    return errors


def _plan_work(
    units: list[list[JobItem]],
    unit_ids: Sequence[int],
    out_dir: Path,
    summary: FolderJobSummary,
    shard_size: int | None,
    expected_outputs: Callable[[JobItem], Collection[str]] | None,
) -> tuple[list[JobItem], dict[int, int]]:
    """This rank's items still to do (in input order) and the unit (shard) of each; counts what is done."""
    records = _all_records(out_dir)
    todo: list[JobItem] = []
    unit_of: dict[int, int] = {}
    for uid in unit_ids:
        unit = units[uid]
        if shard_size:
            # A shard is renamed into place before its records are journaled: skip it only when both exist.
            if _shard_path(out_dir, uid).is_file() and all(it.relpath in records for it in unit):
                summary.skipped_done += len(unit)
                continue
        elif _is_done(records.get(unit[0].relpath), out_dir, expected_outputs(unit[0]) if expected_outputs else None):
            summary.skipped_done += 1
            continue
        for it in unit:
            unit_of[it.index] = uid
        todo.extend(unit)
    return todo, unit_of


def _shard_path(out_dir: Path, uid: int) -> Path:
    return out_dir / f"shard-{uid:06d}.tar"


class _Journal:
    """This rank's record of finished items, one JSON line each, flushed as it goes (what resume reads)."""

    def __init__(self, path: Path) -> None:
        self._fh = _open_journal(path)

    def record(self, rec: dict[str, Any]) -> None:
        self._fh.write(json.dumps(rec, sort_keys=True) + "\n")

    def fail(self, item: JobItem, reason: str) -> None:
        self.record({"input": item.relpath, "status": "failed", "reason": reason})

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


@dataclass
class _Encoder:
    """Outputs of one item → encoded files and the item's record rows."""

    image_format: str
    quality: int
    png_compress_level: int
    layout: Callable[[str, str, str], str]

    @property
    def ext(self) -> str:
        return "jpg" if self.image_format == "jpeg" else self.image_format

    def encode(self, item: JobItem, result: ItemResult) -> tuple[list[tuple[str, str, bytes]], dict[str, Any]]:
        files, rows = [], []
        for name in sorted(result.outputs):
            data = encode_image(result.outputs[name], self.image_format, self.quality, self.png_compress_level)
            rel_out = self.layout(name, item.stem, self.ext)
            files.append((name, rel_out, data))
            rows.append({"input": item.relpath, "output_name": name, "output": rel_out, "status": "done",
                         **_info_for(result.info, name)})  # fmt: skip
        return files, {"input": item.relpath, "status": "done", "rows": rows}


class _TreeWriter:
    """Writes each item's files in a thread pool; journals an item only after all its files are renamed."""

    def __init__(
        self, out_dir: Path, encoder: _Encoder, journal: _Journal, bar: Any, threads: int, max_pending: int
    ) -> None:
        self.out_dir, self.encoder, self.journal, self.bar = out_dir, encoder, journal, bar
        self.pool = ThreadPoolExecutor(max_workers=threads)
        self.futures: list[tuple[JobItem, Future[dict[str, Any]]]] = []
        self.max_pending = max_pending

    def _write(self, item: JobItem, result: ItemResult) -> dict[str, Any]:
        files, rec = self.encoder.encode(item, result)
        for _, rel_out, data in files:
            _write_file(self.out_dir / rel_out, data)
        return rec

    def add(self, item: JobItem, result: ItemResult) -> None:
        self.futures.append((item, self.pool.submit(self._write, item, result)))

    def fail(self, item: JobItem, reason: str) -> None:
        self.journal.fail(item, reason)
        self.bar.update(1)

    def after_batch(self, last: JobItem) -> None:
        # Bound memory: do not let encoded-but-unwritten outputs pile up.
        self._drain(block=len(self.futures) > self.max_pending)

    def _drain(self, block: bool) -> None:
        """Journal finished writes in order."""
        while self.futures and (block or self.futures[0][1].done()):
            item, fut = self.futures.pop(0)
            try:
                self.journal.record(fut.result())
            except Exception as exc:  # disk full, encoder error: record, keep going
                self.journal.fail(item, f"write failed: {type(exc).__name__}: {exc}")
            self.bar.update(1)
        self.journal.flush()

    def finish(self) -> None:
        self._drain(block=True)

    def close(self) -> None:
        self._drain(block=True)
        self.pool.shutdown(wait=True)


class _ShardWriter:
    """Collects whole units of inputs and writes each as one tar shard once the loader has passed its end."""

    def __init__(
        self,
        out_dir: Path,
        encoder: _Encoder,
        journal: _Journal,
        bar: Any,
        units: list[list[JobItem]],
        unit_of: dict[int, int],
    ) -> None:
        self.out_dir, self.encoder, self.journal, self.bar = out_dir, encoder, journal, bar
        self.units, self.unit_of = units, unit_of
        self.pending: dict[int, list[tuple[JobItem, list[tuple[str, str, bytes]], dict[str, Any]]]] = {}

    def add(self, item: JobItem, result: ItemResult) -> None:
        files, rec = self.encoder.encode(item, result)
        self.pending.setdefault(self.unit_of[item.index], []).append((item, files, rec))
        self.bar.update(1)

    def fail(self, item: JobItem, reason: str) -> None:
        self.journal.fail(item, reason)
        self.pending.setdefault(self.unit_of[item.index], [])
        self.bar.update(1)

    def after_batch(self, last: JobItem) -> None:
        # A shard is complete once the loader has moved past its last item.
        last_uid = self.unit_of[last.index]
        last_in_unit = self.units[last_uid][-1].index == last.index
        for uid in sorted(self.pending):
            if uid < last_uid or (uid == last_uid and last_in_unit):
                self._flush(uid)
        self.journal.flush()

    def _flush(self, uid: int) -> None:
        members: list[tuple[str, bytes]] = []
        recs = []
        for item, files, rec in self.pending.pop(uid):
            key = _wds_key(item.stem)
            for name, _, data in files:
                members.append((f"{key}.{name + '.' if name else ''}{self.encoder.ext}", data))
            meta = {"input": item.relpath, "outputs": list(rec.get("rows", []))}
            members.append((f"{key}.json", json.dumps(meta, sort_keys=True).encode()))
            recs.append(rec)
        path = _shard_path(self.out_dir, uid)
        _write_shard(path, members)
        for rec in recs:
            for row in rec.get("rows", []):
                row["output"] = path.name
            self.journal.record(rec)

    def finish(self) -> None:
        for uid in sorted(self.pending):
            self._flush(uid)
        self.journal.flush()

    def close(self) -> None:
        self.journal.flush()


def _long_barrier_group() -> Any:
    """A gloo group for the end-of-job barrier, created by all ranks at the start (a collective call).

    The default process group (NCCL: 10 min timeout) would kill ranks that finish long before the
    slowest one, e.g. when a resumed job left most of the remaining work to one rank.
    """
    import torch.distributed as tdist

    if not (tdist.is_available() and tdist.is_initialized()):
        return None
    return tdist.new_group(backend="gloo", timeout=timedelta(days=7))


def _final_barrier(group: Any) -> None:
    if group is not None:
        import torch.distributed as tdist

        tdist.barrier(group=group)


def _process_safely(
    process_batch: Callable[[list[JobItem], list[Any]], Sequence[ItemResult | Mapping[str, ImageLike]]],
    items: list[JobItem],
    data: list[Any],
) -> list[ItemResult]:
    """Call the batch callback; if the batch raises, retry item by item and record per-item errors."""
    if not items:
        return []
    try:
        results = [_normalise_result(r) for r in process_batch(items, data)]
        if len(results) != len(items):
            raise RuntimeError(f"process_batch returned {len(results)} results for {len(items)} items")
        return results
    except Exception as exc:
        if len(items) == 1:
            return [ItemResult(error=f"processing failed: {type(exc).__name__}: {exc}")]
        return [r for i in range(len(items)) for r in _process_safely(process_batch, items[i : i + 1], data[i : i + 1])]
