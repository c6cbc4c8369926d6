"""AdaIN stylizer: every reference output (detinit-v1 weights), the op, statistics reuse, precision, custom nets.

The official ``vgg_normalised.pth``/``decoder.pth`` cannot be downloaded here; the tests rebuild the
fixtures' deterministic "detinit-v1" weights (gain 2.0) with the official key layout, which is what the
reference outputs in ``shared/fixtures/adain/adain_outputs.pt`` were computed with.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from texturebias.errors import CheckpointError
from texturebias.models.adain_nets import adain_decoder, vgg_normalised
from texturebias.stylize import AdaIN, StyleStats, adain, mean_std, preserve_color
from texturebias.stylize.augment import StyleAugment, style_bank
from texturebias.stylize.networks import mirrored_decoder, small_vgg_encoder

TOL = 1e-4  # fixtures README: max |Δ| <= 1e-4 * max |expected|


@pytest.fixture(scope="module")
def weight_files(adain_weight_files: tuple[Path, Path]) -> tuple[Path, Path]:
    return adain_weight_files


@pytest.fixture(scope="module")
def model(weight_files: tuple[Path, Path]) -> AdaIN:
    return AdaIN.from_checkpoints(*weight_files)


@pytest.fixture(scope="module")
def ref() -> dict[str, torch.Tensor]:
    from conftest import _shared

    fixtures = _shared("TEXTUREBIAS_FIXTURES", "fixtures")
    if fixtures is None:
        pytest.skip("golden fixtures not available")
    return torch.load(fixtures / "adain/adain_outputs.pt", weights_only=True)


def assert_close_rel(got: torch.Tensor, expected: torch.Tensor, tol: float = TOL) -> None:
    assert got.shape == expected.shape
    err = (got - expected).abs().max().item()
    assert err <= tol * expected.abs().max().item(), f"max |Δ| = {err:.3g}"


@torch.no_grad()
def test_every_reference_output(model: AdaIN, ref: dict[str, torch.Tensor]) -> None:
    c, s = ref["content"], ref["style"]
    assert_close_rel(model.encode(c), ref["relu4_1_content"])
    assert_close_rel(model(c, s), ref["alpha1"])
    assert_close_rel(model(c, s, alpha=0.5), ref["alpha05"])
    assert_close_rel(model(c, ref["style_rect"]), ref["rect_style_alpha1"])
    styles = torch.cat([s, ref["style_b"]])
    assert_close_rel(model(c, styles, style_weights=[0.3, 0.7]), ref["interp_03_07"])
    assert_close_rel(preserve_color(s, c), ref["preserve_color_style"])
    assert_close_rel(model(c, s, preserve_color=True), ref["preserve_color_alpha1"])
    # Every output is covered.
    outputs = {"relu4_1_content", "alpha1", "alpha05", "rect_style_alpha1", "interp_03_07"}
    outputs |= {"preserve_color_style", "preserve_color_alpha1"}
    assert set(ref) == outputs | {"content", "style", "style_b", "style_rect"}


@torch.no_grad()
def test_cached_style_stats_and_batches_match_one_at_a_time(model: AdaIN, ref: dict[str, torch.Tensor]) -> None:
    c = torch.cat([ref["content"], ref["style_b"], ref["style"]])
    s = torch.cat([ref["style"], ref["content"], ref["style_b"]])
    one_by_one = torch.cat([model(c[i : i + 1], s[i : i + 1], alpha=a) for i, a in enumerate((1.0, 0.5, 0.2))])
    stats = model.style_stats(s)
    assert isinstance(stats, StyleStats) and stats.mean.shape == (3, 512, 1, 1)
    batched = model(c, stats, alpha=torch.tensor([1.0, 0.5, 0.2]))
    assert_close_rel(batched, one_by_one, 1e-5)
    # The statistics of a style do not depend on which batch it was encoded in.
    assert torch.allclose(model.style_stats(s[1:2]).std, stats[1].std, rtol=1e-5, atol=1e-6)
    assert_close_rel(model(c[:1], stats[0]), ref["alpha1"])
    # Interpolation with per-content style sets (N x K layout) equals the reference case for N = 1.
    two = StyleStats.cat([model.style_stats(ref["style"]), model.style_stats(ref["style_b"])])
    mix = model.stylize_features(model.encode(ref["content"]), two, 1.0, torch.tensor([[0.3, 0.7]]))
    assert_close_rel(model.decode(mix), ref["interp_03_07"])


def test_adain_op_hand_checked() -> None:
    g = torch.Generator().manual_seed(0)
    c = torch.rand(2, 4, 5, 6, generator=g) * 3
    s = torch.rand(2, 4, 7, 3, generator=g) + 2
    out = adain(c, s)
    s_mean = s.flatten(2).mean(2)
    s_std = (s.flatten(2).var(2, unbiased=True) + 1e-5).sqrt()
    assert torch.allclose(out.flatten(2).mean(2), s_mean, atol=1e-5)
    # The output's unbiased std equals σ(s) · σ_unbiased(c) / sqrt(var_unbiased(c) + 1e-5).
    c_var = c.flatten(2).var(2, unbiased=True)
    expected_std = s_std * c_var.sqrt() / (c_var + 1e-5).sqrt()
    assert torch.allclose(out.flatten(2).std(2, unbiased=True), expected_std, atol=1e-5)
    m, sd = mean_std(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]))
    assert m.item() == pytest.approx(2.5) and sd.item() == pytest.approx((5 / 3 + 1e-5) ** 0.5)


def test_preserve_color_takes_content_mean_and_std() -> None:
    g = torch.Generator().manual_seed(1)
    style = torch.rand(2, 3, 16, 16, generator=g)
    content = torch.rand(2, 3, 12, 10, generator=g) * 0.5 + 0.2
    out = preserve_color(style, content)
    assert out.shape == style.shape
    assert torch.allclose(out.flatten(2).mean(2), content.flatten(2).mean(2), atol=1e-5)
    # The reference's covariances are sums, not means (x̂ x̂ᵀ + I): with N_c content and N_s style pixels the
    # recoloured style's std is the content's times ~sqrt((N_c - 1) / (N_s - 1)), here sqrt(119 / 255).
    ratio = out.flatten(2).std(2) / content.flatten(2).std(2)
    assert torch.allclose(ratio, torch.full_like(ratio, (119 / 255) ** 0.5), rtol=0.01)
    content2 = torch.rand(2, 3, 16, 16, generator=g) * 0.3
    same_size = preserve_color(style, content2)
    assert torch.allclose(same_size.flatten(2).std(2), content2.flatten(2).std(2), rtol=0.01)


def test_bad_checkpoints_are_refused(weight_files: tuple[Path, Path], tmp_path: Path) -> None:
    vgg, dec = weight_files
    with pytest.raises(CheckpointError, match="missing key"):
        AdaIN.from_checkpoints(vgg, vgg)  # VGG weights given as the decoder
    with pytest.raises(CheckpointError, match="not found"):
        AdaIN.from_checkpoints(vgg, tmp_path / "nope.pth")


@torch.no_grad()
def test_bf16_error_is_small_but_real(model: AdaIN, ref: dict[str, torch.Tensor]) -> None:
    exact = model
    fast = AdaIN(copy.deepcopy(model.encoder), copy.deepcopy(model.decoder), precision="bf16", channels_last=True)
    c, s = ref["content"], ref["style"]  # one pair: emulated bf16 (CPUs without AMX) is ~9x slower than fp32
    a, b = exact(c, s), fast(c, s)
    rel = (a - b).abs().max().item() / a.abs().max().item()
    assert 1e-5 < rel < 0.1  # bf16 (8-bit mantissa) through 25 conv layers: visible at float level
    assert b.dtype == torch.float32 and b.is_contiguous()


@torch.no_grad()
def test_custom_tiny_adain_and_style_augment() -> None:
    encoder, layers = small_vgg_encoder((8, 16), seed=0)
    assert layers == (2, 6)  # relu1_1-like, relu2_1-like
    model = AdaIN(encoder, mirrored_decoder((8, 16)), style_layers=layers).eval()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert model.encode(x).shape == (4, 16, 16, 16)
    assert [f.shape[1] for f in model.encode_with_intermediate(x)] == [8, 16]
    assert model(x, x.flip(0)).shape == (4, 3, 32, 32)
    bank = style_bank(model, x, batch_size=3)
    assert len(bank) == 4
    aug = StyleAugment(model, bank, p=0.5, alpha=(0.5, 1.0), source="mixed")
    out = aug(x, generator=torch.Generator().manual_seed(3))
    changed = (out != x).flatten(1).any(1)
    assert out.shape == x.shape and 0 < int(changed.sum()) < 4 or int(changed.sum()) in (0, 4)
    assert torch.equal(aug(x, generator=torch.Generator().manual_seed(3)), out)  # reproducible
    assert torch.equal(StyleAugment(model, p=0.0, source="batch")(x), x)
    full = StyleAugment(model, p=1.0, alpha=1.0, source="batch")(x, generator=torch.Generator().manual_seed(0))
    assert (full != x).flatten(1).any(1).all() and full.min() >= 0 and full.max() <= 1
    with pytest.raises(ValueError, match="needs a style bank"):
        StyleAugment(model, source="bank")


def test_official_builders_take_the_full_vgg() -> None:
    model = AdaIN(vgg_normalised(), adain_decoder())
    assert len(model.encoder) == 31 and model.style_layers == (3, 10, 17, 30)
    assert not any(p.requires_grad for p in model.encoder.parameters())


def test_efficientnet_lite_encoder_ends_at_a_stage_and_conv_decoder_restores_the_size() -> None:
    from texturebias.stylize.networks import conv_decoder, efficientnet_lite_encoder

    encoder, style_layers, channels, stride = efficientnet_lite_encoder(upto=4, upsample=2)
    assert (style_layers, channels, stride) == ((1, 2, 4, 6), 40, 8)
    assert not encoder.training
    feat = encoder(torch.rand(1, 3, 32, 32))
    assert tuple(feat.shape) == (1, 40, 8, 8)  # 64 px after the x2 upsampling, stride 8
    assert tuple(conv_decoder(40, width=32, upsample=4)(feat).shape) == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="does not end a stage"):
        efficientnet_lite_encoder(upto=3)
