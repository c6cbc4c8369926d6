"""A generated corpus of bad inputs run through every command that reads files (issue 14).

The rules asserted: one bad image never costs the good ones (``failed.csv`` + a count, exit 0), training refuses
up front with the list, a bad checkpoint or ``--out`` is one line on stderr with exit 1 and no traceback, and
nothing is ever written into the inputs.
"""

from __future__ import annotations

import csv
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from texturebias.cli import main
from texturebias.data.images import check_readable, find_images, load_image
from texturebias.errors import ImageReadError
from texturebias.models import create_model

GOOD = ("airplane/airplane1-bear2.png", "airplane/airplane2-bear1.png", "bear/bear1-airplane2.png",
        "bear/bear2-airplane1.png")  # fmt: skip
BAD = {
    "airplane/airplane3-bear3.png": "empty file",  # zero bytes
    "airplane/airplane4-bear4.png": "corrupt or truncated",  # a PNG cut in half
    "bear/bear3-airplane3.jpg": "not a readable image",  # text named .jpg
    "bear/bear4-airplane4.png": "file not found",  # a broken symlink (root reads chmod-000 files)
    "bear/bear5-airplane5.png": "not a regular file",  # a FIFO: must not block the reader
}


def _png(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Images (good and bad) in two category folders, and good and bad checkpoints."""
    root = tmp_path_factory.mktemp("corpus")
    stim = root / "stimuli"
    for cat in ("airplane", "bear"):
        (stim / cat).mkdir(parents=True)
    for i, rel in enumerate(GOOD):
        _png(stim / rel, i)
    (stim / "airplane/airplane3-bear3.png").write_bytes(b"")
    full = (stim / GOOD[0]).read_bytes()
    (stim / "airplane/airplane4-bear4.png").write_bytes(full[: len(full) // 2])
    (stim / "bear/bear3-airplane3.jpg").write_text("not an image\n")
    os.symlink(root / "nowhere.png", stim / "bear/bear4-airplane4.png")
    os.mkfifo(stim / "bear/bear5-airplane5.png")

    good_only = root / "good"
    for rel in GOOD:
        (good_only / rel).parent.mkdir(parents=True, exist_ok=True)
        (good_only / rel).write_bytes((stim / rel).read_bytes())

    torch.manual_seed(0)
    ck = root / "checkpoints"
    ck.mkdir()
    torch.save(create_model("demo_cnn", num_classes=16).state_dict(), ck / "cnn16.pt")
    torch.save(create_model("demo_cnn", num_classes=2).state_dict(), ck / "cnn2.pt")
    torch.save(create_model("demo_bagnet", num_classes=16).state_dict(), ck / "bagnet16.pt")
    (ck / "zero.pt").write_bytes(b"")
    (ck / "corrupt.pt").write_bytes(os.urandom(4096))
    (ck / "evil.pt").write_bytes(b"cos\nsystem\n(S'touch " + str(root / "pwned").encode() + b"'\ntR.")
    torch.save({"conv.weight": torch.zeros(3, 3)}, ck / "wrong_arch.pt")
    empty = root / "empty"
    empty.mkdir()
    a_file = root / "a_file"
    a_file.write_text("x")
    return {"root": root, "stimuli": stim, "good": good_only, "ck": ck, "empty": empty, "file": a_file}


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        out[p.relative_to(folder).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(err: str) -> None:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err


def _failed_csv(path: Path) -> dict[str, str]:
    with open(path, encoding="utf-8", newline="") as fh:
        return {Path(row["input"]).as_posix(): row["reason"] for row in csv.DictReader(fh)}


# ---------------------------------------------------------------------------------------------------------------
# The loader and the one mechanism


def test_each_bad_file_gives_its_own_reason(corpus: dict[str, Path]) -> None:
    for rel, reason in BAD.items():
        with pytest.raises(ImageReadError, match=reason):
            load_image(corpus["stimuli"] / rel)
    failed = check_readable(find_images(corpus["stimuli"]), threads=2)
    assert {f.path.relative_to(corpus["stimuli"]).as_posix(): f.reason for f in failed}.keys() == BAD.keys()
    assert all(reason in dict(failed)[corpus["stimuli"] / rel] for rel, reason in BAD.items())


def test_permission_denied_is_not_called_corrupt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.png"
    _png(path, 0)

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(ImageReadError, match="permission denied"):
        load_image(path)


# ---------------------------------------------------------------------------------------------------------------
# One bad file never costs the good ones


def _commands(c: dict[str, Path], out: Path) -> dict[str, list[object]]:
    stim, ck = c["stimuli"], c["ck"]
    return {
        "classify": ["classify", stim, "--model", "demo_cnn", "--checkpoint", ck / "cnn16.pt", "--device", "cpu"],
        "heatmap": ["heatmap", stim, "--model", "demo_bagnet", "--checkpoint", ck / "bagnet16.pt", "--target", "3",
                    "--device", "cpu", "--out", out],
        "evaluate": ["evaluate", "--model", "demo_cnn", "--checkpoint", ck / "cnn2.pt", "--data", stim,
                     "--workers", "2", "--device", "cpu", "--out", out],
        "robustness": ["robustness", "--model", "demo_cnn", "--checkpoint", ck / "cnn16.pt", "--data", stim,
                       "--distortion", "uniform-noise", "--levels", "0", "0.1", "--no-humans", "--device", "cpu",
                       "--out", out],
        "shape-bias": ["shape-bias", "--model", "demo_cnn", "--checkpoint", ck / "cnn16.pt", "--stimuli", stim,
                       "--sets", "cue-conflict", "--no-humans", "--no-download", "--bootstrap", "20",
                       "--device", "cpu", "--out", out],
    }  # fmt: skip


@pytest.mark.parametrize("command", ["classify", "heatmap", "evaluate", "robustness", "shape-bias"])
def test_unreadable_images_are_recorded_and_the_rest_go_on(
    command: str, corpus: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _snapshot(corpus["root"])
    out = tmp_path / "out"
    rc, stdout, err = _run(_commands(corpus, out)[command], capsys)
    assert rc == 0, err
    assert "Traceback" not in err and "error:" not in err
    assert f"{len(BAD)} input(s) could not be read" in stdout
    assert _snapshot(corpus["root"]) == before
    if command == "classify":
        assert sum(line.endswith(".png") for line in stdout.splitlines() if not line.startswith(" ")) == len(GOOD)
        return
    folder = out / "demo_cnn_cnn16" if command == "shape-bias" else out
    failed = _failed_csv(folder / "failed.csv")
    assert len(failed) == len(BAD)
    assert all(any(k.endswith(rel) for k in failed) for rel in BAD)
    if command == "heatmap":
        with open(out / "heatmaps.csv", encoding="utf-8") as fh:
            assert len(list(csv.DictReader(fh))) == len(GOOD)
    if command == "evaluate":
        import json

        summary = json.loads((out / "summary.json").read_text())
        assert summary["n"] == len(GOOD) and summary["n_failed"] == len(BAD)
    if command == "shape-bias":
        import json

        summary = json.loads((folder / "summary.json").read_text())
        assert summary["n_failed"] == len(BAD)
        # The rerun reuses the trials: the failures are re-checked, still failing, and reported again.
        rc, stdout, _ = _run(_commands(corpus, out)[command], capsys)
        assert rc == 0 and f"{len(BAD)} input(s) could not be read" in stdout


def test_training_refuses_up_front_with_the_list(
    corpus: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--model", "demo_cnn", "--data", corpus["stimuli"], "--scratch", "--epochs", "1",
            "--batch-size", "2", "--workers", "0", "--device", "cpu", "--out", out]  # fmt: skip
    rc, _, err = _run(argv, capsys)
    assert rc == 1
    _one_line_error(err)
    assert f"{len(BAD)} of {len(GOOD) + len(BAD)}" in err and "cannot be read" in err
    assert not (out / "checkpoint_last.pt").exists()


def test_a_dataloader_worker_reports_a_bad_image_as_data(corpus: dict[str, Path]) -> None:
    """With workers, the failure reaches the main process as a record, not as a worker traceback."""
    from texturebias.models.preprocessing import Preprocessing
    from texturebias.train.data import ImageDataset, LabeledBatches, collate_labeled, index_training_folders

    images = index_training_folders([corpus["stimuli"]])
    dataset = ImageDataset(images, Preprocessing(input_size=32, resize_size=32).eval_transform("always"))
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=collate_labeled)
    batches = LabeledBatches(loader)
    n = sum(len(labels) for _, labels in batches)
    assert n == len(GOOD) and len(batches.failed) == len(BAD)
    with pytest.raises(ImageReadError) as info:
        list(LabeledBatches(loader, on_unreadable="raise"))
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)


# ---------------------------------------------------------------------------------------------------------------
# Bad checkpoints, bad paths, bad --out: one line, exit 1


@pytest.mark.parametrize("checkpoint", ["zero.pt", "corrupt.pt", "evil.pt", "wrong_arch.pt", "missing.pt"])
@pytest.mark.parametrize("command", ["classify", "evaluate", "shape-bias", "heatmap"])
def test_bad_checkpoints_are_one_line(
    command: str, checkpoint: str, corpus: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _snapshot(corpus["root"])
    argv = _commands({**corpus, "stimuli": corpus["good"]}, tmp_path / "out")[command]
    argv[argv.index("--checkpoint") + 1] = corpus["ck"] / checkpoint
    rc, _, err = _run(argv, capsys)
    assert rc == 1
    _one_line_error(err)
    assert not (corpus["root"] / "pwned").exists()
    assert _snapshot(corpus["root"]) == before


@pytest.mark.parametrize("command", ["classify", "heatmap", "evaluate", "robustness", "shape-bias"])
@pytest.mark.parametrize("data", ["empty", "missing"])
def test_empty_or_missing_inputs_are_one_line(
    command: str, data: str, corpus: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = corpus["empty"] if data == "empty" else tmp_path / "nope"
    argv = _commands({**corpus, "stimuli": folder}, tmp_path / "out")[command]
    rc, _, err = _run(argv, capsys)
    assert rc == 1 if command != "classify" or data == "missing" else rc in (1, 2)
    _one_line_error(err)


@pytest.mark.parametrize("command", ["heatmap", "evaluate", "robustness", "shape-bias", "benchmark", "synthesize"])
@pytest.mark.parametrize("where", ["is_a_file", "under_a_file"])
def test_unusable_out_is_one_line_before_any_work(
    command: str, where: str, corpus: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = corpus["file"] if where == "is_a_file" else corpus["file"] / "sub"
    commands = _commands({**corpus, "stimuli": corpus["good"]}, out)
    commands["benchmark"] = ["benchmark", "--model", "demo_cnn", "--data", corpus["root"], "--datasets", "edge",
                             "--out", out]  # fmt: skip
    commands["synthesize"] = ["synthesize", corpus["good"] / GOOD[0], "--out", out]
    rc, _, err = _run(commands[command], capsys)
    assert rc == 1
    _one_line_error(err)
    assert "output folder" in err


def test_shape_bias_stimuli_without_cue_conflict_is_one_line(
    corpus: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edges = tmp_path / "edges" / "airplane"
    edges.mkdir(parents=True)
    _png(edges / "airplane1.png", 0)
    argv = _commands({**corpus, "stimuli": tmp_path / "edges"}, tmp_path / "out")["shape-bias"]
    argv[argv.index("--sets") + 1] = "cue-conflict,edge,silhouette"
    rc, _, err = _run(argv, capsys)
    assert rc == 1
    _one_line_error(err)
    assert "no cue-conflict stimuli" in err


def test_misleading_messages_are_fixed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(["data", "validate", "--dir", tmp_path / "nope"], capsys)
    assert rc == 1 and "folder not found" in err and err.count("\n") == 1
    header_only = tmp_path / "trials.csv"
    header_only.write_text("subj,session,trial,rt,object_response,category,condition,imagename\n")
    rc, _, err = _run(["analyze", header_only], capsys)
    assert rc == 1 and "no trials" in err
    _one_line_error(err)


def test_offline_hints_name_the_commands_own_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    from texturebias.errors import DownloadError
    from texturebias.utils.download import download_file, offline_hints

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    dest = Path(os.environ["TEXTUREBIAS_HOME"]) / "x.pth"
    with pytest.raises(DownloadError, match="--checkpoint PATH"):
        download_file("https://example.invalid/x.pth", dest)
    with offline_hints(weights="pass local copies with --vgg PATH and --decoder PATH"):
        with pytest.raises(DownloadError, match="--vgg PATH and --decoder PATH") as info:
            download_file("https://example.invalid/x.pth", dest)
    assert "--checkpoint" not in str(info.value)
    with pytest.raises(DownloadError, match="--init CHECKPOINT"):
        download_file("https://example.invalid/x.pth", dest, hint="pass it with --init CHECKPOINT")


def test_pickle_globals_never_run(corpus: dict[str, Path]) -> None:
    """The evil checkpoint really is one: a plain pickle.load would run its GLOBAL."""
    data = (corpus["ck"] / "evil.pt").read_bytes()
    assert b"system" in data and pickle.GLOBAL in data
