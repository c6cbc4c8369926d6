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

import os
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from texturebias.data.images import find_images, load_image
from texturebias.data.job_items import ItemResult, JobItem
from texturebias.data.job_records import (
    FAILED_NAME,
    Journal,
    _all_records,
    _is_done,
    _journal_path,
    _manifest_records,
    check_job_settings,
    finalize_records,
)
from texturebias.data.job_writers import (
    FORMATS,
    Encoder,
    ImageLike,
    ShardWriter,
    TreeWriter,
    shard_path,
)
from texturebias.data.loader import worker_init
from texturebias.errors import DataError, TextureBiasError
from texturebias.utils.distributed import DistInfo, dist_info, shard
from texturebias.utils.progress import get_logger, progress


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


# --------------------------------------------------------------------------------------------------------
# Journal (records written as the job goes) and the merged manifest.


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
            worker_init_fn=worker_init,
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


def _normalise_result(result: ItemResult | Mapping[str, ImageLike]) -> ItemResult:
    if isinstance(result, ItemResult):
        return result
    return ItemResult(outputs=dict(result))


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
    encoder = Encoder(image_format, quality, png_compress_level, layout)
    journal = Journal(_journal_path(out_dir, info.rank))
    threads = write_threads or max(2, workers)
    bar = progress(total=len(todo), desc=desc, unit="img")
    writer: TreeWriter | ShardWriter = (
        ShardWriter(out_dir, encoder, journal, bar, units, unit_of)
        if shard_size
        else TreeWriter(out_dir, encoder, journal, bar, threads, max_pending=4 * threads * batch_size)
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
            if shard_path(out_dir, uid).is_file() and all(it.relpath in records for it in unit):
                summary.skipped_done += len(unit)
                continue
        elif _is_done(records.get(unit[0].relpath), out_dir, expected_outputs(unit[0]) if expected_outputs else None):
            summary.skipped_done += 1
            continue
        for it in unit:
            unit_of[it.index] = uid
        todo.extend(unit)
    return todo, unit_of


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
