"""The folder-job machinery: mirrored tree, records, odd files, determinism, resume after kill -9, sharding."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oddimages import CONVERTIBLE, UNREADABLE, make_odd_folder, make_photo, tree_bytes
from texturebias.data.folder_job import ItemResult, JobItem, run_folder_job
from texturebias.data.job_writers import to_pil
from texturebias.errors import DataError
from texturebias.utils.distributed import DistInfo
from texturebias.utils.seed import stable_hash


def noisy_process(items: list[JobItem], images: list[Image.Image]) -> list[ItemResult]:
    """Two outputs per input: the image flipped, and the image plus seeded noise (depends on item.seed only)."""
    results = []
    for item, img in zip(items, images, strict=True):
        arr = np.asarray(img)
        noise = item.rng("noise").integers(0, 64, size=arr.shape)
        results.append(
            ItemResult(
                outputs={"": arr[::-1], "noisy": (arr // 2 + noise).astype(np.uint8)},
                info={"seed": item.seed("noise")},
            )
        )
    return results


@pytest.fixture()
def odd_dir(tmp_path: Path) -> Path:
    return make_odd_folder(tmp_path / "in")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_tree_records_and_odd_files(odd_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = run_folder_job(odd_dir, out, noisy_process, batch_size=3, manifest_fields=["seed"])
    n_ok = 4 + len(CONVERTIBLE)
    assert summary.total_inputs == n_ok + len(UNREADABLE)  # .txt and hidden files are not inputs
    assert summary.processed == n_ok
    assert {rel for rel, _ in summary.failed} == set(UNREADABLE)
    failed = {r["input"]: r["reason"] for r in read_csv(out / "failed.csv")}
    for rel, word in UNREADABLE.items():
        assert word in failed[rel], (rel, failed[rel])
    # Output tree mirrors the input with the same stems; odd-but-readable inputs are converted to RGB.
    for rel in CONVERTIBLE:
        stem = rel.rsplit(".", 1)[0]
        for prefix in ("", "noisy/"):
            img = Image.open(out / f"{prefix}{stem}.png")
            assert img.mode == "RGB" and img.size == (48, 40)
    flipped = np.asarray(Image.open(out / "cls_a/img0.png"))
    np.testing.assert_array_equal(flipped, np.asarray(Image.open(odd_dir / "cls_a/img0.png"))[::-1])
    rows = read_csv(out / "manifest.csv")
    assert [r["input"] for r in rows] == sorted(r["input"] for r in rows)  # input order
    done = [r for r in rows if r["status"] == "done"]
    assert len(done) == 2 * n_ok
    row = next(r for r in done if r["input"] == "cls_b/upper.JPEG" and r["output_name"] == "noisy")
    assert row["output"] == "noisy/cls_b/upper.png"
    assert int(row["seed"]) == stable_hash(0, "cls_b/upper.JPEG", "noise") >> 1
    assert not (out / ".job").exists()
    assert not [p for p in out.rglob(".*")]  # no temporary files left behind
    assert "4 failed" in summary.describe() and "bad/empty.png" in summary.describe()


def test_rerun_skips_finished_and_retries_failed(odd_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_folder_job(odd_dir, out, noisy_process)
    before = tree_bytes(out)
    (out / "cls_a/img2.png").unlink()  # a lost output is redone
    Image.fromarray(make_photo(np.random.default_rng(5), 40, 48)).save(odd_dir / "bad/empty.png")  # fixed input
    calls: list[str] = []

    def counting(items: list[JobItem], images: list[Image.Image]) -> list[ItemResult]:
        calls.extend(it.relpath for it in items)
        return noisy_process(items, images)

    summary = run_folder_job(odd_dir, out, counting)
    assert sorted(calls) == ["bad/empty.png", "cls_a/img2.png"]
    assert summary.skipped_done == 4 + len(CONVERTIBLE) - 1
    after = tree_bytes(out)
    assert after["cls_a/img2.png"] == before["cls_a/img2.png"]
    assert "bad/empty.png" not in {r["input"] for r in read_csv(out / "failed.csv")}

    # An unreadable input that the user deletes stops being reported as failed; finished outputs stay recorded.
    gone = sorted(set(UNREADABLE) - {"bad/empty.png"})[0]
    (odd_dir / gone).unlink()
    summary = run_folder_job(odd_dir, out, noisy_process)
    assert gone not in {rel for rel, _ in summary.failed}
    assert gone not in {r["input"] for r in read_csv(out / "failed.csv")}
    assert gone not in {r["input"] for r in read_csv(out / "manifest.csv")}
    assert "cls_a/img2.png" in {r["input"] for r in read_csv(out / "manifest.csv")}


def test_independent_of_batch_size_and_workers(odd_dir: Path, tmp_path: Path) -> None:
    run_folder_job(odd_dir, tmp_path / "a", noisy_process, batch_size=1, workers=0, manifest_fields=["seed"])
    run_folder_job(odd_dir, tmp_path / "b", noisy_process, batch_size=4, workers=2, manifest_fields=["seed"])
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")


def test_two_rank_shards_union_equals_single_process(odd_dir: Path, tmp_path: Path) -> None:
    run_folder_job(odd_dir, tmp_path / "single", noisy_process, manifest_fields=["seed"])
    seen: dict[int, list[str]] = {0: [], 1: []}
    for rank in (1, 0):  # rank 0 last: it merges the records (the barrier is a no-op without a process group)

        def proc(items: list[JobItem], images: list[Image.Image], rank: int = rank) -> list[ItemResult]:
            seen[rank].extend(it.relpath for it in items)
            return noisy_process(items, images)

        run_folder_job(odd_dir, tmp_path / "multi", proc, manifest_fields=["seed"], dist=DistInfo(rank, 2, rank))
    assert seen[0] and seen[1] and not set(seen[0]) & set(seen[1])
    assert tree_bytes(tmp_path / "single") == tree_bytes(tmp_path / "multi")


def test_processing_errors_are_recorded_per_item(odd_dir: Path, tmp_path: Path) -> None:
    def flaky(items: list[JobItem], images: list[Image.Image]) -> list[ItemResult]:
        if any(it.relpath == "cls_a/grey.png" for it in items):
            raise RuntimeError("boom")
        return noisy_process(items, images)

    summary = run_folder_job(odd_dir, tmp_path / "out", flaky, batch_size=4)
    reasons = dict(summary.failed)
    assert reasons["cls_a/grey.png"] == "processing failed: RuntimeError: boom"
    assert summary.processed == 4 + len(CONVERTIBLE) - 1  # its batch-mates were retried one by one


def test_output_collision_and_errors(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    img = Image.fromarray(make_photo(np.random.default_rng(0), 16, 16))
    img.save(src / "x.png")
    img.save(src / "x.jpg")
    summary = run_folder_job(src, tmp_path / "out", lambda items, ims: [{"": im} for im in ims])
    assert summary.failed == [("x.png", "output name collides with x.jpg (same path without extension)")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        run_folder_job(tmp_path / "empty", tmp_path / "o2", noisy_process)
    with pytest.raises(DataError, match="not found"):
        run_folder_job(tmp_path / "missing", tmp_path / "o3", noisy_process)


def test_to_pil_rounds_like_save_image() -> None:
    import torch

    t = torch.tensor([[[-0.5, 0.0, 0.5 / 255, 0.499 / 255, 1.0, 2.0]]])
    assert np.asarray(to_pil(t)).tolist() == [[0, 0, 1, 0, 255, 255]]


def test_tar_shards(odd_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tar"
    run_folder_job(odd_dir, out, noisy_process, shard_size=5, manifest_fields=["seed"])
    shards = sorted(p.name for p in out.glob("*.tar"))
    assert shards == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]  # 14 inputs / 5
    names = tarfile.open(out / "shard-000001.tar").getnames()
    # inputs 5..9 in sorted order (4 bad/ files, then cls_a/cmyk.jpg at 4): grey, img0, img2, palette, rgba
    assert names[:3] == ["cls_a/grey.png", "cls_a/grey.noisy.png", "cls_a/grey.json"]
    assert len(names) == 15
    member = tarfile.open(out / "shard-000001.tar").extractfile("cls_a/img0.png")
    assert member is not None
    tree = tmp_path / "tree"
    run_folder_job(odd_dir, tree, noisy_process)
    assert member.read() == (tree / "cls_a/img0.png").read_bytes()
    first = tree_bytes(out)
    (out / "shard-000001.tar").unlink()
    run_folder_job(odd_dir, out, noisy_process, shard_size=5, manifest_fields=["seed"])
    assert tree_bytes(out) == first  # shards are byte-identical across runs (fixed tar metadata)


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from texturebias.data.folder_job import ItemResult, run_folder_job

    def slow(items, images):
        time.sleep(0.03 * len(items))
        return [ItemResult({"": (np.asarray(im) // 2 + it.rng("n").integers(0, 99, (24, 24, 3))).astype(np.uint8)},
                           info={"seed": it.seed("n")}) for it, im in zip(items, images)]

    def main(src, out, workers):
        run_folder_job(src, out, slow, batch_size=2, workers=workers, manifest_fields=["seed"])

    if __name__ == "__main__":
        main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    """
)


@pytest.mark.slow
def test_resume_after_kill_is_byte_identical(tmp_path: Path) -> None:
    src = tmp_path / "in"
    rng = np.random.default_rng(1)
    for i in range(40):
        p = src / f"c{i % 3}" / f"im{i:02d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(make_photo(rng, 24, 24)).save(p)
    script = tmp_path / "killjob.py"
    script.write_text(KILL_SCRIPT)
    namespace: dict = {}
    exec(compile(KILL_SCRIPT, str(script), "exec"), namespace)  # the same job, in this process
    namespace["main"](src, tmp_path / "ref", 0)
    out = tmp_path / "out"
    env = {**os.environ, "TEXTUREBIAS_NO_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(src), str(out), "1"], env=env)
    deadline = time.monotonic() + 120
    while len(list(out.rglob("im*.png"))) < 9 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    time.sleep(0.02)  # most likely inside a batch, with a write in flight
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = list(out.rglob("im*.png"))
    assert 0 < len(partial) < 40, "the kill should land mid-run"
    assert (out / ".job" / "rank0.jsonl").exists() and not (out / "manifest.csv").exists()
    namespace["main"](src, out, 2)  # the rerun completes the job
    assert tree_bytes(out) == tree_bytes(tmp_path / "ref")
