"""A folder job's writers: encoding outputs, a file tree written by a thread pool, or WebDataset-style tar shards.

Both writers journal an item only once all of its files have their final names (atomic renames): that is what
makes `kill -9` followed by a rerun byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from texturebias.data.job_items import ImageLike, ItemResult, JobItem
from texturebias.data.job_records import Journal
from texturebias.utils.io import atomic_path

FORMATS: dict[str, str] = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}


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


def _info_for(info: Mapping[str, Any], name: str) -> dict[str, Any]:
    out = {}
    for key, value in info.items():
        out[key] = value.get(name, "") if isinstance(value, Mapping) else value
    return out


def shard_path(out_dir: Path, uid: int) -> Path:
    return out_dir / f"shard-{uid:06d}.tar"


@dataclass
class Encoder:
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


class TreeWriter:
    """Writes each item's files in a thread pool; journals an item only after all its files are renamed."""

    def __init__(
        self, out_dir: Path, encoder: Encoder, journal: Journal, bar: Any, threads: int, max_pending: int
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


class ShardWriter:
    """Collects whole units of inputs and writes each as one tar shard once the loader has passed its end."""

    def __init__(
        self,
        out_dir: Path,
        encoder: Encoder,
        journal: Journal,
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
        path = shard_path(self.out_dir, uid)
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
