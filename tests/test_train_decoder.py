"""Decoder training: the losses on a hand-checkable case, deterministic resume, checkpoints that load back."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detinit import detinit_state_dict
from oddimages import make_photo
from texturebias.stylize import AdaIN
from texturebias.stylize.networks import mirrored_decoder, small_vgg_encoder
from texturebias.stylize.train import adain_losses, train_decoder


def tiny_model(seed: int = 0) -> AdaIN:
    torch.manual_seed(seed)
    encoder, layers = small_vgg_encoder((8, 16), seed=0)
    return AdaIN(encoder, mirrored_decoder((8, 16)), style_layers=layers)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(0)
    for sub, n in (("content", 6), ("styles", 4)):
        (d / sub).mkdir()
        for i in range(n):
            Image.fromarray(make_photo(rng, 30 + i, 40)).save(d / sub / f"{i}.png")
    (d / "content" / "broken.png").write_bytes(b"not an image")  # skipped deterministically
    return d / "content", d / "styles"


def test_losses_vanish_for_a_perfect_decoder() -> None:
    # With an identity "encoder" (no layers up to the AdaIN layer but a ReLU) and an identity decoder, g(t) = t:
    # the content loss is 0 and the style loss compares AdaIN output statistics with the style's, also ~0.
    model = AdaIN(torch.nn.Sequential(torch.nn.Identity()), torch.nn.Identity(), style_layers=(0,))
    g = torch.Generator().manual_seed(0)
    content, style = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g) + 1
    loss_c, loss_s = adain_losses(model, content, style)
    assert loss_c.item() == pytest.approx(0.0, abs=1e-10)
    assert loss_s.item() == pytest.approx(0.0, abs=1e-6)
    # A decoder that returns the content instead: the style loss is the mismatch of channel means and stds.
    model.decoder = torch.nn.Identity()
    mismatch = AdaIN(torch.nn.Sequential(torch.nn.Identity()), _Const(content), style_layers=(0,))
    _, loss_s2 = adain_losses(mismatch, content, style)
    cm, cs = content.flatten(2).mean(2), (content.flatten(2).var(2) + 1e-5).sqrt()
    sm, ss = style.flatten(2).mean(2), (style.flatten(2).var(2) + 1e-5).sqrt()
    expected = ((cm - sm) ** 2).mean() + ((cs - ss) ** 2).mean()
    assert loss_s2.item() == pytest.approx(expected.item(), rel=1e-5)


class _Const(torch.nn.Module):
    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value + 0 * x.mean()


def read_log(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_resume_continues_exactly(folders: tuple[Path, Path], tmp_path: Path) -> None:
    content, styles = folders
    kw = dict(batch_size=2, image_size=32, crop_size=24, save_every=2, log_every=1, workers=0, device="cpu")
    straight = train_decoder(content, styles, tmp_path / "a", model=tiny_model(), iterations=4, plot=False, **kw)
    train_decoder(content, styles, tmp_path / "b", model=tiny_model(), iterations=2, plot=False, **kw)
    resumed = train_decoder(content, styles, tmp_path / "b", model=tiny_model(seed=9), iterations=4, **kw)
    assert straight.iteration == resumed.iteration == 4
    a = torch.load(straight.decoder, weights_only=True)
    b = torch.load(resumed.decoder, weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = read_log(tmp_path / "b" / "loss_log.csv")
    assert [r["iteration"] for r in log] == ["1", "2", "3", "4"]
    assert log == read_log(tmp_path / "a" / "loss_log.csv")
    assert float(log[1]["lr"]) == pytest.approx(1e-4 / (1 + 5e-5 * 1))
    assert (tmp_path / "b" / "loss_curve.png").exists() and (tmp_path / "b" / "loss_curve.pdf").exists()
    # The checkpoint holds the decoder under "model" (+ optimizer, iteration) and loads back.
    model = tiny_model(seed=5)
    ckpt = torch.load(tmp_path / "b" / "checkpoint.pth", weights_only=True)
    model.decoder.load_state_dict(ckpt["model"])
    assert ckpt["iteration"] == 4


def test_resume_with_another_encoder_is_refused(folders: tuple[Path, Path], tmp_path: Path) -> None:
    from texturebias.errors import DataError

    content, styles = folders
    kw = dict(batch_size=2, image_size=32, crop_size=24, save_every=2, log_every=1, workers=0, device="cpu", plot=False)
    train_decoder(content, styles, tmp_path / "a", model=tiny_model(), iterations=2, **kw)
    other = tiny_model()
    encoder, layers = small_vgg_encoder((8, 16), seed=1)  # same architecture, other frozen weights
    other = AdaIN(encoder, other.decoder, style_layers=layers)
    with pytest.raises(DataError, match="encoder_sha256"):
        train_decoder(content, styles, tmp_path / "a", model=other, iterations=4, **kw)


def test_official_checkpoint_loads_into_the_stylizer(folders: tuple[Path, Path], tmp_path: Path) -> None:
    from conftest import _shared

    fixtures = _shared("TEXTUREBIAS_FIXTURES", "fixtures")
    if fixtures is None:
        pytest.skip("golden fixtures not available")
    vgg = tmp_path / "vgg.pth"
    torch.save(detinit_state_dict(fixtures / "adain/keys_vgg_normalised.json", 2.0), vgg)
    content, styles = folders
    result = train_decoder(content, styles, tmp_path / "run", vgg=vgg, iterations=1, batch_size=1, image_size=32,
                           crop_size=16, workers=0, device="cpu", plot=False)  # fmt: skip
    for path in (result.checkpoint, result.decoder):
        model = AdaIN.from_checkpoints(vgg, path)
        with torch.no_grad():
            assert model(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)).shape == (1, 3, 16, 16)


@pytest.mark.parametrize("pool", [True, False])
def test_small_networks_mirror_each_other_with_and_without_pooling(pool: bool) -> None:
    encoder, layers = small_vgg_encoder((8, 16, 24), convs_per_stage=2, seed=0, pool=pool)
    assert all(isinstance(encoder[i], torch.nn.ReLU) for i in layers) and len(layers) == 3
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in encoder) == (2 if pool else 0)
    decoder = mirrored_decoder((8, 16, 24), convs_per_stage=2, pool=pool)
    assert sum(isinstance(m, torch.nn.Upsample) for m in decoder) == (2 if pool else 0)
    x = torch.rand(2, 3, 32, 32)
    feat = encoder[: layers[-1] + 1](x)
    assert feat.shape == ((2, 24, 8, 8) if pool else (2, 24, 32, 32))
    assert decoder(feat).shape == x.shape
