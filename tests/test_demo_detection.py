"""Tests of the demo's miniature detection transfer: the scene generator, the bootstrap, the step on tiny sizes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from texturebias.demo import world
from texturebias.demo.config import DETECTION_QUICK, DetectionSizes
from texturebias.demo.detection import (
    SCRATCH,
    bootstrap_weights,
    detection_command,
    detection_train_config,
    judge_class,
    run_detection_transfer,
    weighted_map,
)
from texturebias.demo.findings import evaluate_findings
from texturebias.demo.report import _detection_section
from texturebias.demo.scenes import make_scene, write_detection_voc
from texturebias.detect.evaluate import Detection, GroundTruth, evaluate_detections
from texturebias.detect.voc import load_voc, parse_annotation, read_classes
from texturebias.errors import TextureBiasError
from texturebias.models import create_model


# ------------------------------------------------------------------------------------------------ scenes
def test_scene_boxes_are_the_drawn_shapes() -> None:
    for index in range(12):
        scene = make_scene(index, seed=3, size=64)
        assert scene.image.shape == (64, 64, 3) and scene.image.dtype == np.uint8
        assert 1 <= len(scene.objects) <= 3
        for k, obj in enumerate(scene.objects):
            ys, xs = np.nonzero(obj.mask >= 0.5)
            assert obj.box == (xs.min(), ys.min(), xs.max(), ys.max())  # tight around the covered pixels
            x1, y1, x2, y2 = obj.box
            assert 0 <= x1 < x2 < 64 and 0 <= y1 < y2 < 64
            assert 15 <= max(x2 - x1, y2 - y1) + 1 <= 32  # the classification world's object size
            # The drawn pixels differ from the scene without this object: the box is where the object is.
            inside = obj.mask >= 0.99
            assert inside.sum() > 20
            for other in scene.objects[k + 1 :]:
                assert not np.any((obj.mask > 0) & (other.mask > 0))  # objects never overlap: boxes are whole
        ann = scene.annotation("000007")
        assert [o.name for o in ann.objects] == [world.SHAPES[o.shape] for o in scene.objects]
        assert [o.box for o in ann.objects] == [tuple(float(v) for v in o.box) for o in scene.objects]
    # A pure function of (seed, split, index).
    a, b = make_scene(5, seed=3), make_scene(5, seed=3)
    assert np.array_equal(a.image, b.image) and [o.box for o in a.objects] == [o.box for o in b.objects]
    assert not np.array_equal(a.image, make_scene(5, seed=3, split="test").image)


def test_scene_pixels_show_the_objects_texture() -> None:
    """Inside a fully covered pixel the scene shows the object's fill, not the background."""
    scene = make_scene(0, seed=1, size=64, textures="randomised")
    assert all(o.texture == -1 for o in scene.objects)
    natural = [o for i in range(60) for o in make_scene(i, seed=1).objects]
    matched = np.mean([o.shape == o.texture for o in natural])
    assert 0.75 < matched <= 1.0  # shape k wears texture k with probability 0.9
    with pytest.raises(ValueError, match="texture rule"):
        make_scene(0, seed=1, textures="plaid")


def test_scenes_round_trip_through_the_voc_writer_and_reader(tmp_path: Path) -> None:
    year = write_detection_voc(tmp_path / "voc", 2, splits={"trainval": 4, "test": 3}, size=64)
    assert year == tmp_path / "voc" / "VOC2007"
    assert read_classes(year) == world.SHAPES
    test = load_voc(year, ("2007-test",))
    assert [i.image_id for i in test.images] == ["000005", "000006", "000007"]
    for position, image in enumerate(test.images):
        want = make_scene(position, 2, split="test", size=64).annotation(image.image_id)
        got = parse_annotation(year / "Annotations" / f"{image.image_id}.xml", world.SHAPES)
        assert got == want == image.annotation  # 1-based XML, 0-based in memory: exact
    trainval = load_voc(year, ("2007-trainval",))
    assert len(trainval) == 4 and sum(len(i.annotation.objects) for i in trainval.images) >= 4
    # Resumable: a second call keeps the finished files.
    stamp = (year / "JPEGImages" / "000001.jpg").stat().st_mtime_ns
    write_detection_voc(tmp_path / "voc", 2, splits={"trainval": 4, "test": 3}, size=64)
    assert (year / "JPEGImages" / "000001.jpg").stat().st_mtime_ns == stamp


# --------------------------------------------------------------------------------------------- bootstrap
def _toy(rng: np.random.Generator, n_images: int) -> tuple[dict, dict, list[str]]:
    ids = [f"im{i}" for i in range(n_images)]
    gt: dict[str, dict[str, list[GroundTruth]]] = {}
    dets: dict[str, list[Detection]] = {}
    scores = iter(rng.permutation(10_000) / 10_000 + 1e-5)  # distinct scores
    for cls in ("a", "b"):
        for i in ids:
            for _ in range(int(rng.integers(0, 3))):
                x, y = rng.uniform(1, 60, 2)
                box = (x, y, x + 20, y + 20)
                gt.setdefault(cls, {}).setdefault(i, []).append(GroundTruth(box, bool(rng.random() < 0.15)))
                for _ in range(int(rng.integers(0, 3))):  # hits, near misses, duplicates
                    jitter = rng.normal(0, 4, 4)
                    dets.setdefault(cls, []).append(Detection(i, float(next(scores)), tuple(box + jitter)))
            if rng.random() < 0.5:  # a false positive somewhere
                dets.setdefault(cls, []).append(Detection(i, float(next(scores)), (1.0, 1.0, 9.0, 9.0)))
    return gt, dets, ids


def test_weighted_map_equals_the_devkit_on_resampled_sets() -> None:
    rng = np.random.default_rng(0)
    gt, dets, ids = _toy(rng, 12)
    judged = {c: judge_class(gt.get(c, {}), dets.get(c, []), ids) for c in ("a", "b")}
    weights = np.vstack([np.ones(len(ids)), bootstrap_weights(len(ids), 5, seed=1)])
    map07, map_all = weighted_map(judged, weights)
    for row, (m07, mall) in enumerate(zip(map07, map_all, strict=True)):
        # The resampled set spelled out: image i repeated weights[row, i] times under new ids.
        gt_x: dict[str, dict[str, list[GroundTruth]]] = {}
        dets_x: dict[str, list[Detection]] = {}
        ids_x = []
        for i, n in zip(ids, weights[row].astype(int), strict=True):
            for k in range(n):
                ids_x.append(f"{i}#{k}")
                for c in ("a", "b"):
                    if i in gt.get(c, {}):
                        gt_x.setdefault(c, {})[f"{i}#{k}"] = gt[c][i]
                    dets_x.setdefault(c, []).extend(Detection(f"{i}#{k}", d.score, d.box) for d in dets.get(c, [])
                                                    if d.image_id == i)  # fmt: skip
        want = evaluate_detections(gt_x, dets_x, ("a", "b"), ids_x)
        assert m07 == pytest.approx(want.map_voc07, abs=1e-12), row
        assert mall == pytest.approx(want.map_all, abs=1e-12), row


def test_bootstrap_weights_resample_every_image_count() -> None:
    w = bootstrap_weights(7, 100, seed=0)
    assert w.shape == (100, 7) and np.all(w.sum(axis=1) == 7)
    assert np.array_equal(w, bootstrap_weights(7, 100, seed=0))
    assert not np.array_equal(w, bootstrap_weights(7, 100, seed=1))


# ------------------------------------------------------------------------------------------- the step
TINY = DetectionSizes(n_train=8, n_test=6, epochs=1, batch_size=4, warmup_iters=2, lr_step=1, n_boot=50,
                      backbones=("cnn-natural", "cnn-stylized", SCRATCH))  # fmt: skip


def _backbones(folder: Path) -> dict[str, Path | None]:
    """Two different demo_cnn state dicts standing in for the demo's trained CNNs, and the scratch control."""
    out: dict[str, Path | None] = {}
    folder.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(("cnn-natural", "cnn-stylized")):
        torch.manual_seed(seed)
        path = folder / f"{name}.pt"
        torch.save(create_model("demo_cnn").state_dict(), path)
        out[name] = path
    out[SCRATCH] = None
    return out


def _without_paths(result: dict[str, Any]) -> dict[str, Any]:
    r = json.loads(json.dumps(result))
    r.pop("timings_s")
    r.pop("cpu_time_s")
    r.pop("voc_root")
    for b in r["backbones"].values():
        b.pop("detector")
        b.pop("checkpoint")
    return r


def test_detection_step_reports_map_and_ci_per_backbone_deterministically(tmp_path: Path) -> None:
    checkpoints = _backbones(tmp_path / "ckpt")
    commands: dict[str, str] = {}
    first = run_detection_transfer(tmp_path / "a", 0, TINY, checkpoints, commands=commands)
    on_disk = json.loads((tmp_path / "a" / "detection" / "detection.json").read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(first))
    assert set(first["backbones"]) == {"cnn-natural", "cnn-stylized", SCRATCH}
    for b in first["backbones"].values():
        for metric in ("voc07", "all"):
            value, (lo, hi) = b[f"map_{metric}"], b[f"ci95_{metric}"]
            assert 0.0 <= value <= 1.0
            assert lo is not None and hi is not None and 0.0 <= lo <= hi <= 1.0
        assert set(b["classes"]) == set(world.SHAPES)
    assert set(first["differences"]) == {"cnn-stylized", SCRATCH}
    assert first["test_images"] == 6 and first["n_boot"] == 50
    assert "detect-train cnn-natural" in commands and "--checkpoint" in commands["detect-train cnn-natural"]
    # The same seed gives the same numbers in another folder.
    second = run_detection_transfer(tmp_path / "b", 0, TINY, checkpoints)
    assert _without_paths(second) == _without_paths(first)
    # Rerunning in the same folder reuses the detectors; other sizes there are refused.
    detector = tmp_path / "a" / "detection" / "runs" / "cnn-natural" / "detector.pt"
    stamp = detector.stat().st_mtime_ns
    again = run_detection_transfer(tmp_path / "a", 0, TINY, checkpoints)
    assert detector.stat().st_mtime_ns == stamp and _without_paths(again) == _without_paths(first)
    with pytest.raises(TextureBiasError, match="other settings"):
        run_detection_transfer(tmp_path / "a", 0, dataclasses.replace(TINY, epochs=2), checkpoints)

    # The report section and the finding read the result.
    html = "\n".join(_detection_section(first, {}))
    assert all(name in html for name in first["backbones"]) and "Table 2" in html
    summary = _demo_summary()
    assert len(evaluate_findings(summary)) == 10
    finding = evaluate_findings({**summary, "detection": first})[-1]
    assert finding["id"] == "detection-transfer"
    lo = first["differences"]["cnn-stylized"]["ci95_voc07"][0]
    assert finding["held"] is (lo > 0)


def _demo_summary() -> dict[str, Any]:
    keys = ("cnn-natural", "cnn-randomised", "cnn-natural+randomised", "cnn-stylized", "bagnet-natural",
            "bagnet-randomised")  # fmt: skip
    acc = {k: {"natural": 0.9, "randomised": 0.8, "stylized": 0.3, "silhouettes": 0.2} for k in keys}
    return {
        "shape_bias": {k: {"shape_bias": 0.5, "ci95": [0.45, 0.55]} for k in keys},
        "accuracy": acc,
        "probes": {
            "shape_probe": {"natural": 0.9, "stylized": 0.4},
            "texture_probe": {"natural": 0.9, "stylized": 0.2},
        },  # fmt: skip
        "chance": 0.125,
        "real": {"status": "skipped", "reason": "test"},
    }


def test_the_printed_command_is_the_steps_recipe(tmp_path: Path) -> None:
    import shlex

    from texturebias.cli import build_parser
    from texturebias.cli.detect import train_config_from_args

    cfg = detection_train_config(tmp_path / "voc", tmp_path / "run", tmp_path / "b.pt", 3, TINY)
    args = build_parser().parse_args(shlex.split(detection_command(cfg))[1:])
    assert train_config_from_args(args) == cfg


def test_quick_detection_sizes_are_small() -> None:
    assert DETECTION_QUICK.n_train * DETECTION_QUICK.epochs <= 120
    assert DETECTION_QUICK.backbones[0] == "cnn-natural"
