"""Training recipes, loop, DDP equivalence, exact resume, and ImageFolder evaluation (tiny CPU runs)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from texturebias.cli import main
from texturebias.errors import DataError, TextureBiasError
from texturebias.models import create_model
from texturebias.models.preprocessing import Preprocessing
from texturebias.models.registry import ModelEntry, add_model, registered_entries
from texturebias.train import TrainConfig, index_training_folders, resolve_config, train
from texturebias.train.builders import build_model
from texturebias.train.loop import StepDecay
from texturebias.train.validate import evaluate_classifier, label_map_for

TESTS = Path(__file__).resolve().parent
TINY = "test_tiny_cnn"
CLASSES = ("blue", "green", "red", "yellow")
COLOURS = {"blue": (40, 60, 200), "green": (40, 180, 60), "red": (200, 40, 40), "yellow": (210, 200, 40)}


class TinyCNN(nn.Module):
    """~3k parameters, no BatchNorm: its step on a split batch equals the step on the whole batch."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU()
        )
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def register_tiny_model() -> None:
    if TINY not in registered_entries():
        add_model(ModelEntry(name=TINY, builder=TinyCNN, family="test", description="tiny test CNN",
                             preprocessing=Preprocessing(input_size=32, resize_size=32)))  # fmt: skip


def make_folder(root: Path, per_class: int, seed: int, classes: tuple[str, ...] = CLASSES, size: int = 32) -> Path:
    """ImageFolder of noisy flat-colour squares with a random bar: the colour names the class."""
    rng = np.random.default_rng(seed)
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = np.asarray(COLOURS.get(cls, (128, 128, 128)), dtype=np.float64)[None, None] + rng.normal(
                0, 40, (size, size, 3)
            )
            r = rng.integers(0, size - 8)
            img[r : r + 6] = rng.uniform(0, 255, 3)
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / cls / f"img{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("data")
    return {
        "train": make_folder(base / "train", 12, seed=1),
        "train2": make_folder(base / "train2", 4, seed=2),
        "val": make_folder(base / "val", 5, seed=3),
    }


@pytest.fixture(autouse=True)
def _tiny_model() -> None:
    register_tiny_model()


def tiny_config(folders: dict[str, Path], out: Path, **kw: object) -> TrainConfig:
    base = dict(model=TINY, data=[folders["train"]], val=folders["val"], out=out, epochs=3, batch_size=8, lr=0.1,
                lr_steps=(2,), workers=0, augment="flip", log_every=1, seed=7)  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def read_metrics(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# --- recipes -----------------------------------------------------------------------------------------------


def test_recipes_scale_lr_with_global_batch_and_flags_override(tmp_path: Path) -> None:
    c = resolve_config(TrainConfig(model="resnet50", data=[tmp_path], out=tmp_path, recipe="sin60", batch_size=512))
    assert (c.epochs, c.lr, c.lr_steps, c.pretrained, c.momentum, c.weight_decay) == (
        60,
        0.2,
        (20, 40),
        True,
        0.9,
        1e-4,
    )
    c = resolve_config(TrainConfig(model="resnet50", data=[tmp_path], out=tmp_path, recipe="sin-in45"))
    assert (c.epochs, c.lr, c.lr_steps, c.batch_size) == (45, 0.1, (15, 30), 256)
    c = resolve_config(TrainConfig(model="resnet50", data=[tmp_path], out=tmp_path, recipe="finetune60",
                                   batch_size=1024, init=tmp_path / "b.pt"))  # fmt: skip
    assert (c.epochs, c.lr, c.lr_steps, c.pretrained) == (60, 0.04, (30,), False)
    c = resolve_config(TrainConfig(model="resnet50", data=[tmp_path], out=tmp_path, lr=0.5, lr_steps=(60, 30)))
    assert (c.epochs, c.lr, c.lr_steps, c.pretrained) == (90, 0.5, (30, 60), False)  # in90 defaults, lr given
    schedule = StepDecay(0.1, (30, 60), 0.1)
    assert [round(schedule.lr(e), 6) for e in (0, 29, 30, 59, 60, 89)] == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    with pytest.raises(TextureBiasError, match="finetune60 fine-tunes model B"):
        resolve_config(TrainConfig(model="resnet50", data=[tmp_path], out=tmp_path, recipe="finetune60"))
    c = resolve_config(TrainConfig(model="resnet50_sin_in", data=[tmp_path], out=tmp_path, recipe="finetune60",
                                   pretrained=True))  # fmt: skip
    assert (c.pretrained, c.lr) == (True, 0.01)
    with pytest.raises(TextureBiasError, match="unknown recipe"):
        resolve_config(TrainConfig(model="resnet50", data=[tmp_path], out=tmp_path, recipe="in100"))
    with pytest.raises(TextureBiasError, match="augmentation"):
        resolve_config(TrainConfig(model="resnet50", data=[tmp_path], out=tmp_path, augment="mixup"))


# --- data --------------------------------------------------------------------------------------------------


def test_sin_plus_in_concatenation_shares_one_label_space(folders: dict[str, Path]) -> None:
    images = index_training_folders([folders["train"], folders["train2"]])
    assert images.classes == CLASSES
    assert images.counts == (48, 16) and len(images) == 64
    # Same class name → same label, whichever root the image came from.
    for path, label in images.samples:
        assert path.parent.name == CLASSES[label]
    assert images.samples[48][0].is_relative_to(folders["train2"])


def test_mismatched_classes_and_bad_folders_give_clear_errors(folders: dict[str, Path], tmp_path: Path) -> None:
    other = make_folder(tmp_path / "other", 1, seed=0, classes=("blue", "green", "red", "violet"))
    with pytest.raises(DataError, match=r"only in the first: yellow; only in the second: violet"):
        index_training_folders([folders["train"], other])
    with pytest.raises(DataError, match="do not match the training data"):
        index_training_folders([other], classes=CLASSES)
    with pytest.raises(DataError, match="not found"):
        index_training_folders([tmp_path / "missing"])
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "a.png")
    with pytest.raises(DataError, match="no class sub-folders"):
        index_training_folders([flat])
    # CLI: one line, exit 1, nothing written.
    out = tmp_path / "run"
    assert main(["train", "--model", TINY, "--data", str(folders["train"]), "--data", str(other), "--out", str(out),
                 "--workers", "0"]) == 1  # fmt: skip
    assert not out.exists() or not any(out.iterdir())


# --- training ----------------------------------------------------------------------------------------------


def test_training_learns_writes_outputs_and_checkpoint_loads(folders: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = train(tiny_config(folders, out))
    rows = read_metrics(out / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.1, 0.1, 0.01])  # divided after epoch 2
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < 0.7 * losses[0]
    assert max(float(r["val_top1"]) for r in rows) >= 0.75  # chance is 0.25
    assert float(rows[-1]["val_top5"]) == 1.0  # top-k with k = min(5, 4 classes)
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == TINY and config["run"]["classes"] == list(CLASSES)
    assert config["run"]["preprocessing"]["input_size"] == 32
    assert result.best_top1 == max(float(r["val_top1"]) for r in rows)

    # The checkpoints load straight into create_model, with the 4-way head inferred from the weights.
    model = create_model(TINY, checkpoint=out / "checkpoint_last.pt")
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), result.model(x))
    best = create_model(TINY, checkpoint=out / "checkpoint_best.pt")
    assert best.fc.out_features == 4

    # evaluate (library and CLI) reproduces the validation accuracy of the best epoch.
    ev = evaluate_classifier(
        TINY, folders["val"], checkpoint=out / "checkpoint_best.pt", workers=0, out=tmp_path / "ev"
    )
    assert ev.metrics.n == 20
    assert ev.metrics.top1 == pytest.approx(result.best_top1)
    per_class = read_metrics(tmp_path / "ev" / "per_class.csv")
    assert [r["class"] for r in per_class] == list(CLASSES)
    assert sum(float(r["top1"]) * int(r["n"]) for r in per_class) == pytest.approx(ev.metrics.top1 * 20)
    assert main(["evaluate", "--model", TINY, "--checkpoint", str(out / "checkpoint_best.pt"),
                 "--data", str(folders["val"]), "--workers", "0", "--device", "cpu"]) == 0  # fmt: skip

    # A file that is not a checkpoint: one clear error, exit 1.
    assert main(["evaluate", "--model", TINY, "--checkpoint", str(out / "metrics.csv"), "--data", str(folders["val"]),
                 "--workers", "0"]) == 1  # fmt: skip

    # An existing run is never overwritten without --resume.
    with pytest.raises(TextureBiasError, match="already holds a training run"):
        train(tiny_config(folders, out))


def test_resume_equals_uninterrupted_run_bitwise(folders: dict[str, Path], tmp_path: Path) -> None:
    full = train(tiny_config(folders, tmp_path / "full", epochs=3))
    part = tiny_config(folders, tmp_path / "part", epochs=2)
    train(part)
    # Resume through the CLI with only --out (config.json supplies the rest) and with a data worker process:
    # the per-sample seeded augmentation does not depend on the number of workers.
    assert main(["train", "--resume", "--out", str(tmp_path / "part"), "--epochs", "3", "--workers", "1"]) == 0
    resumed = create_model(TINY, checkpoint=tmp_path / "part" / "checkpoint_last.pt")
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    a, b = read_metrics(tmp_path / "full" / "metrics.csv"), read_metrics(tmp_path / "part" / "metrics.csv")
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    assert [r["val_top1"] for r in a] == [r["val_top1"] for r in b]


@pytest.mark.parametrize("augment", ["flip", "standard"])
def test_cached_images_train_exactly_like_files(folders: dict[str, Path], tmp_path: Path, augment: str) -> None:
    from texturebias.models import resolve_preprocessing
    from texturebias.train.data import ImageDataset, train_transform_parts

    images = index_training_folders([folders["train"]])
    pre = resolve_preprocessing(TINY)
    prepare, random = train_transform_parts(pre, augment)
    plain = ImageDataset(images, random, prepare=prepare, seed=3)
    cached = ImageDataset(images, random, prepare=prepare, seed=3, cache=True)
    cached.preload()
    assert cached.cache is not None and len(cached.cache) == len(images)
    for epoch in (0, 1):
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(len(images)):
            assert torch.equal(plain[i][0], cached[i][0]), (epoch, i)

    # The whole run, through the CLI flag, with a forked data worker that inherits the cache.
    a = train(tiny_config(folders, tmp_path / "files", augment=augment))
    assert main(["train", "--model", TINY, "--data", str(folders["train"]), "--val", str(folders["val"]),
                 "--out", str(tmp_path / "cached"), "--epochs", "3", "--batch-size", "8", "--lr", "0.1",
                 "--lr-steps", "2", "--workers", "1", "--augment", augment, "--seed", "7",
                 "--cache-images"]) == 0  # fmt: skip
    b = create_model(TINY, checkpoint=tmp_path / "cached" / "checkpoint_last.pt")
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert json.loads((tmp_path / "cached" / "config.json").read_text())["cache_images"] is True


def test_any_registered_model_trains_with_bf16_channels_last_and_new_head(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    # torchvision resnet18 (BatchNorm) on 32-px inputs, channels-last.
    result = train(tiny_config(folders, tmp_path / "r18", model="resnet18", input_size=32, epochs=1, lr=0.05,
                               channels_last=True, data=[folders["train2"]], val=folders["train2"]))  # fmt: skip
    assert result.model.fc.out_features == 4
    assert np.isfinite(result.metrics[0]["train_loss"])
    # CPU bf16 autocast (the tiny model: bf16 convolutions are slow on CPUs without AMX).
    bf16 = train(tiny_config(folders, tmp_path / "bf16", epochs=1, precision="bf16", data=[folders["train2"]]))
    assert np.isfinite(bf16.metrics[0]["train_loss"])
    assert next(bf16.model.parameters()).dtype == torch.float32  # autocast keeps fp32 master weights
    # --init from a 4-class checkpoint onto 2-class data: the classifier is replaced, the rest kept.
    two = make_folder(tmp_path / "two", 2, seed=5, classes=("blue", "red"))
    cfg = resolve_config(tiny_config(folders, tmp_path / "x", data=[two], init=result.checkpoint_last,
                                     model="resnet18"))  # fmt: skip
    model = build_model(cfg, 2)
    assert model.fc.out_features == 2
    assert torch.equal(model.conv1.weight, result.model.conv1.weight.float())


def test_on_the_fly_stylization_sees_unnormalised_images_and_trains(folders: dict[str, Path], tmp_path: Path) -> None:
    from texturebias.train.loop import Trainer

    pre = Preprocessing(input_size=32, resize_size=32)
    seen: list[torch.Tensor] = []

    def record(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        seen.append(x.clone())
        return torch.zeros_like(x) + torch.rand((), generator=gen)

    model = TinyCNN(4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = Trainer(model, opt, device=torch.device("cpu"), num_classes=4, batch_augment=record, preprocessing=pre)
    pixels = torch.rand(2, 3, 32, 32)
    trainer.step(pre.normalize(pixels), torch.tensor([0, 1]), epoch=1, index=3)
    torch.testing.assert_close(seen[0], pixels)  # the stylizer gets [0, 1] RGB, not normalised tensors

    # A tiny stylizer through the API (the official VGG/decoder weights are downloads).
    pytest.importorskip("texturebias.stylize.augment")
    from texturebias.stylize.adain import AdaIN
    from texturebias.stylize.augment import StyleAugment
    from texturebias.stylize.networks import mirrored_decoder, small_vgg_encoder

    encoder, layers = small_vgg_encoder((8, 16), seed=0)
    augment = StyleAugment(AdaIN(encoder, mirrored_decoder((8, 16)), style_layers=layers), None, p=1.0,
                           source="batch")  # fmt: skip
    result = train(tiny_config(folders, tmp_path / "sty", epochs=1), style_augment=augment)
    assert np.isfinite(result.metrics[0]["train_loss"])


def test_label_mapping_for_evaluation() -> None:
    assert label_map_for(["b", "c"], 3, ["a", "b", "c"]).tolist() == [1, 2]
    assert label_map_for(["n01440764", "n01443537"], 1000, None).tolist() == [0, 1]
    assert label_map_for(["x", "y"], 2, None).tolist() == [0, 1]
    with pytest.raises(DataError, match="not among the model's training classes"):
        label_map_for(["z"], 3, ["a", "b", "c"])
    with pytest.raises(DataError, match="cannot match 2 class folders"):
        label_map_for(["x", "y"], 1000, None)


# --- distributed -------------------------------------------------------------------------------------------

LAUNCHER = """
import sys, json
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from test_train import register_tiny_model
from texturebias.train import TrainConfig, train
register_tiny_model()
cfg = TrainConfig.from_json(json.loads({config!r}))
train(cfg)
"""


@pytest.mark.slow
def test_torchrun_two_processes_match_single_process(folders: dict[str, Path], tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not installed")
    single = train(tiny_config(folders, tmp_path / "single", epochs=2))
    cfg = tiny_config(folders, tmp_path / "ddp", epochs=2)
    script = tmp_path / "launch.py"
    script.write_text(LAUNCHER.format(tests=str(TESTS), config=json.dumps(cfg.to_json())))
    env = {**os.environ, "TEXTUREBIAS_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", str(script)], env=env, capture_output=True, text=True,
        timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = read_metrics(tmp_path / "single" / "metrics.csv"), read_metrics(tmp_path / "ddp" / "metrics.csv")
    for key in ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5"):
        assert [float(r[key]) for r in b] == pytest.approx([float(r[key]) for r in a], rel=1e-5, abs=1e-6), key
    assert json.loads((tmp_path / "ddp" / "config.json").read_text())["run"]["world_size"] == 2
    ddp_model = create_model(TINY, checkpoint=tmp_path / "ddp" / "checkpoint_last.pt")
    for key, value in single.model.state_dict().items():
        torch.testing.assert_close(ddp_model.state_dict()[key], value, rtol=1e-4, atol=1e-5)


def test_deterministic_flag_selects_deterministic_kernels_for_the_run_only(
    folders: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    from texturebias.cli import build_parser
    from texturebias.cli.train import config_from_args
    from texturebias.train import loop

    seen: dict[str, object] = {}

    def spy(*_: object) -> None:
        seen.update(algorithms=torch.are_deterministic_algorithms_enabled(),
                    warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
                    cudnn=torch.backends.cudnn.deterministic, benchmark=torch.backends.cudnn.benchmark,
                    cublas=os.environ.get("CUBLAS_WORKSPACE_CONFIG"))  # fmt: skip
        raise RuntimeError("stop after the settings were seen")

    monkeypatch.setattr(loop, "_train", spy)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark)  # fmt: skip
    args: argparse.Namespace = build_parser().parse_args(
        ["train", "--model", TINY, "--data", str(folders["train"]), "--out", str(tmp_path / "run"), "--deterministic"]
    )
    cfg = config_from_args(args)
    assert cfg.deterministic is True
    with pytest.raises(RuntimeError, match="stop after"):
        train(cfg)
    assert seen == {"algorithms": True, "warn_only": True, "cudnn": True, "benchmark": False, "cublas": ":4096:8"}
    after = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)  # fmt: skip
    assert after == before
    seen.clear()
    with pytest.raises(RuntimeError, match="stop after"):
        train(TrainConfig(model=TINY, data=[folders["train"]], out=tmp_path / "run2"))
    assert seen["algorithms"] is False and seen["cudnn"] is before[1]
