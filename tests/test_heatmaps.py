"""Class-evidence heatmaps: golden maps of the original code, the patch-by-patch definition, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detinit import detinit_state_dict
from texturebias.errors import TextureBiasError
from texturebias.explain.evidence import DensePlan, class_evidence, patch_loop_evidence
from texturebias.models import create_model, load_into
from texturebias.models.bagnet import BagNet


def _fixture_model(fixtures_dir, q: int) -> BagNet:
    model = create_model(f"bagnet{q}")
    load_into(model, detinit_state_dict(fixtures_dir / "bagnet" / f"keys_bagnet{q}.json", gain=1.0))
    return model.eval()


def _tiny(seed: int = 0, **kw) -> BagNet:
    """A small BagNet with random weights AND random BN statistics (so BN folding is exercised)."""
    torch.manual_seed(seed)
    cfg = dict(widths=(4, 8), blocks=(2, 2), kernel3=(1, 2), strides=(2, 1), num_classes=6, in_stem=4)
    cfg.update(kw)
    model = BagNet(**cfg)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.05)
    return model.eval()


# Windows of the 224x224 map: both corners (padding in play on two sides) and an interior block.
WINDOWS = [(0, 0, 24, 24), (200, 192, 24, 32), (100, 90, 16, 16)]


@pytest.mark.parametrize("q", (9, 17, 33))
def test_matches_reference_heatmap_windows(fixtures_dir, q):
    model = _fixture_model(fixtures_dir, q)
    x = torch.load(fixtures_dir / "bagnet" / "inputs.pt", weights_only=True)["x224"]
    ref = torch.load(fixtures_dir / "bagnet" / f"bagnet{q}_heatmap224_target7.pt", weights_only=True)
    assert ref["target"] == 7
    expected = ref["heatmap"]
    tol = 2e-4 * float(expected.abs().max())  # fixture README tolerance
    plan = DensePlan(model)
    for top, left, h, w in WINDOWS:
        heat = class_evidence(plan, x, 7, window=(top, left, h, w))
        assert heat.shape == (1, h, w) and heat.dtype == torch.float32
        assert float((heat[0] - expected[top : top + h, left : left + w]).abs().max()) <= tol


@pytest.mark.slow
def test_full_224_map_matches_reference_bagnet33(fixtures_dir):
    model = _fixture_model(fixtures_dir, 33)
    x = torch.load(fixtures_dir / "bagnet" / "inputs.pt", weights_only=True)["x224"]
    expected = torch.load(fixtures_dir / "bagnet" / "bagnet33_heatmap224_target7.pt", weights_only=True)["heatmap"]
    heat = class_evidence(model, x, 7)[0]
    assert heat.shape == (224, 224)
    assert float((heat - expected).abs().max()) <= 2e-4 * float(expected.abs().max())


@pytest.mark.parametrize("size", [(23, 30), (5, 7), (1, 1), (12, 40)])
def test_equals_patch_loop_definition_any_size(size):
    """Any H, W >= 1, also smaller than q = 13: the padded definition still applies."""
    model = _tiny()
    assert model.receptive_field == 13
    torch.manual_seed(1)
    x = torch.randn(1, 3, *size)
    expected = patch_loop_evidence(model, x, 4, batch_size=97)
    heat = class_evidence(model, x, 4)
    assert heat.shape == (1, *size)
    torch.testing.assert_close(heat[0], expected, rtol=1e-4, atol=1e-5)


def test_batched_multi_target_and_tiled_equal_single_calls():
    model = _tiny(seed=3)
    torch.manual_seed(2)
    x = torch.randn(3, 3, 26, 21)
    targets = [[0, 5], [2, 2], [1, 3]]
    full = class_evidence(model, x, targets)
    assert full.shape == (3, 2, 26, 21)
    # Tiny tile budget: many exact tiles and one image per pass must give the same numbers.
    tiled = class_evidence(model, x, torch.tensor(targets), tile_bytes=40_000, batch_size=1)
    torch.testing.assert_close(tiled, full, rtol=1e-5, atol=1e-6)
    for i, ks in enumerate(targets):
        for j, k in enumerate(ks):
            torch.testing.assert_close(full[i, j], patch_loop_evidence(model, x[i : i + 1], k), rtol=1e-4, atol=1e-5)
    per_image = class_evidence(model, x, [0, 2, 1])
    torch.testing.assert_close(per_image, full[:, 0])


def test_bf16_is_close_to_fp32():
    model = _tiny(seed=4)
    x = torch.randn(2, 3, 20, 20)
    exact = class_evidence(model, x, 1)
    fast = class_evidence(model, x, 1, precision="bf16")
    err = float((fast - exact).abs().max() / exact.abs().max())
    assert 0 < err < 0.05


def test_bad_inputs_are_clear_errors():
    model = _tiny()
    with pytest.raises(TextureBiasError, match="needs a BagNet"):
        class_evidence(torch.nn.Conv2d(3, 4, 3), torch.zeros(1, 3, 8, 8), 0)
    with pytest.raises(TextureBiasError, match="out of range"):
        class_evidence(model, torch.zeros(1, 3, 8, 8), 6)
    with pytest.raises(TextureBiasError, match="2 targets for 1 images"):
        class_evidence(model, torch.zeros(1, 3, 8, 8), [1, 2])
    with pytest.raises(TextureBiasError, match="N x 3 x H x W"):
        class_evidence(model, torch.zeros(1, 1, 8, 8), 0)
    with pytest.raises(TextureBiasError, match="not inside"):
        class_evidence(model, torch.zeros(1, 3, 8, 8), 0, window=(4, 4, 8, 8))


# ----------------------------------------------------------------------------------------------------------------
# Figures, CLI, informative patches


def _image_folder(root, sizes=((40, 52), (64, 64), (33, 90)), folders=("n01440764", "7", "unknown")):
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for f_i, folder in enumerate(folders):
        (root / folder).mkdir(parents=True)
        for s_i, (h, w) in enumerate(sizes):
            p = root / folder / f"img{f_i}{s_i}.png"
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
            paths.append(p)
    (root / folders[0] / "broken.jpg").write_bytes(b"not a jpeg")
    return paths


def test_topk_heap_keeps_largest_with_deterministic_ties():
    from texturebias.explain.patches import _TopK

    values = [3.0, 1.0, 5.0, 5.0, 2.0, 5.0, 4.0]
    heap = _TopK(3)
    for order, v in enumerate(values):
        heap.push(v, order, (v, order))
    # Three 5.0s tie: the earliest ones win, in input order.
    assert heap.sorted() == [(5.0, 2), (5.0, 3), (5.0, 5)]


def test_informative_patches_are_the_top_windows(tmp_path):
    import csv

    from texturebias.explain.patches import informative_patches
    from texturebias.models.preprocessing import Preprocessing

    model = _tiny(seed=5, num_classes=1000)
    _image_folder(tmp_path / "data")
    result = informative_patches(tmp_path / "data", [0, 7], tmp_path / "out", model=model, k=4, batch_size=4)
    assert result.n_images == 9
    assert [s[0].endswith("broken.jpg") for s in result.skipped] == [True]
    # Brute force over every window of every image: the "all" row is the global top-4.
    prep, q, s = Preprocessing(), model.receptive_field, model.total_stride
    transform = prep.eval_transform("always")
    from texturebias.data.images import find_images, load_image

    scored = []
    for path in find_images(tmp_path / "data"):
        if path.name == "broken.jpg":
            continue
        with torch.no_grad():
            logits = model.forward_patch_logits(transform(load_image(path)).unsqueeze(0))[0, 0]
        for (i, j), v in np.ndenumerate(logits.numpy()):
            scored.append((float(v), path.parent.name, i * s, j * s))
    scored.sort(key=lambda t: -t[0])
    assert [round(p.logit, 4) for p in result.all[0]] == [round(t[0], 4) for t in scored[:4]]
    own = [t for t in scored if t[1] == "n01440764"][:4]  # tench = class 0 = folder n01440764
    assert [(p.y, p.x) for p in result.own[0]] == [(t[2], t[3]) for t in own]
    assert all(p.image_label == 7 for p in result.own[7]) and all(p.pixels.shape == (q, q, 3) for p in result.all[7])
    rows = list(csv.DictReader(open(tmp_path / "out" / "patches.csv")))
    assert len(rows) == 2 * 2 * 4 and rows[0]["row"] == "own" and rows[0]["class_name"] == "tench"
    assert (tmp_path / "out" / "patches.png").stat().st_size > 0 and (tmp_path / "out" / "patches.pdf").exists()
    skipped = list(csv.DictReader(open(tmp_path / "out" / "skipped.csv")))
    assert len(skipped) == 1 and skipped[0]["reason"]


def test_interrupted_patch_search_resumes_to_the_same_result(tmp_path):
    import csv

    from texturebias.explain.patches import informative_patches

    model = _tiny(seed=5, num_classes=1000)
    _image_folder(tmp_path / "data")
    kw = dict(model=model, k=4, batch_size=2, save_every=1)
    full = informative_patches(tmp_path / "data", [0, 7], tmp_path / "full", **kw)

    calls = {"n": 0, "die_at": 3}
    forward = model.forward_features

    def dies_in_batch_3(x):
        calls["n"] += 1
        if calls["n"] == calls["die_at"]:
            raise KeyboardInterrupt
        return forward(x)

    model.forward_features = dies_in_batch_3
    with pytest.raises(KeyboardInterrupt):
        informative_patches(tmp_path / "data", [0, 7], tmp_path / "res", **kw)
    assert (tmp_path / "res" / "patches.partial.pt").is_file() and not (tmp_path / "res" / "patches.csv").exists()
    with pytest.raises(TextureBiasError, match="other settings \\(k: 4 -> 3\\)"):
        informative_patches(tmp_path / "data", [0, 7], tmp_path / "res", **{**kw, "k": 3})

    calls.update(n=0, die_at=-1)
    resumed = informative_patches(tmp_path / "data", [0, 7], tmp_path / "res", **kw)
    assert calls["n"] == 3  # batches 3-5 of the 9 readable images only
    assert resumed.n_images == full.n_images == 9 and resumed.skipped == full.skipped
    rows = [list(csv.DictReader(open(tmp_path / d / "patches.csv"))) for d in ("full", "res")]
    assert rows[0] == rows[1]
    for c in (0, 7):
        for a, b in zip(full.all[c] + full.own[c], resumed.all[c] + resumed.own[c], strict=True):
            assert np.array_equal(a.pixels, b.pixels)
    assert not (tmp_path / "res" / "patches.partial.pt").exists()


def test_heatmap_cli_writes_maps_and_figures(fixtures_dir, tmp_path):
    from PIL import Image

    from texturebias.cli import main
    from texturebias.models.preprocessing import Preprocessing
    from texturebias.utils.io import save_torch

    save_torch(tmp_path / "b9.pth", detinit_state_dict(fixtures_dir / "bagnet" / "keys_bagnet9.json", gain=1.0))
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (20, 26, 3), dtype=np.uint8)).save(tmp_path / "small.png")
    argv = ["heatmap", str(tmp_path / "small.png"), "--model", "bagnet9", "--checkpoint", str(tmp_path / "b9.pth")]
    assert main([*argv, "--target", "tench,7", "--resize", "never", "--out", str(tmp_path / "out")]) == 0
    heat = np.load(tmp_path / "out" / "small_tench.npy")
    assert heat.shape == (20, 26)
    model = create_model("bagnet9", checkpoint=tmp_path / "b9.pth")
    x = Preprocessing().eval_transform("never")(Image.open(tmp_path / "small.png").convert("RGB")).unsqueeze(0)
    np.testing.assert_allclose(heat, class_evidence(model, x, 0)[0].numpy(), rtol=1e-5, atol=1e-5)
    for name in ("small_cock.npy", "small_cock.png", "small_cock.pdf", "grid.png", "grid.pdf", "heatmaps.csv"):
        assert (tmp_path / "out" / name).is_file(), name
    # A non-BagNet, an unknown class: one clear message, exit 1.
    assert main([*argv, "--target", "no such class", "--out", str(tmp_path / "o2")]) == 1


def test_heat_limit_is_the_99th_percentile():
    from texturebias.explain.plots import heat_limit

    heat = np.concatenate([np.linspace(-1, 1, 10_000), [1000.0]])
    assert heat_limit(heat) == pytest.approx(np.percentile(np.abs(heat), 99))
    assert heat_limit(np.zeros((3, 3))) > 0
