"""detect.train and the detection CLI: exact resume, refusals, torchrun = one process, eval/detect/export."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from texturebias.cli import main
from texturebias.detect.synthetic import write_synthetic_voc
from texturebias.detect.train import DetectTrainConfig, learning_rate, train_detector
from texturebias.errors import TextureBiasError


@pytest.fixture(scope="module")
def voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synvoc")
    write_synthetic_voc(root, splits={"trainval": 8, "test": 4}, size=(64, 64), object_size=(14, 30), seed=0)
    return root


def tiny(voc: Path, out: Path, **kw: object) -> DetectTrainConfig:
    base = dict(backbone="demo_cnn", voc_root=voc, out=out, train_sets=("2007-trainval",), epochs=2, batch_size=4,
                lr=0.02, warmup_iters=2, lr_steps=(1,), min_size=64, max_size=64, anchor_sizes=(16, 32, 64),
                box_batch_size_per_image=32, rpn_batch_size_per_image=64, workers=0, seed=3)  # fmt: skip
    base.update(kw)
    return DetectTrainConfig(**base)  # type: ignore[arg-type]


def test_recipe_schedule_warmup_and_step_decay() -> None:
    cfg = DetectTrainConfig(backbone="resnet50", voc_root=Path("."), out=Path("."), batch_size=32)
    assert cfg.resolved_lr() == pytest.approx(0.02)  # 0.01 at batch 16, linear scaling
    assert learning_rate(cfg, 0, 0) == pytest.approx(0.02 * 0.001)
    assert learning_rate(cfg, 0, 250) == pytest.approx(0.02 * (0.001 + 0.999 * 0.5))
    assert learning_rate(cfg, 8, 10_000) == pytest.approx(0.02)
    assert learning_rate(cfg, 9, 10_000) == pytest.approx(0.002)


def test_resume_is_bit_identical_and_other_settings_are_refused(voc: Path, tmp_path: Path) -> None:
    full = train_detector(tiny(voc, tmp_path / "full"))
    train_detector(tiny(voc, tmp_path / "part", epochs=1))
    resumed = train_detector(tiny(voc, tmp_path / "part", resume=True))
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = list(csv.DictReader(open(tmp_path / "part" / "metrics.csv")))
    ref = list(csv.DictReader(open(tmp_path / "full" / "metrics.csv")))
    assert [r["loss"] for r in rows] == [r["loss"] for r in ref] and len(rows) == 2
    config = json.loads((tmp_path / "full" / "config.json").read_text())
    assert config["run"]["input_weights"] == {"random": True} and config["run"]["detector"]["backbone"] == "demo_cnn"
    with pytest.raises(TextureBiasError, match=r"other settings \(lr"):
        train_detector(tiny(voc, tmp_path / "part", resume=True, epochs=3, lr=0.05))
    with pytest.raises(TextureBiasError, match="already holds a detection run"):
        train_detector(tiny(voc, tmp_path / "full"))
    with pytest.raises(TextureBiasError, match="needs a CUDA device"):
        train_detector(tiny(voc, tmp_path / "amp", amp=True, device="cpu"))


LAUNCHER = """
import json, sys, torch
torch.set_num_threads(1)
from texturebias.detect.train import DetectTrainConfig, train_detector
train_detector(DetectTrainConfig.from_json(json.loads(sys.argv[1])))
"""


def test_torchrun_two_processes_match_one_process(voc: Path, tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not installed")
    single = train_detector(tiny(voc, tmp_path / "single", epochs=1))
    cfg = tiny(voc, tmp_path / "ddp", epochs=1)
    script = tmp_path / "launch.py"
    script.write_text(LAUNCHER)
    env = {**os.environ, "TEXTUREBIAS_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", str(script), json.dumps(cfg.to_json())],
                          env=env, capture_output=True, text=True, timeout=240)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = list(csv.DictReader(open(tmp_path / "single" / "metrics.csv")))
    b = list(csv.DictReader(open(tmp_path / "ddp" / "metrics.csv")))
    for key in ("loss", "loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg", "images"):
        assert float(b[0][key]) == pytest.approx(float(a[0][key]), rel=1e-5), key
    ddp = torch.load(tmp_path / "ddp" / "detector.pt", weights_only=True)["model"]
    for key, value in single.model.state_dict().items():
        torch.testing.assert_close(ddp[key], value, rtol=1e-4, atol=1e-5)


def test_cli_train_eval_detect_and_export(voc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    flags = ["--backbone", "demo_cnn", "--voc-root", str(voc), "--train-sets", "2007-trainval", "--out", str(run),
             "--epochs", "1", "--batch-size", "4", "--warmup-iters", "1", "--min-size", "64", "--max-size", "64",
             "--anchor-sizes", "16,32,64", "--box-batch-size", "32", "--rpn-batch-size", "64", "--workers", "0",
             "--val-sets", "2007-test"]  # fmt: skip
    assert main(["detect-train", *flags]) == 0
    assert (run / "detector.pt").is_file() and (run / "eval" / "detect-eval.json").is_file()
    # --resume with nothing left to do keeps the run; with another setting it is refused in one line.
    assert main(["detect-train", "--out", str(run), "--resume"]) == 0
    assert main(["detect-train", "--out", str(run), "--resume", "--seed", "5"]) == 1
    assert "other settings (seed" in capsys.readouterr().err

    by_model, by_files = tmp_path / "ev1", tmp_path / "ev2"
    year = str(voc / "VOC2007")
    assert main(["detect-eval", "--voc-root", year, "--image-set", "test", "--checkpoint", str(run / "detector.pt"),
                 "--out", str(by_model), "--workers", "0"]) == 0  # fmt: skip
    assert main(["detect-eval", "--voc-root", year, "--image-set", "test", "--results", str(by_model / "results"),
                 "--out", str(by_files)]) == 0  # fmt: skip
    one, two = (json.loads((d / "detect-eval.json").read_text()) for d in (by_model, by_files))
    assert one == two and set(one) == {"classes", "map_voc07", "map_all"}
    assert set(one["classes"]) == {"square", "circle", "triangle"}
    assert set(one["classes"]["circle"]) == {"ap_voc07", "ap_all", "npos", "detections"}
    assert (by_model / "pr-curves.png").is_file() and (by_model / "detect-eval.csv").is_file()
    assert (by_model / "results" / "comp4_det_test_circle.txt").is_file()

    image = voc / "VOC2007" / "JPEGImages" / "000001.jpg"
    assert main(["detect", str(image), "--checkpoint", str(run / "detector.pt"), "--out", str(tmp_path / "det"),
                 "--threshold", "0.0"]) == 0  # fmt: skip
    out = json.loads((tmp_path / "det" / "000001.json").read_text())
    assert out["width"] == 64 and (tmp_path / "det" / "000001.png").is_file()
    assert all(d["box_voc"] == [v + 1 for v in d["box"]] for d in out["detections"])

    # export-backbone refuses a non-ResNet body; bad inputs are one-line errors (exit 1).
    assert main(["export-backbone", "--checkpoint", str(run / "detector.pt"), "--out", str(tmp_path / "b.pth")]) == 1
    assert "not a ResNet" in capsys.readouterr().err
    assert main(["detect-eval", "--voc-root", year, "--results", str(tmp_path / "nothing"), "--out",
                 str(tmp_path / "x")]) == 1  # fmt: skip
    assert main(["detect", str(tmp_path / "missing.jpg"), "--checkpoint", str(run / "detector.pt"), "--out",
                 str(tmp_path / "y")]) == 1  # fmt: skip


def test_resume_after_the_input_checkpoint_changed_is_refused(voc: Path, tmp_path: Path) -> None:
    from texturebias.models import create_model

    init = tmp_path / "init.pth"
    torch.save(create_model("demo_cnn").state_dict(), init)
    train_detector(tiny(voc, tmp_path / "run", epochs=1, checkpoint=init))
    torch.manual_seed(123)
    torch.save(create_model("demo_cnn").state_dict(), init)  # other weights under the same name
    with pytest.raises(TextureBiasError, match="input_weights"):
        train_detector(dataclasses.replace(tiny(voc, tmp_path / "run", checkpoint=init), resume=True))
