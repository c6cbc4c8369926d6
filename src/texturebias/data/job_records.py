"""A folder job's records: the per-rank journals, ``manifest.csv``/``failed.csv``, and the settings guard.

What resume reads: an item counts as done when its record says so *and* its outputs exist; a rerun with other
settings is refused by :func:`check_job_settings` before any work.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from texturebias.data.job_items import JobItem
from texturebias.errors import DataError
from texturebias.utils.io import require_same_settings, write_csv, write_json

MANIFEST_NAME = "manifest.csv"


FAILED_NAME = "failed.csv"


JOURNAL_DIR = ".job"


SETTINGS_NAME = "job.json"


BASE_FIELDS: tuple[str, ...] = ("input", "output_name", "output", "status")


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


class Journal:
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
