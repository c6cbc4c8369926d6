"""BagNet architecture: official keys/shapes, parameter counts, and golden outputs of the original code."""

from __future__ import annotations

import json

import pytest
import torch

from detinit import detinit_state_dict
from texturebias.models import create_model, get_model_entry, load_into
from texturebias.models.bagnet import BagNet, is_bagnet
from texturebias.utils.io import save_torch

QS = (9, 17, 33)
PARAMS = {9: 15_688_744, 17: 16_213_032, 33: 18_310_184}  # REFERENCE §1


def _fixture_model(fixtures_dir, q: int) -> BagNet:
    model = create_model(f"bagnet{q}")
    load_into(model, detinit_state_dict(fixtures_dir / "bagnet" / f"keys_bagnet{q}.json", gain=1.0))
    return model.eval()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("q", QS)
def test_state_dict_keys_and_shapes_are_official(fixtures_dir, q):
    keys = json.loads((fixtures_dir / "bagnet" / f"keys_bagnet{q}.json").read_text())
    model = create_model(f"bagnet{q}")
    assert [(k, list(v.shape)) for k, v in model.state_dict().items()] == [(k, list(s)) for k, s in keys]
    assert sum(p.numel() for p in model.parameters()) == PARAMS[q]
    assert model.receptive_field == q and model.total_stride == 8
    assert model.bn1.momentum == 0.001 and model.layer1[0].bn1.momentum == 0.1


@pytest.mark.parametrize("q", QS)
def test_matches_original_code_outputs(fixtures_dir, q):
    model = _fixture_model(fixtures_dir, q)
    inputs = torch.load(fixtures_dir / "bagnet" / "inputs.pt", weights_only=True)
    expected = torch.load(fixtures_dir / "bagnet" / f"bagnet{q}_outputs.pt", weights_only=True)
    with torch.no_grad():
        logits = model(inputs["x_square"])
        patch = model.forward_patch_logits(inputs["x_rect"])
    assert logits.shape == (2, 1000)
    assert _rel(logits, expected["logits_square"]) <= 2e-4
    # Ours is N x C x H' x W'; the original's avg_pool=False output is channels-last.
    side = ((72 - q) // 8 + 1, (96 - q) // 8 + 1)
    assert patch.shape == (1, 1000, *side)
    assert _rel(patch.permute(0, 2, 3, 1), expected["patch_logits_rect"]) <= 2e-4
    # Image logits are the mean of the per-window logits (the bag-of-features property).
    with torch.no_grad():
        mean_of_windows = model.forward_patch_logits(inputs["x_square"]).mean(dim=(-2, -1))
    assert _rel(mean_of_windows, logits) <= 1e-5


def test_checkpoint_file_loads_strictly(fixtures_dir, tmp_path):
    """An official-layout plain state dict (what the released .pth.tar files are) loads via --checkpoint."""
    sd = detinit_state_dict(fixtures_dir / "bagnet" / "keys_bagnet9.json", gain=1.0)
    save_torch(tmp_path / "bagnet8.pth.tar", sd)
    model = create_model("bagnet9", checkpoint=tmp_path / "bagnet8.pth.tar")
    inputs = torch.load(fixtures_dir / "bagnet" / "inputs.pt", weights_only=True)
    expected = torch.load(fixtures_dir / "bagnet" / "bagnet9_outputs.pt", weights_only=True)
    with torch.no_grad():
        assert _rel(model(inputs["x_square"]), expected["logits_square"]) <= 2e-4


@pytest.mark.parametrize(
    ("q", "filename"), [(9, "bagnet8-34f4ccd2"), (17, "bagnet16-105524de"), (33, "bagnet32-2ddd53ed")]
)
def test_weight_records_are_the_official_files(q, filename):
    rec = get_model_entry(f"bagnet{q}").weights
    assert rec.filename == f"{filename}.pth.tar"
    assert rec.hash_prefix == filename.split("-")[1]
    assert rec.url.startswith("https://bitbucket.org/wielandbrendel/bag-of-feature-pretrained-models/raw/249e8fa")
    assert rec.url.endswith(rec.filename)


def test_generic_builder_receptive_field_and_grid():
    # stem 3x3 (rf 3); layer1 block 0 3x3 on the stride-1 grid (+2), then stride 2; layer2 block 0 3x3 on the
    # stride-2 grid (+4), then stride 4, so its block 1 3x3 adds 2 * 4: q = 3 + 2 + 4 + 8 = 17.
    model = BagNet(widths=(4, 8), blocks=(1, 3), kernel3=(1, 2), strides=(2, 2), num_classes=3, in_stem=4).eval()
    assert model.receptive_field == 17 and model.total_stride == 4
    x = torch.randn(2, 3, 29, 40)
    with torch.no_grad():
        patch = model.forward_patch_logits(x)
        assert patch.shape == (2, 3, (29 - 17) // 4 + 1, (40 - 17) // 4 + 1)
        # Cell (i, j) is exactly the logit of the window with top-left (4i, 4j).
        window = x[:, :, 8:25, 12:29]
        torch.testing.assert_close(model(window), patch[:, :, 2, 3], rtol=1e-5, atol=1e-5)
    assert is_bagnet(model) and not is_bagnet(torch.nn.Linear(2, 2))


def test_too_small_input_is_a_clear_error():
    model = BagNet(widths=(4,), blocks=(1,), kernel3=(1,), strides=(2,), num_classes=2, in_stem=4)
    with pytest.raises(ValueError, match="receptive field 5"):
        model(torch.zeros(1, 3, 4, 9))


def test_declared_weights_download_with_hash_check(fixtures_dir, tmp_path):
    """The record's download path (cache + sha256-prefix check), exercised with a file:// URL."""
    import dataclasses

    from texturebias.errors import DownloadError
    from texturebias.models.weights import fetch_weights, load_checkpoint
    from texturebias.utils.download import sha256_file

    src = tmp_path / "bagnet8-local.pth.tar"
    save_torch(src, detinit_state_dict(fixtures_dir / "bagnet" / "keys_bagnet9.json", gain=1.0))
    record = get_model_entry("bagnet9").weights
    good = dataclasses.replace(record, url=src.as_uri(), hash_prefix=sha256_file(src)[:8])
    path = fetch_weights(good, show_progress=False)
    assert path.is_file() and path.name == record.filename
    model = load_into(create_model("bagnet9"), load_checkpoint(path))
    assert model.receptive_field == 9
    bad = dataclasses.replace(record, url=src.as_uri(), filename="other.pth.tar", hash_prefix="00000000")
    with pytest.raises(DownloadError, match="refused"):
        fetch_weights(bad, show_progress=False)
    assert not (path.parent / "other.pth.tar").exists()
