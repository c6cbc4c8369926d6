"""timm models: preprocessing from timm's pretrained_cfg, weights through timm's own loader, offline errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from texturebias.errors import DownloadError, UnknownModelError
from texturebias.models import create_model, get_model_entry, load_model, resolve_preprocessing
from texturebias.models.preprocessing import Preprocessing

timm = pytest.importorskip("timm")

# A ViT (mean/std 0.5, crop 0.9), a CLIP ViT (OpenAI mean/std), ConvNeXt, EfficientNet and ResNet (crop 0.95).
SAMPLE = [
    "vit_base_patch16_224",
    "vit_base_patch16_224.augreg_in1k",
    "vit_base_patch16_clip_224.openai",
    "convnext_tiny.fb_in1k",
    "efficientnet_b0",
    "resnet50.a1_in1k",
    "resnet50.tv_in1k",
]


@pytest.mark.parametrize("arch", SAMPLE)
def test_preprocessing_equals_timm_data_config(arch: str) -> None:
    from timm.data import resolve_data_config, resolve_model_data_config

    ours = resolve_preprocessing(f"timm/{arch}")
    model = timm.create_model(arch, pretrained=False)
    for cfg in (resolve_model_data_config(model), resolve_data_config({}, model=model)):
        assert ours.input_size == cfg["input_size"][1] == cfg["input_size"][2]
        assert ours.mean == pytest.approx(cfg["mean"]) and ours.std == pytest.approx(cfg["std"])
        assert ours.interpolation == cfg["interpolation"]
        # timm's eval transform: Resize(floor(img_size / crop_pct)) then CenterCrop(img_size).
        assert ours.resize_size == math.floor(cfg["input_size"][1] / cfg["crop_pct"])


def test_vit_is_not_measured_with_the_resnet_recipe() -> None:
    vit = resolve_preprocessing("timm/vit_base_patch16_224.augreg_in1k")
    assert vit.mean == (0.5, 0.5, 0.5) and vit.interpolation == "bicubic" and vit.resize_size == 248
    assert resolve_preprocessing("timm/resnet50.a1_in1k").resize_size == 235  # floor(224 / 0.95)


def test_unknown_tag_lists_the_tags() -> None:
    with pytest.raises(UnknownModelError, match="tags of resnet18: .*a1_in1k"):
        get_model_entry("timm/resnet18.no_such_tag")


def _save_random_weights(arch: str, path: Path) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    sd = timm.create_model(arch, pretrained=False).state_dict()
    torch.save(sd, path)
    return sd


def test_pretrained_goes_through_timms_loader_with_a_local_file(tmp_path: Path) -> None:
    sd = _save_random_weights("resnet18", tmp_path / "resnet18.pth")
    overlay = {"file": str(tmp_path / "resnet18.pth")}
    model = create_model("timm/resnet18.a1_in1k", pretrained=True, pretrained_cfg_overlay=overlay)
    assert torch.equal(model.state_dict()["fc.weight"], sd["fc.weight"])
    model, pre = load_model("timm/resnet18.a1_in1k", pretrained_cfg_overlay=overlay)
    assert pre.resize_size == 235 and not model.training


def test_pretrained_from_a_populated_hub_cache_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants
    from safetensors.torch import save_file

    commit = "0" * 40
    repo = tmp_path / "hub" / "models--timm--resnet18.a1_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    torch.manual_seed(1)
    sd = {k: v.contiguous() for k, v in timm.create_model("resnet18").state_dict().items()}
    save_file(sd, str(repo / "snapshots" / commit / "model.safetensors"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    model = create_model("timm/resnet18.a1_in1k", pretrained=True)
    assert torch.equal(model.state_dict()["conv1.weight"], sd["conv1.weight"])


def test_offline_without_cache_is_one_line_naming_the_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(DownloadError) as info:
        create_model("timm/resnet18.a1_in1k", pretrained=True)
    message = str(info.value)
    assert "\n" not in message and "timm/resnet18.a1_in1k" in message and "--checkpoint" in message


def test_local_checkpoint_for_a_timm_name_needs_no_network(tmp_path: Path) -> None:
    sd = _save_random_weights("resnet18", tmp_path / "w.pth")
    model, pre = load_model("timm/resnet18", tmp_path / "w.pth")
    assert torch.equal(model.state_dict()["fc.bias"], sd["fc.bias"])
    assert pre == resolve_preprocessing("timm/resnet18") != Preprocessing()
