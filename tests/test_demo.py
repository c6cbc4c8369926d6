"""Tests of ``texturebias demo``: the generated world, the demo models, findings logic, and a ``--quick`` run.

The quick run (``@pytest.mark.slow``, ~1-2 minutes on 2 cores) is shared by the summary and the browser test.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from texturebias.data.labels import texture_category
from texturebias.demo import world
from texturebias.demo.config import QUICK, DemoConfig, DemoSizes
from texturebias.demo.findings import evaluate_findings
from texturebias.demo.pipeline import run_demo
from texturebias.errors import TextureBiasError
from texturebias.models import create_model, get_model_entry, resolve_preprocessing


# ------------------------------------------------------------------------------------------- the world
def test_samples_are_a_pure_function_of_seed_kind_and_index() -> None:
    a = world.make_sample("natural", 7, seed=3)
    b = world.make_sample("natural", 7, seed=3)
    c = world.make_sample("natural", 7, seed=4)
    assert a.image.shape == (32, 32, 3) and a.image.dtype == np.uint8
    assert np.array_equal(a.image, b.image) and a.filename == b.filename
    assert not np.array_equal(a.image, c.image)
    # train and test splits never share images
    assert not np.array_equal(a.image, world.make_sample("natural", 7, seed=3, split="test").image)


def test_cue_conflict_enumerates_every_pair_with_shape_not_texture() -> None:
    n = len(world.SHAPES)
    pairs = [world.make_sample("cue-conflict", i, seed=0) for i in range(n * (n - 1))]
    got = {(s.shape, s.texture) for s in pairs}
    assert len(got) == n * (n - 1) == 56
    assert all(s != t for s, t in got)
    # File names follow the real stimuli, so the toolkit's parser recovers the texture's class: the shape class
    # that wears this texture in the natural set (answering it is a texture decision).
    for s in pairs[:10]:
        assert texture_category(s.filename) == world.SHAPES[s.texture]
        assert world.TEXTURES[s.texture] in s.filename
        assert s.label == world.SHAPES[s.shape]


def test_natural_set_matches_texture_to_shape_with_probability_09() -> None:
    samples = [world.make_sample("natural", i, seed=1) for i in range(400)]
    matched = np.mean([s.shape == s.texture for s in samples])
    # Binomial(400, 0.9): sd 0.015; +-5 sd.
    assert 0.825 < matched < 0.975
    # randomised set: bank textures only, and every shape class occurs
    rand = [world.make_sample("randomised", i, seed=1) for i in range(200)]
    assert all(s.texture == -1 for s in rand)
    assert {s.shape for s in rand} == set(range(len(world.SHAPES)))


def test_shape_masks_stay_inside_the_frame_and_have_plausible_area() -> None:
    rng = np.random.default_rng(0)
    for shape in world.SHAPES:
        for _ in range(5):
            m = world.shape_mask(shape, rng)
            assert m.min() >= 0 and m.max() <= 1
            # 1-px margin: PIL's fill includes the outline, so a vertex placed exactly on the margin may cover a
            # quarter pixel of the border row, never more (the shape is never cut by the frame)
            for border in (m[0], m[-1], m[:, 0], m[:, -1]):
                assert border.max() <= 0.25, shape
            # scale 0.6-0.9 of the half-width: between ~4% and ~65% of the image
            assert 0.04 * 32 * 32 < m.sum() < 0.65 * 32 * 32, shape


def test_write_set_is_an_image_folder_and_resumable(tmp_path: Path) -> None:
    from texturebias.data.images import index_image_folder, load_image

    world.write_set(tmp_path / "s", "silhouettes", 20, seed=0)
    idx = index_image_folder(tmp_path / "s", allow_empty_classes=True)
    assert len(idx) == 20 and set(idx.classes) == set(world.SHAPES)
    first = idx.samples[0][0]
    arr = np.asarray(load_image(first))
    assert arr.shape == (32, 32, 3)
    mtime = first.stat().st_mtime_ns
    world.write_set(tmp_path / "s", "silhouettes", 20, seed=0)  # rerun keeps existing files
    assert first.stat().st_mtime_ns == mtime


def test_parallel_generation_writes_the_same_files(tmp_path: Path) -> None:
    world.write_set(tmp_path / "a", "natural", 600, seed=1, workers=0)
    world.write_set(tmp_path / "b", "natural", 600, seed=1, workers=2)  # three 250-image chunks over two processes
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.png"))
    assert len(files_a) == 600 and files_a == files_b
    for rel in files_a[::37]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


# ------------------------------------------------------------------------------------------- the models
def test_demo_models_are_registered_with_32px_preprocessing() -> None:
    for name in ("demo_cnn", "demo_bagnet"):
        entry = get_model_entry(name)
        assert entry.family == "demo" and entry.weights is None
        pre = resolve_preprocessing(name)
        assert (pre.input_size, pre.resize_size) == (32, 32)
    cnn = create_model("demo_cnn")
    n_params = sum(p.numel() for p in cnn.parameters())
    assert n_params == 77_912  # widths (16, 32, 64); docs say "~75 k parameters"
    bag = create_model("demo_bagnet", num_classes=5)
    assert bag.receptive_field == 13 and bag.total_stride == 2
    assert bag.bn1.momentum == 0.1  # a 3-epoch run needs live stem statistics (the official 0.001 does not move)
    assert create_model("bagnet9", pretrained=False).bn1.momentum == 0.001
    x = torch.randn(2, 3, 32, 32)
    assert cnn(x).shape == (2, 8) and bag(x).shape == (2, 5)
    # BagNet: one logit map per 13x13 window, (32 - 13) // 2 + 1 = 10 per side
    assert bag.forward_patch_logits(x).shape == (2, 5, 10, 10)


# ----------------------------------------------------------------------------------------- findings logic
def _summary(sb: dict[str, float], acc: dict[str, dict[str, float]], probes: dict[str, float]) -> dict:
    return {
        "shape_bias": {k: {"shape_bias": v, "ci95": [v - 0.05, v + 0.05]} for k, v in sb.items()},
        "accuracy": acc,
        "probes": {
            "shape_probe": {"natural": 0.9, "stylized": probes["shape"]},
            "texture_probe": {"natural": 0.9, "stylized": probes["texture"]},
        },
        "chance": 0.125,
        "real": {"status": "skipped", "reason": "test"},
    }


def test_findings_are_evaluated_from_the_numbers() -> None:
    sb = {"cnn-natural": 0.2, "cnn-randomised": 0.9, "cnn-natural+randomised": 0.5, "cnn-stylized": 0.45,
          "bagnet-natural": 0.1, "bagnet-randomised": 0.5}  # fmt: skip
    acc = {k: {"natural": 0.9, "randomised": 0.8, "stylized": 0.3, "silhouettes": 0.2} for k in sb}
    acc["bagnet-randomised"]["randomised"] = 0.4
    acc["cnn-stylized"]["natural"] = 0.7
    held = {f["id"]: f["held"] for f in evaluate_findings(_summary(sb, acc, {"shape": 0.4, "texture": 0.2}))}
    assert held["real-texture-bias"] is None  # not measured
    assert held["natural-texture-bias"] and held["randomised-shape-bias"] and held["mixed-intermediate"]
    assert held["stylized-more-shape"] and held["bagnet-local"] and held["bagnet-randomised"]
    assert held["table1-asymmetry"] and held["probe-texture-removed"] and held["probe-shape-kept"]
    # The reverse world: every criterion fails.
    sb2 = dict(sb, **{"cnn-natural": 0.8, "cnn-randomised": 0.3, "cnn-stylized": 0.5})
    acc["bagnet-natural"]["silhouettes"] = 0.6
    acc["cnn-stylized"]["natural"] = 0.4
    held2 = {f["id"]: f["held"] for f in evaluate_findings(_summary(sb2, acc, {"shape": 0.2, "texture": 0.6}))}
    assert not any(v for k, v in held2.items() if k not in ("real-texture-bias", "bagnet-randomised"))


def test_out_folder_of_another_run_is_refused(tmp_path: Path) -> None:
    (tmp_path / "demo-config.json").write_text(json.dumps({"seed": 5, "sizes": {}}), encoding="utf-8")
    with pytest.raises(TextureBiasError, match="other settings"):
        run_demo(DemoConfig(out=tmp_path, seed=0, quick=True))


def test_cli_parses_demo_options(capsys: pytest.CaptureFixture[str]) -> None:
    from texturebias.cli import build_parser, main

    args = build_parser().parse_args(["demo", "--quick", "--seed", "3", "--out", "x"])
    assert args.quick and args.seed == 3 and args.out == Path("x") and args.stimuli is None
    assert args.texture_scale is None  # the sizes' own (3.0 full and quick)
    assert build_parser().parse_args(["demo", "--texture-scale", "1"]).texture_scale == 1.0
    for bad in ("0", "-2", "many", "20"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["demo", "--texture-scale", bad])
    assert args.texture_match is None  # the sizes' own (1.0)
    assert build_parser().parse_args(["demo", "--texture-match", "0.9"]).texture_match == 0.9
    for bad in ("0.1", "1.5", "all"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["demo", "--texture-match", bad])
    assert args.stylize_alpha is None  # the sizes' own alpha (1.0 full and quick)
    assert build_parser().parse_args(["demo", "--stylize-alpha", "0.7"]).stylize_alpha == 0.7
    for bad in ("0", "1.2"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["demo", "--stylize-alpha", bad])
    assert args.stylize_size is None  # the sizes' own (96 px)
    assert build_parser().parse_args(["demo", "--stylize-size", "64"]).stylize_size == 64
    assert build_parser().parse_args(["demo", "--stylize-size", "512"]).stylize_size == 512
    for bad in ("16", "64.5", "big", "513", "9600"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["demo", "--stylize-size", bad])
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--stylize-size", "9600"])
    assert exc.value.code == 2 and "expected a size in pixels in [32, 512], got 9600" in capsys.readouterr().err
    assert args.stylizer is None  # the sizes' own ("random")
    assert build_parser().parse_args(["demo", "--stylizer", "lite0"]).stylizer == "lite0"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--stylizer", "vgg19"])


def _stripe_period(scale: float) -> float:
    """Period in pixels of the stripes class pattern along its own axis (from its zero crossings)."""
    rng = np.random.default_rng(7)
    t = world.TEXTURE_PATTERNS["stripes"](rng, scale)
    rng = np.random.default_rng(7)
    theta = rng.uniform(0, np.pi)  # the draw _rotated makes first: the stripes' orientation
    yy, xx = np.mgrid[0 : world.SIZE, 0 : world.SIZE]
    u = (xx * np.cos(theta) + yy * np.sin(theta)).ravel()
    order = np.argsort(u)
    values = t.ravel()[order]
    edges = u[order][1:][np.diff(values) != 0]  # positions where the stripe value flips
    return 2 * float(np.median(np.diff(edges[np.diff(np.concatenate([[-9], edges])) > 0.5])))


def test_texture_scale_makes_textures_finer_and_leaves_the_scale_1_world_unchanged() -> None:
    # Stripes have a period of 4-6 px; at scale 2 and 3 the same draw is 2x and 3x shorter.
    p1, p2, p3 = _stripe_period(1.0), _stripe_period(2.0), _stripe_period(3.0)
    assert 4.0 <= p1 <= 6.0
    assert p2 == pytest.approx(p1 / 2, rel=0.15) and p3 == pytest.approx(p1 / 3, rel=0.2)
    # Shapes, labels and file names do not depend on the scale; the pixels of the textures do.
    a, b = world.make_sample("natural", 11, 0), world.make_sample("natural", 11, 0, texture_scale=2.0)
    assert (a.shape, a.texture, a.filename) == (b.shape, b.texture, b.filename)
    assert not np.array_equal(a.image, b.image)
    assert np.array_equal(
        world.make_sample("styles", 3, 0).image, world.make_sample("styles", 3, 0, texture_scale=1.0).image
    )


def test_a_scaled_world_is_another_run_and_old_folders_hold_scale_1(tmp_path: Path) -> None:
    from dataclasses import asdict, replace

    from texturebias.demo.config import QUICK
    from texturebias.demo.pipeline import _check_out

    # A stamp written before the options: the first world (scale 1, match 0.9), alpha 0.8, the random stylizer at 32 px.
    first = replace(QUICK, texture_scale=1.0, texture_match=0.9, stylize_alpha=0.8, stylize_size=32)
    old = {k: v for k, v in asdict(first).items()
           if k not in ("texture_scale", "stylizer", "texture_match", "stylize_size")}  # fmt: skip
    (tmp_path / "demo-config.json").write_text(json.dumps({"seed": 0, "sizes": old}), encoding="utf-8")
    _check_out(tmp_path, DemoConfig(out=tmp_path, seed=0, quick=True), first)  # accepted: the same world
    for other in (QUICK, replace(first, texture_scale=2.0), replace(first, stylizer="lite0"),
                  replace(first, texture_match=1.0), replace(first, stylize_size=64)):  # fmt: skip
        with pytest.raises(TextureBiasError, match="other settings"):
            _check_out(tmp_path, DemoConfig(out=tmp_path, seed=0, quick=True), other)


def test_lite0_stylizer_is_built_from_the_imagenet_blocks() -> None:
    import torch

    from texturebias.demo.steps import build_stylizer
    from texturebias.models import load_model

    model = build_stylizer(3, "lite0")
    assert model.style_layers == (1, 2, 4)  # stem, block 0 (end of stage 1), block 2 (end of stage 2: AdaIN)
    x = torch.rand(2, 3, 32, 32)
    feats = model.encode_with_intermediate(x)
    assert [tuple(f.shape[1:]) for f in feats] == [(32, 64, 64), (16, 64, 64), (24, 32, 32)]
    assert tuple(model.decode(feats[-1]).shape) == (2, 3, 32, 32)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    # The AdaIN-layer features are Lite0's own block-2 output on the normalised, x4 upsampled image.
    net, pre = load_model("efficientnet_lite0")
    seen = {}
    net._blocks[2].register_forward_hook(lambda m, i, o: seen.update(out=o))
    mean, std = torch.tensor(pre.mean).view(1, 3, 1, 1), torch.tensor(pre.std).view(1, 3, 1, 1)
    with torch.no_grad():
        net.eval()(torch.nn.functional.interpolate((x - mean) / std, scale_factor=4, mode="bilinear"))
    torch.testing.assert_close(feats[-1], seen["out"])
    with pytest.raises(ValueError, match="unknown demo stylizer"):
        build_stylizer(0, "vgg19")


# ------------------------------------------------------------------------------------------ quick run
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "quick"
    from texturebias.cli import main

    assert main(["demo", "--quick", "--out", str(out), "--seed", "0"]) == 0
    return out


def _numbers(obj: object) -> list[float]:
    if isinstance(obj, bool):
        return []
    if isinstance(obj, int | float):
        return [float(obj)]
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _numbers(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _numbers(v)]
    return []


@pytest.mark.slow
def test_quick_demo_writes_a_complete_summary(quick_run: Path) -> None:
    s = json.loads((quick_run / "summary.json").read_text(encoding="utf-8"))
    assert s["quick"] is True and s["seed"] == 0 and s["sizes"]["n_train"] == QUICK.n_train
    for key in ("accuracy", "shape_bias", "probes", "heatmaps", "findings", "commands", "timings_s", "figures"):
        assert key in s, key
    assert all(math.isfinite(x) for x in _numbers(s["accuracy"]) + _numbers(s["probes"]))
    models = {"cnn-natural", "cnn-randomised", "cnn-natural+randomised", "cnn-stylized", "bagnet-natural",
              "bagnet-randomised"}  # fmt: skip
    assert set(s["accuracy"]) == models and set(s["shape_bias"]) == models
    for row in s["accuracy"].values():
        assert set(row) == {"natural", "randomised", "stylized", "silhouettes", "cue-conflict"}
        assert all(0.0 <= v <= 1.0 for v in row.values())
    n_conflict = QUICK.conflict_per_pair * 56
    # Untrained-ish quick models answer at random: texture decisions must occur (0 would mean a naming bug).
    assert sum(v["n_texture"] for v in s["shape_bias"].values()) > 0
    for v in s["shape_bias"].values():
        assert v["n_shape"] + v["n_texture"] + v["n_other"] == n_conflict
        if v["shape_bias"] is not None:
            assert 0.0 <= v["shape_bias"] <= 1.0
            lo, hi = v["ci95"]
            assert lo <= v["shape_bias"] <= hi
    ids = [f["id"] for f in s["findings"]]
    assert len(ids) == 10 and len(set(ids)) == 10
    for f in s["findings"]:
        assert f["held"] in (True, False, None) and f["criterion"] and f["citation"]
    # every finding of the miniature world is evaluated (only the real-stimuli one may be unmeasured)
    assert all(f["held"] is not None for f in s["findings"] if f["id"] != "real-texture-bias")
    assert s["real"]["status"] in ("skipped", "done", "unavailable")
    # outputs a user can rerun from: data, checkpoints, trial CSVs, figures
    assert (quick_run / "runs" / "cnn-natural" / "checkpoint_last.pt").is_file()
    assert len(list((quick_run / "trials").glob("cue-conflict_*_session-1.csv"))) == 6
    for rel in s["figures"].values():
        assert (quick_run / rel).is_file() and (quick_run / rel).with_suffix(".pdf").is_file()
    assert any(c.startswith("texturebias train --model demo_cnn") for c in s["commands"].values())


@pytest.mark.slow
def test_quick_demo_rerun_reuses_everything(quick_run: Path, tmp_path: Path) -> None:
    before = json.loads((quick_run / "summary.json").read_text(encoding="utf-8"))
    result = run_demo(DemoConfig(out=quick_run, seed=0, quick=True))
    assert result.summary_data["accuracy"] == before["accuracy"]
    assert result.summary_data["shape_bias"] == before["shape_bias"]


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.mark.slow
def test_report_renders_in_headless_chromium(quick_run: Path) -> None:
    found = _chromium()
    if found is None:
        pytest.skip("Chromium/chromedriver not installed (Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    try:
        driver.get((quick_run / "report.html").resolve().as_uri())
        assert "texturebias demo" in driver.title
        widths = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.src.slice(0, 22)]);"
        )
        summary = json.loads((quick_run / "summary.json").read_text(encoding="utf-8"))
        assert len(widths) == len(summary["figures"]) >= 6
        for complete, width, src in widths:
            assert complete and width > 0
            assert src == "data:image/png;base64,"  # self-contained: nothing loaded from disk or network
        text = driver.find_element("tag name", "body").text
        assert "Findings" in text and "Rerun any step" in text
    finally:
        driver.quit()


def test_sizes_scale_the_work() -> None:
    full = DemoSizes()
    assert QUICK.n_train < full.n_train and QUICK.epochs <= full.epochs and not QUICK.real_stimuli


def test_texture_match_sets_how_often_a_natural_shape_wears_its_texture(tmp_path: Path) -> None:
    def matched(p: float) -> float:
        samples = [world.make_sample("natural", i, 1, p_match=p) for i in range(400)]
        return float(np.mean([smp.shape == smp.texture for smp in samples]))

    # 0.9 is the demo's world, byte for byte the same as before the option; 1.0 never mismatches.
    assert 0.86 <= matched(0.9) <= 0.94 and matched(1.0) == 1.0
    a, b = world.make_sample("natural", 7, 0), world.make_sample("natural", 7, 0, p_match=0.9)
    assert np.array_equal(a.image, b.image) and a.filename == b.filename
    # Other sets ignore it; a written natural set is stamped with it so that another value is not taken as done.
    cc = [world.make_sample("cue-conflict", i, 0, p_match=1.0).filename for i in range(3)]
    assert cc == [world.make_sample("cue-conflict", i, 0).filename for i in range(3)]
    world.write_set(tmp_path / "n", "natural", 40, 0, p_match=1.0)
    names = [f.name for f in (tmp_path / "n").rglob("*.png")]
    assert len(names) == 40 and all(world.TEXTURES[world.SHAPES.index(n.split("-")[0])] == n.split("-")[1]
                                    for n in names)  # fmt: skip
    assert [m.name for m in (tmp_path / "n").glob(".complete-*")] == [".complete-natural-train-seed0-n40-match1"]


def test_report_describes_the_world_and_stylizer_that_ran(quick_run: Path) -> None:
    from texturebias.demo.report import render_report

    summary = json.loads((quick_run / "summary.json").read_text())
    assert summary["sizes"]["stylize_alpha"] == 1.0  # the default, the Stylized-ImageNet recipe (issue 18)
    default = render_report(summary, {})
    assert "with probability 1, so texture predicts the class exactly as well as shape" in default
    assert "periods are 3&times; shorter than the world's base patterns" in default
    assert "frozen random VGG-style encoder" in default and "&alpha; = 1.0" in default
    assert "upsampled to 96&times;96 pixels for stylization" in default
    summary["sizes"].update(texture_scale=1.0, texture_match=0.9, stylize_alpha=0.7, stylizer="lite0", stylize_size=32)
    other = render_report(summary, {})
    assert "with probability 0.9, so texture is a shortcut" in other and "shorter than" not in other
    assert "EfficientNet-Lite0 as encoder" in other and "&alpha; = 0.7" in other
    assert "upsampled to" not in other
    # A summary written before the options existed describes the first world (demo.config.PRE_OPTION_SIZES).
    for key in ("texture_scale", "texture_match", "stylizer", "stylize_size"):
        del summary["sizes"][key]
    old = render_report(summary, {})
    assert "with probability 0.9, so texture is a shortcut" in old and "shorter than" not in old
    assert "frozen random VGG-style encoder" in old and "upsampled to" not in old


def test_cli_passes_the_experimental_options_into_the_sizes(monkeypatch, tmp_path: Path) -> None:
    import types
    from dataclasses import replace

    import texturebias.demo as demo_pkg
    from texturebias.cli import main
    from texturebias.demo.config import FULL, QUICK

    seen: list[DemoConfig] = []
    result = types.SimpleNamespace(findings=[], summary_data={}, report=tmp_path / "r.html", summary=tmp_path / "s")
    monkeypatch.setattr(demo_pkg, "run_demo", lambda config: seen.append(config) or result)
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    assert seen[-1].sizes is None and seen[-1].resolved_sizes() == QUICK  # no option: the quick defaults as they are
    args = ["demo", "--out", str(tmp_path), "--texture-scale", "1", "--texture-match", "0.9", "--stylize-alpha", "0.7",
            "--stylizer", "lite0", "--stylize-size", "64"]  # fmt: skip
    assert main(args) == 0
    sizes = seen[-1].resolved_sizes()
    assert (sizes.texture_scale, sizes.texture_match, sizes.stylize_alpha, sizes.stylizer) == (1.0, 0.9, 0.7, "lite0")
    assert sizes.stylize_size == 64
    assert sizes.n_train == FULL.n_train and sizes.epochs == FULL.epochs
    assert main(["demo", "--quick", "--out", str(tmp_path), "--texture-match", "0.9"]) == 0
    assert seen[-1].resolved_sizes() == replace(QUICK, texture_match=0.9)
    assert main(["demo", "--quick", "--out", str(tmp_path), "--texture-match", "1"]) == 0  # the default: no override
    assert seen[-1].sizes is None


def test_stylize_size_stylizes_at_that_size_and_the_classifiers_read_32px(tmp_path: Path) -> None:
    from dataclasses import replace

    from PIL import Image

    from texturebias.demo.steps import load_eval_set, make_datasets, make_stylized

    tiny = replace(QUICK, n_train=12, n_test=6, conflict_per_pair=1, n_probe=8, n_styles=4, decoder_iterations=2,
                   decoder_batch=2, workers=1, stylize_size=64)  # fmt: skip
    folders = make_datasets(tmp_path, 0, tiny)
    stylized, decoder = make_stylized(folders, tmp_path, 0, tiny)
    settings = json.loads((decoder.parent / "train-decoder.json").read_text(encoding="utf-8"))
    assert json.dumps(settings).count('"image_size": 64') == 1 and '"crop_size": 64' in json.dumps(settings)
    images = sorted(stylized["stylized/test"].rglob("*.png"))
    assert len(images) == tiny.n_test and {Image.open(p).size for p in images} == {(64, 64)}
    assert tuple(load_eval_set("stylized", stylized["stylized/test"]).x.shape) == (tiny.n_test, 3, 32, 32)
