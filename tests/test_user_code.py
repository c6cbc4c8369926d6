"""Models from the user's own code: ``package.module:factory`` and ``path/file.py:factory``, from Python and CLI."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch

from texturebias.cli import main
from texturebias.errors import UnknownModelError
from texturebias.models import load_model, resolve_preprocessing

MODEL_FILE = """
import torch
from torch import nn

PREPROCESSING = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "input_size": 64, "crop_pct": 0.8}


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def tiny_net(num_classes: int = 1000) -> nn.Module:
    torch.manual_seed(0)
    return TinyNet(num_classes)


def not_a_model():
    return "hello"


SOMETHING = 3
"""


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_models" / "tiny.py"
    path.parent.mkdir()
    path.write_text(textwrap.dedent(MODEL_FILE))
    return path


def test_file_factory_with_module_preprocessing(model_file: Path) -> None:
    model, pre = load_model(f"{model_file}:tiny_net")
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 1000) and not model.training
    assert pre.mean == (0.5, 0.5, 0.5) and pre.input_size == 64 and pre.resize_size == 80  # floor(64 / 0.8)
    # CLI flags win over the module's declaration.
    assert resolve_preprocessing(f"{model_file}:tiny_net", overrides={"input_size": 32}).resize_size == 40


def test_module_factory_and_checkpoint(model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(model_file.parent.parent))
    (model_file.parent / "__init__.py").write_text("")
    monkeypatch.delitem(sys.modules, "my_models", raising=False)
    model, _ = load_model("my_models.tiny:tiny_net", num_classes=16)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 16)
    sd = {k: torch.full_like(v, 0.25) for k, v in model.state_dict().items()}
    torch.save(sd, tmp_path / "w.pth")
    loaded, _ = load_model("my_models.tiny:tiny_net", tmp_path / "w.pth")  # head size inferred from the file
    assert torch.equal(loaded.state_dict()["head.weight"], sd["head.weight"])


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        (":missing", "has no attribute 'missing'"),
        (":SOMETHING", "not a callable"),
        (":not_a_model", "not a torch.nn.Module"),
    ],
)
def test_bad_targets_are_clear_errors(model_file: Path, suffix: str, message: str) -> None:
    with pytest.raises(UnknownModelError, match=message):
        load_model(f"{model_file}{suffix}")


def test_missing_module_and_file(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError, match="cannot import module 'no_such_package_xyz.models'"):
        load_model("no_such_package_xyz.models:net")
    with pytest.raises(UnknownModelError, match="model file not found"):
        load_model(f"{tmp_path / 'absent.py'}:net")


def test_cli_classify_with_a_user_file(model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", "--samples", "--model", f"{model_file}:tiny_net", "--top-k", "2", "--device", "cpu"]) == 0
    assert "chelsea.png" in capsys.readouterr().out
    assert main(["classify", "--samples", "--model", f"{model_file}:not_a_model"]) == 1
    assert "not a torch.nn.Module" in capsys.readouterr().err


def test_models_verbose_prints_the_preprocessing(model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", f"{model_file}:tiny_net", "-v"]) == 0
    assert "preprocessing: 64 px (resize 80, crop_pct 0.8, bilinear), mean (0.5, 0.5, 0.5)" in capsys.readouterr().out
