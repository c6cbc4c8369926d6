"""The Preprocessing record: timm's crop rule and the overrides the CLI passes."""

from __future__ import annotations

import argparse

import pytest
import torch

from texturebias.cli.common import add_preprocessing_arguments, preprocessing_overrides
from texturebias.errors import TextureBiasError
from texturebias.models import load_model, resolve_preprocessing
from texturebias.models.preprocessing import Preprocessing


def test_crop_pct_follows_timms_floor_rule() -> None:
    assert Preprocessing.from_crop_pct(input_size=224, crop_pct=0.9).resize_size == 248  # 248.9
    assert Preprocessing.from_crop_pct(input_size=224, crop_pct=0.875).resize_size == 256
    assert Preprocessing.from_crop_pct(input_size=384, crop_pct=1.0).resize_size == 384


def test_overrides() -> None:
    base = Preprocessing()
    assert base.with_overrides(None) is base and base.with_overrides({"mean": None}) is base
    assert base.with_overrides({"input_size": 112}).resize_size == 128  # keeps the 0.875 crop fraction
    assert base.with_overrides({"crop_pct": 0.95}).resize_size == 235
    assert base.with_overrides({"resize_size": 224}).crop_pct == 1.0
    p = base.with_overrides({"mean": [0.5, 0.5, 0.5], "interpolation": "bicubic"})
    assert p.mean == (0.5, 0.5, 0.5) and p.interpolation == "bicubic" and p.std == base.std
    for bad in ({"resize_size": 256, "crop_pct": 0.9}, {"crop_pct": 1.5}, {"resize_size": 100}, {"colour": 1}):
        with pytest.raises(ValueError):
            base.with_overrides(bad)


def test_to_dict_is_json_ready() -> None:
    assert Preprocessing().to_dict() == {
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "input_size": 224, "resize_size": 256,
        "interpolation": "bilinear",
    }  # fmt: skip


def test_cli_flags_become_overrides() -> None:
    parser = argparse.ArgumentParser()
    add_preprocessing_arguments(parser)
    assert preprocessing_overrides(parser.parse_args([])) is None
    args = parser.parse_args(["--mean", "0.5", "0.5", "0.5", "--input-size", "256", "--crop-pct", "0.9"])
    assert preprocessing_overrides(args) == {"mean": (0.5, 0.5, 0.5), "input_size": 256, "crop_pct": 0.9}
    with pytest.raises(SystemExit):
        parser.parse_args(["--crop-pct", "0.9", "--resize-size", "256"])


def test_load_model_applies_overrides() -> None:
    _, pre = load_model("demo_cnn", pretrained=False, preprocessing_overrides={"input_size": 32, "resize_size": 36})
    assert (pre.input_size, pre.resize_size) == (32, 36)
    with pytest.raises(TextureBiasError, match="invalid preprocessing override"):
        resolve_preprocessing("demo_cnn", overrides={"crop_pct": 2})


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_tensor_conversion_is_torchvisions_bit_for_bit(mode: str) -> None:
    import numpy as np
    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    from texturebias.models.preprocessing import to_float_tensor

    rng = np.random.default_rng(0)
    shape = (37, 53, 3) if mode == "RGB" else (37, 53)
    img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
    want = F.to_dtype(F.to_image(img), torch.float32, scale=True)
    got = to_float_tensor(img)
    assert got.shape == want.shape and torch.equal(got, want.as_subclass(torch.Tensor))


def test_eval_transform_matches_torchvisions_pipeline() -> None:
    import numpy as np
    from PIL import Image
    from torchvision.transforms import v2 as T

    pre = Preprocessing(interpolation="bicubic")
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 260, 3), dtype=np.uint8))
    reference = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224), T.ToImage(),
                           T.ToDtype(torch.float32, scale=True), T.Normalize(pre.mean, pre.std)])  # fmt: skip
    assert torch.equal(pre.eval_transform("always")(img), reference(img).as_subclass(torch.Tensor))
