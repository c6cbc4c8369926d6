"""Texture synthesis, tile shuffling and scrambling (DISTORTIONS.md T1–T3, S2–S3)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detinit import detinit_state_dict
from texturebias.cli import main
from texturebias.errors import TextureBiasError
from texturebias.models.adain_nets import RELU_INDICES
from texturebias.texture.gram import TextureLoss, gram_loss, gram_matrix
from texturebias.texture.lbfgs import batched_lbfgs
from texturebias.texture.network import (
    LAYER_INDICES,
    caffe_preprocessing,
    check_layers,
    gram_parameter_count,
    normalise_vgg_,
    texture_network,
    torchvision_vgg19_as_texture_network,
)
from texturebias.texture.scramble import scramble_folder, shuffle_tiles
from texturebias.texture.synthesis import TextureSynthesizer, _noise_start, area_size, histogram_match


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Small convolutions: on a loaded 2-core machine OpenMP spin-waiting makes 2 threads ~10x slower than 1.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def vgg_sd() -> dict[str, torch.Tensor]:
    path = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "adain" / "keys_vgg_normalised.json"
    if not path.exists():
        pytest.skip("fixtures not available")
    return detinit_state_dict(path, gain=2.0)


@pytest.fixture(scope="module")
def net(vgg_sd) -> torch.nn.Sequential:
    """detinit-v1 convolutions behind the real module 0 (Caffe preprocessing), as the official file has it."""
    network = texture_network(vgg_sd)
    network[0] = caffe_preprocessing()
    return network


@pytest.fixture(scope="module")
def brick() -> np.ndarray:
    import skimage.data

    return skimage.data.brick()  # 512x512 grey, a real texture photo


def _photo(size: int = 64) -> torch.Tensor:
    from texturebias.data.samples import sample_photo_paths

    img = Image.open(sample_photo_paths()[0]).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


# --------------------------------------------------------------------------------------------------------
# Network layout and Gram statistics


def test_layer_indices_match_the_adain_layout():
    for name, idx in RELU_INDICES.items():
        assert LAYER_INDICES[name] == idx
    assert [LAYER_INDICES[f"pool{i}"] for i in (1, 2, 3, 4)] == [7, 14, 27, 40]
    assert LAYER_INDICES["conv1_1"] == 3  # post-ReLU, as Caffe's in-place ReLU
    assert check_layers(["pool2", "conv1_1", "pool1", "pool2"]) == ("conv1_1", "pool1", "pool2")
    with pytest.raises(TextureBiasError, match="unknown texture layer"):
        check_layers(["fc7"])


def test_gram_parameter_count_of_the_pool4_model_is_176640():
    assert gram_parameter_count() == 176_640
    # Truncated "pool2" model of the paper's Fig. 2: conv1_1 + pool1 + pool2.
    assert gram_parameter_count(["conv1_1", "pool1", "pool2"]) == 2080 + 2080 + 8256


def test_gram_matrix_by_hand_and_invariant_to_tiling():
    f = torch.tensor([[[[1.0, 2.0], [0.0, 1.0]], [[3.0, 0.0], [1.0, 1.0]]]])  # N=2 channels, M=4
    # F Fᵀ / M: [1+4+0+1, 3+0+0+1; ., 9+0+1+1] / 4
    expected = torch.tensor([[[6.0, 4.0], [4.0, 11.0]]]) / 4
    torch.testing.assert_close(gram_matrix(f), expected)
    # The /M makes the statistics independent of how much of a stationary map there is.
    torch.testing.assert_close(gram_matrix(f.repeat(1, 1, 3, 2)), expected)


def test_gram_loss_is_zero_on_the_source_and_nearly_size_invariant(net, brick):
    import skimage.data

    def crop(arr, r, c, n):
        return torch.from_numpy(arr[r : r + n, c : c + n].astype(np.float32) / 255)[None, None].expand(1, 3, -1, -1)

    source = crop(brick, 0, 0, 64)
    assert float(gram_loss(net, source, source)[0]) == 0.0
    shallow = ["conv1_1", "pool1", "pool2"]
    noise = float(gram_loss(net, torch.rand(1, 3, 64, 64), source, shallow)[0])
    other_texture = float(gram_loss(net, crop(skimage.data.gravel(), 0, 0, 64), source, shallow)[0])
    # The same texture at 4x the area (a 2x2 tiling): Grams are averages over positions (the /M), so the loss
    # stays near zero; only zero-padding borders and the seams differ. Measured: 0.7% of noise, 2% of gravel.
    tiled = float(gram_loss(net, source.repeat(1, 1, 2, 2), source, shallow)[0])
    assert tiled < 0.02 * noise and tiled < 0.05 * other_texture


def test_loss_formula_matches_the_reference_normalisation(net):
    """E_l = w/(4N²)·Σ(G/M − Ĝ/M)² equals the paper's w/(4N²M²)·Σ(G_raw − Ĝ_raw)²."""
    loss = TextureLoss(net, ["conv1_1"], layer_weights=1.0)
    a, b = _photo(16), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        fa = loss.feature_maps(loss.preprocess_images(a))[0].reshape(64, -1).double()
        fb = loss.feature_maps(loss.preprocess_images(b))[0].reshape(64, -1).double()
        m = fa.shape[1]
        paper = ((fa @ fa.T - fb @ fb.T) ** 2).sum() / (4 * 64**2 * m**2)
        ours = loss(loss.preprocess_images(a), loss.grams(loss.preprocess_images(b)))
    assert float(ours[0]) == pytest.approx(float(paper), rel=1e-4)


def test_preprocessing_is_inverted(vgg_sd):
    x = _photo(16)
    loss = TextureLoss(texture_network(vgg_sd))  # random module 0 of detinit: invertible, less well conditioned
    torch.testing.assert_close(loss.deprocess(loss.preprocess_images(x)), x, atol=1e-3, rtol=0)
    loss.preprocess = caffe_preprocessing()
    torch.testing.assert_close(loss.deprocess(loss.preprocess_images(x)), x, atol=1e-6, rtol=0)
    # Caffe preprocessing by hand: BGR x 255 - (103.94, 116.78, 123.68).
    z = loss.preprocess_images(x)
    torch.testing.assert_close(z[0, 0], x[0, 2] * 255 - 103.939, atol=1e-2, rtol=0)


def test_noise_start_is_the_reference_white_noise_with_caffe_preprocessing(net):
    """With the official module 0 (RGB→BGR ×255 − mean) the start is N(0, 1) in preprocessed space (T1)."""
    loss = TextureLoss(net, ["conv1_1"])
    loss.preprocess = caffe_preprocessing()
    z = _noise_start(loss, (128, 128), [7], torch.device("cpu"))
    gen = torch.Generator().manual_seed(7)
    expected = torch.randn(3, 128, 128, generator=gen).flip(0)  # noise drawn in RGB, now in BGR order
    torch.testing.assert_close(z[0], expected, atol=2e-4, rtol=0)


def test_t3_normalisation_gives_unit_mean_activations():
    from torchvision.models.vgg import cfgs, make_layers

    net = torchvision_vgg19_as_texture_network(make_layers(cfgs["E"]))  # random torchvision VGG-19 features
    images = _photo(32).repeat(2, 1, 1, 1)
    images[1] = images[1].flip(-1)
    with torch.no_grad():
        before = net[:4](images)
        scales = normalise_vgg_(net, images)
        assert len(scales) == 16
        x = images
        means = []
        for module in net:
            x = module(x)
            if isinstance(module, torch.nn.ReLU):
                m = x.mean(dim=(0, 2, 3))
                means.append(m[m > 0])
        after = net[:4](images)
    for m in means:
        torch.testing.assert_close(m, torch.ones_like(m), rtol=1e-3, atol=0)
    # ReLU is positively homogeneous: only a per-channel rescaling of the features.
    torch.testing.assert_close(after * scales[0].view(1, -1, 1, 1), before, rtol=1e-4, atol=1e-5)


def test_histogram_matching_maps_quantiles_and_keeps_order():
    rng = np.random.default_rng(0)
    image = rng.random((32, 32, 3)).astype(np.float32)
    source = rng.beta(2, 5, (40, 40, 3)).astype(np.float32)
    out = histogram_match(image, source)
    for c in range(3):
        order = np.argsort(image[:, :, c].ravel())
        assert np.all(np.diff(out[:, :, c].ravel()[order]) >= -1e-7)
        for q in (0.1, 0.5, 0.9):
            assert np.quantile(out[:, :, c], q) == pytest.approx(np.quantile(source[:, :, c], q), abs=0.02)


def test_area_size_keeps_aspect_and_area():
    assert area_size(512, 512, 256) == (256, 256)
    h, w = area_size(300, 600, 256)
    assert abs(h * w - 256**2) < 600 and w == 2 * h


# --------------------------------------------------------------------------------------------------------
# Optimisers


def test_batched_lbfgs_solves_independent_box_constrained_problems():
    centre = torch.tensor([[0.3, 2.0, -1.0], [0.5, 0.5, 0.5]])

    def objective(x):
        x = x.detach().requires_grad_(True)
        # A Rosenbrock-like coupled term plus a pull to `centre`.
        f = ((x - centre) ** 2).sum(1) + 5 * (x[:, 1] - x[:, 0] ** 2) ** 2
        (g,) = torch.autograd.grad(f.sum(), x)
        return f.detach(), g

    x0 = torch.zeros(2, 3)
    res = batched_lbfgs(objective, x0, 0.0, 1.0, max_iter=60, history_size=5)
    ref = []
    from scipy.optimize import minimize

    for b in range(2):

        def fun(v, b=b):
            f, g = objective(torch.tensor(v, dtype=torch.float32)[None].expand(2, -1).contiguous())
            return float(f[b]), g[b].double().numpy()

        ref.append(minimize(fun, np.zeros(3), jac=True, method="L-BFGS-B", bounds=[(0, 1)] * 3).x)
    torch.testing.assert_close(res.x, torch.tensor(np.array(ref), dtype=torch.float32), atol=2e-3, rtol=0)
    assert float(res.x.min()) >= 0.0 and float(res.x.max()) <= 1.0
    # Each sample's run does not depend on the others in its batch.
    alone = batched_lbfgs(
        lambda x: tuple(t[:1] for t in objective(torch.cat([x, x]))), x0[:1], 0.0, 1.0, max_iter=60, history_size=5
    )
    torch.testing.assert_close(alone.x[0], res.x[0], atol=1e-6, rtol=0)


def test_synthesis_loss_falls_by_orders_of_magnitude_on_a_real_texture(net, brick):
    syn = TextureSynthesizer(net, iterations=30, size=32, method="scipy", device="cpu", show_progress=False)
    res = syn.synthesize([brick], seeds=0)[0]
    assert res.image.shape == (32, 32, 3) and 0.0 <= res.image.min() and res.image.max() <= 1.0
    assert res.iterations == 30
    assert res.losses[-1] < 1e-3 * res.losses[0]  # measured: 3.7e12 -> 1.0e9 in 30 iterations
    assert res.losses[-1] == pytest.approx(res.loss)


def test_fast_mode_falls_too_and_is_seeded(net, brick):
    syn = TextureSynthesizer(net, iterations=35, size=32, method="torch", device="cpu", show_progress=False)
    res = syn.synthesize([brick], seeds=[3])[0]
    assert res.losses[-1] < 1e-3 * res.losses[0]
    # Batch-mates do not interact (each has its own L-BFGS state). Checked after one step: later steps amplify
    # the float rounding of batched convolutions (y = g_new - g cancels), as they would in any L-BFGS.
    short = TextureSynthesizer(net, iterations=1, size=32, method="torch", device="cpu", show_progress=False)
    gravel = np.asarray(Image.fromarray(brick).rotate(90))
    both = short.synthesize([brick, gravel], seeds=[3, 4])
    alone = short.synthesize([gravel], seeds=[4])[0]
    np.testing.assert_allclose(alone.image, both[1].image, atol=1e-5)
    assert alone.losses[-1] == pytest.approx(both[1].losses[-1], rel=1e-5)
    np.testing.assert_array_equal(short.synthesize([gravel], seeds=[4])[0].image, alone.image)  # seeded
    other = short.synthesize([gravel], seeds=[5])[0]
    assert other.losses[0] != alone.losses[0] and not np.array_equal(other.image, alone.image)


def test_any_output_size(net, brick):
    syn = TextureSynthesizer(net, iterations=3, size=32, output_size=(24, 40), method="torch", show_progress=False)
    assert syn.synthesize([brick])[0].image.shape == (24, 40, 3)


# --------------------------------------------------------------------------------------------------------
# Tile shuffling and scrambling


def test_shuffle_tiles_by_hand():
    a = np.arange(4 * 4).reshape(4, 4)
    out = shuffle_tiles(a, 2, permutation=[3, 2, 1, 0])
    np.testing.assert_array_equal(out, [[10, 11, 8, 9], [14, 15, 12, 13], [2, 3, 0, 1], [6, 7, 4, 5]])


def test_shuffle_tiles_is_a_reproducible_permutation_of_tiles():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (70, 100, 3), dtype=np.uint8)
    t = 16
    out = shuffle_tiles(img, t, seed=5)
    assert out.shape == img.shape and out.dtype == img.dtype
    np.testing.assert_array_equal(out, shuffle_tiles(img, t, seed=5))
    assert not np.array_equal(out, shuffle_tiles(img, t, seed=6))
    # Remainder rows/columns (70 mod 16, 100 mod 16) are untouched.
    np.testing.assert_array_equal(out[64:], img[64:])
    np.testing.assert_array_equal(out[:, 96:], img[:, 96:])

    def tiles(x):
        return sorted(x[r : r + t, c : c + t].tobytes() for r in range(0, 64, t) for c in range(0, 96, t))

    assert tiles(out) == tiles(img)  # the same multiset of tiles
    # Tensors (channels first, batched) get the same permutation.
    tensor = torch.from_numpy(img).permute(2, 0, 1)[None]
    np.testing.assert_array_equal(shuffle_tiles(tensor, t, seed=5)[0].permute(1, 2, 0).numpy(), out)
    with pytest.raises(TextureBiasError, match="tile size"):
        shuffle_tiles(img, 80)


def test_bagnet_logits_survive_tile_shuffling_when_tiles_are_large(fixtures_dir):
    from texturebias.models import create_model
    from texturebias.models.weights import load_into

    model = create_model("bagnet17")
    load_into(model, detinit_state_dict(fixtures_dir / "bagnet" / "keys_bagnet17.json", gain=1.0))
    x = torch.load(fixtures_dir / "bagnet" / "inputs.pt", weights_only=True)["x224"][:, :, :96, :96]
    perm = [3, 2, 0, 1]
    t = 48  # a multiple of the stride 8, and >> q = 17
    shuffled = shuffle_tiles(x, t, permutation=perm)
    with torch.no_grad():
        patches = model.forward_patch_logits(torch.cat([x, shuffled, shuffle_tiles(x, 8, seed=0)]))
    # Every 17x17 window inside one tile moved with its tile: its logits are the same, exactly permuted.
    per_tile = t // 8  # windows per tile along one axis (stride 8)
    inside = (t - 17) // 8 + 1
    for k, src in enumerate(perm):
        r, c = divmod(k, 2)
        sr, sc = divmod(src, 2)
        got = patches[1, :, r * per_tile : r * per_tile + inside, c * per_tile : c * per_tile + inside]
        want = patches[0, :, sr * per_tile : sr * per_tile + inside, sc * per_tile : sc * per_tile + inside]
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    # Image logits (means over windows) agree closely; 8x8 tiles (< q) destroy them.
    logits = patches.mean(dim=(2, 3))
    big = (logits[1] - logits[0]).norm() / (logits[0] - logits[0].mean()).norm()
    small = (logits[2] - logits[0]).norm() / (logits[0] - logits[0].mean()).norm()
    assert big < 0.5 * small
    assert torch.corrcoef(logits[:2])[0, 1] > 0.95


def _tiny_folder(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / cls / f"im{i}.png")
    (root / "b" / "broken.jpg").write_bytes(b"not an image")
    return root


def test_scramble_patches_folder_records_seeds_and_resumes(tmp_path):
    data = _tiny_folder(tmp_path / "data")
    out = tmp_path / "out"
    summary = scramble_folder(data, out, method="patches", tiles=[8, 16], seed=3)
    assert summary.processed == 4 and len(summary.failed) == 1
    with open(out / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["status"] == "done"]
    assert len(rows) == 8 and {r["output"] for r in rows} >= {"tile8/a/im0.png", "tile16/b/im1.png"}
    row = next(r for r in rows if r["output"] == "tile16/a/im1.png")
    original = np.asarray(Image.open(data / "a" / "im1.png").convert("RGB"))
    expected = shuffle_tiles(original, 16, int(row["seed"]))
    np.testing.assert_array_equal(np.asarray(Image.open(out / row["output"])), expected)
    with open(out / "failed.csv", newline="") as fh:
        assert [r["input"] for r in csv.DictReader(fh)] == ["b/broken.jpg"]
    again = scramble_folder(data, out, method="patches", tiles=[8, 16], seed=3)
    assert again.processed == 0 and again.skipped_done == 4


def test_cli_synthesize_and_scramble_texture(tmp_path, vgg_sd, brick):
    ckpt = tmp_path / "vgg.pth"
    torch.save(vgg_sd, ckpt)
    src = tmp_path / "brick.png"
    Image.fromarray(brick).save(src)
    out = tmp_path / "tex"
    rc = main(
        [
            "synthesize",
            str(src),
            "--out",
            str(out),
            "--checkpoint",
            str(ckpt),
            "--size",
            "24",
            "--iterations",
            "5",
            "--device",
            "cpu",
            "--histogram-matching",
        ]
    )
    assert rc == 0
    assert Image.open(out / "brick.png").size == (24, 24)
    with open(out / "synthesis.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert float(row["loss_final"]) < float(row["loss_start"]) and row["seed"] == "0"
    assert main(["synthesize", str(src), "--out", str(out), "--checkpoint", str(ckpt), "--layers", "fc7"]) == 1

    data = _tiny_folder(tmp_path / "data")
    rc = main(
        [
            "scramble",
            str(data),
            str(tmp_path / "scr"),
            "--method",
            "texture",
            "--checkpoint",
            str(ckpt),
            "--size",
            "16",
            "--iterations",
            "2",
            "--optimizer",
            "torch",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    h, w = area_size(40, 48, 16)
    assert Image.open(tmp_path / "scr" / "a" / "im0.png").size == (w, h)
    with open(tmp_path / "scr" / "failed.csv", newline="") as fh:
        assert [r["input"] for r in csv.DictReader(fh)] == ["b/broken.jpg"]


def test_tile_shuffle_accuracy_rows_csv_and_figure(tmp_path):
    from texturebias.texture.tile_accuracy import tile_shuffle_accuracy

    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for wnid, channel in (("n01440764", 0), ("n01443537", 2)):  # tench (0): reddish, goldfish (1): bluish
        (data / wnid).mkdir(parents=True)
        for i in range(3):
            arr = rng.integers(0, 120, (64, 80, 3), dtype=np.uint8)
            arr[:, :, channel] += 120
            Image.fromarray(arr).save(data / wnid / f"{i}.png")

    class MeanColour(torch.nn.Module):
        """Position-blind: class 0 = mean red, class 1 = mean blue. Tile shuffling cannot change it."""

        def forward(self, x):
            logits = torch.full((x.shape[0], 1000), -1e9)
            logits[:, 0], logits[:, 1] = x[:, 0].mean((1, 2)), x[:, 2].mean((1, 2))
            return logits

    class TopLeft(torch.nn.Module):
        """Position-bound: looks only at the top-left 8x8 pixels."""

        def forward(self, x):
            return MeanColour()(x[:, :, :8, :8])

    rows = tile_shuffle_accuracy(
        [("colour", MeanColour()), ("corner", TopLeft())],
        data,
        tiles=[224, 56, 8],
        batch_size=4,
        device="cpu",
        out_dir=tmp_path / "out",
    )
    assert [(r["model"], r["tile"], r["images"]) for r in rows][:3] == [
        ("colour", 224, 6),
        ("colour", 56, 6),
        ("colour", 8, 6),
    ]
    assert [r["top1"] for r in rows if r["model"] == "colour"] == [1.0, 1.0, 1.0]
    assert rows[3]["top1"] == 1.0  # the corner model sees the right colour at full size too
    with open(tmp_path / "out" / "tile_accuracy.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 6
    assert (tmp_path / "out" / "tile_accuracy.png").stat().st_size > 1000
    assert (tmp_path / "out" / "tile_accuracy.pdf").exists()
