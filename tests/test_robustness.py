"""Benchmark metrics on hand-computed tables, the 17 human data sets, and MVH-layout folders end to end."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from texturebias.data.labels import CATEGORIES
from texturebias.errors import DataError
from texturebias.evaluate.trials import TRIAL_COLUMNS, read_trials, write_trials
from texturebias.robustness import benchmark as B
from texturebias.robustness.curves import robustness_trials, run_robustness


class ColourCodedModel(nn.Module):
    """A 16-way "model" whose answer is encoded in the image: category index = mean red value (0..15)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = x[:, 0].mean(dim=(1, 2)) * 0.229 + 0.485  # undo the default ImageNet normalisation
        k = torch.clamp(torch.round(red * 255), 0, 15).long()
        return nn.functional.one_hot(k, 16).float() * 10


# Hand-built uniform-noise experiment: (condition, category, model correct, subject-01 correct, subject-02 correct).
# 0.0 is an excluded condition (the control) and must not influence any metric.
TABLE = [
    ("0.1", "cat", 1, 1, 1), ("0.1", "dog", 1, 0, 1), ("0.1", "cat", 0, 1, 1), ("0.1", "dog", 0, 0, 1),
    ("0.2", "cat", 1, 1, 0), ("0.2", "dog", 0, 0, 1), ("0.2", "cat", 0, 0, 0), ("0.2", "dog", 0, 0, 0),
    ("0.0", "cat", 0, 1, 1), ("0.0", "dog", 0, 1, 1), ("0.0", "cat", 0, 1, 1), ("0.0", "dog", 0, 1, 1),
]  # fmt: skip


def _answer(category: str, correct: int) -> str:
    return category if correct else ("bird" if category != "bird" else "cat")


def _stimulus(i: int) -> str:
    return f"n0000_{i}.png"


def _human_csvs(folder: Path) -> None:
    for s, col in (("subject-01", 3), ("subject-02", 4)):
        rows = [
            {"subj": s, "session": 1, "trial": i + 1, "rt": 0.8, "object_response": _answer(r[1], r[col]),
             "category": r[1], "condition": r[0],
             "imagename": f"{i + 1:04d}_nse_s{s[-2:]}_{r[0]}_{r[1]}_10_{_stimulus(i)}"}
            for i, r in enumerate(TABLE)
        ]  # fmt: skip
        write_trials(folder / f"uniform-noise_{s}_session_1.csv", pd.DataFrame(rows))


def _mvh_folder(root: Path) -> Path:
    session = root / "uniform-noise" / "dnn" / "session-1"
    session.mkdir(parents=True)
    for i, (cond, cat, correct, _, _) in enumerate(TABLE):
        k = CATEGORIES.index(_answer(cat, correct))
        img = np.zeros((224, 224, 3), np.uint8)
        img[..., 0] = k
        Image.fromarray(img).save(session / f"{12 - i:04d}_nse_dnn_{cond}_{cat}_10_{_stimulus(i)}")
    return root / "uniform-noise"


def test_metrics_on_hand_computed_table(tmp_path: Path) -> None:
    _human_csvs(tmp_path / "raw" / "uniform-noise")
    folder = _mvh_folder(tmp_path / "data")
    humans = B.human_trials_for("uniform-noise", tmp_path / "raw")
    assert len(humans) == 24 and set(humans["subj"]) == {"subject-01", "subject-02"}
    model_trials = B.evaluate_dataset("colour-coded", folder, "uniform-noise", model=ColourCodedModel(),
                                      device="cpu", batch_size=5)  # fmt: skip
    assert list(model_trials.columns) == list(TRIAL_COLUMNS) and len(model_trials) == 12
    # OOD accuracy pools the non-excluded conditions: 3 of 8 right.
    scores = B.dataset_scores(model_trials, humans, "uniform-noise")
    assert scores["ood_accuracy"] == pytest.approx(3 / 8)
    # By hand: vs subject-01 κ = 0 (0.1) and 1 (0.2: identical answers); vs subject-02 κ = 0 and
    # (0.5 - 0.625)/0.375 = -1/3; c_obs 0.5, 1, 0.5, 0.5; squared accuracy differences 0, 0, 0.25, 0.
    assert scores["error_consistency"] == pytest.approx((0.5 + (-1 / 6)) / 2)
    assert scores["observed_consistency"] == pytest.approx(0.625)
    assert scores["accuracy_difference"] == pytest.approx(0.0625)
    assert scores["n_trials"] == 8 and scores["n_subjects"] == 2
    h = B.human_scores(humans, "uniform-noise")
    assert h["ood_accuracy"] == pytest.approx((3 / 8 + 5 / 8) / 2)
    assert h["error_consistency"] == pytest.approx(-1 / 6)
    assert h["observed_consistency"] == pytest.approx(0.5)
    assert h["accuracy_difference"] == pytest.approx(0.125)
    # Without the exclusions, the control condition (model all wrong, humans all right) would count.
    acc = B.accuracy_by_condition(model_trials, B.conditions_of("uniform-noise"))
    assert acc["condition"].tolist() == ["0.0", "0.1", "0.2"]
    assert acc["accuracy"].tolist() == [0.0, 0.5, 0.25]


def test_benchmark_end_to_end_mvh_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _human_csvs(tmp_path / "raw" / "uniform-noise")
    _mvh_folder(tmp_path / "data")
    real = B.evaluate_dataset

    def fake_evaluate(model_name: str, root: Path, name: str | None = None, **kw: object) -> pd.DataFrame:
        return real(model_name, root, name, model=ColourCodedModel(), device="cpu")

    monkeypatch.setattr(B, "evaluate_dataset", fake_evaluate)
    # "toy_model" is not registered: its preprocessing (part of the settings sidecar) is ImageNet's.
    monkeypatch.setattr(
        B, "resolve_preprocessing", lambda name, ck=None, overrides=None: B.Preprocessing().with_overrides(overrides)
    )
    out = tmp_path / "out"
    res = B.run_benchmark(["toy_model"], tmp_path / "data", out, human_data=tmp_path / "raw", device="cpu")
    row = res.per_dataset.set_index("subj").loc["toy_model"]
    assert row["ood_accuracy"] == pytest.approx(3 / 8) and row["error_consistency"] == pytest.approx(1 / 6)
    assert res.leaderboard["subj"].tolist() == ["humans", "toy_model"]
    trials_csv = out / "raw-data" / "uniform-noise" / "uniform-noise_toy-model_session_1.csv"
    written = read_trials(trials_csv)  # files in name order: 0001 is the last row of TABLE (0.0, dog, wrong)
    assert written["imagename"].iloc[0] == "0001_nse_dnn_0.0_dog_10_n0000_11.png"
    assert written["object_response"].iloc[0] == "bird" and len(written) == 12
    for name in (
        "leaderboard.csv",
        "benchmark_per_dataset.csv",
        "benchmark_per_condition.csv",
        "benchmark_error_consistency.png",
        "benchmark_ood_accuracy.pdf",
        "uniform-noise_accuracy.png",
    ):
        assert (out / name).stat().st_size > 0, name  # fmt: skip
    # Resume: the trial CSV is reused, so a model that would fail is never called.
    monkeypatch.setattr(B, "evaluate_dataset", lambda *a, **k: (_ for _ in ()).throw(AssertionError("rerun")))
    again = B.run_benchmark(["toy_model"], tmp_path / "data", out, human_data=tmp_path / "raw")
    pd.testing.assert_frame_equal(again.per_dataset, res.per_dataset)
    with pytest.raises(AssertionError, match="rerun"):  # other settings: the stale trials are not reused
        B.run_benchmark(["toy_model"], tmp_path / "data", out, human_data=tmp_path / "raw", aggregation="sum")
    with pytest.raises(AssertionError, match="rerun"):  # another preprocessing (--crop-pct): not reused either
        B.run_benchmark(["toy_model"], tmp_path / "data", out, human_data=tmp_path / "raw",
                        preprocessing_overrides={"crop_pct": 0.9})  # fmt: skip
    assert (
        json.loads(out.joinpath("raw-data", "uniform-noise", "uniform-noise_toy-model_session_1.json").read_text())[
            "preprocessing"
        ]["resize_size"]
        == 256
    )
    # A folder that lacks images the humans saw is refused (the integrity check of release tarballs).
    next((tmp_path / "data" / "uniform-noise" / "dnn" / "session-1").glob("*_0.2_*")).unlink()
    monkeypatch.setattr(B, "evaluate_dataset", fake_evaluate)
    with pytest.raises(DataError, match="no model trial"):
        B.run_benchmark(["toy_model"], tmp_path / "data", tmp_path / "out2", human_data=tmp_path / "raw")


def test_leaderboard_averages_over_datasets() -> None:
    per = pd.DataFrame(
        [
            {"subj": "m", "dataset": "edge", "ood_accuracy": 0.2, "accuracy_difference": 0.1,
             "observed_consistency": 0.5, "error_consistency": 0.1},
            {"subj": "m", "dataset": "silhouette", "ood_accuracy": 0.6, "accuracy_difference": 0.3,
             "observed_consistency": 0.7, "error_consistency": 0.3},
            {"subj": "humans", "dataset": "edge", "ood_accuracy": 0.9, "accuracy_difference": 0.0,
             "observed_consistency": 0.9, "error_consistency": 0.4},
        ]
    )  # fmt: skip
    board = B.leaderboard(per).set_index("subj")
    assert board.loc["m", "ood_accuracy"] == pytest.approx(0.4)
    assert board.loc["m", "error_consistency"] == pytest.approx(0.2)
    assert board.loc["m", "n_datasets"] == 2 and board.index[0] == "humans"


def test_index_dataset_layouts(tmp_path: Path, shared_data: Path) -> None:
    edges = B.index_dataset(shared_data / "texture-vs-shape" / "stimuli" / "edges", "edge")
    assert len(edges) == 160 and {d.condition for d in edges} == {"0"}
    assert edges[0].imagename.startswith("0001_edg_dnn_0_airplane_00_airplane")
    # An extracted release tarball: <folder>/<name>/dnn/session-1/...
    session = tmp_path / "mvh" / "edge" / "edge" / "dnn" / "session-1"
    session.mkdir(parents=True)
    Image.new("RGB", (224, 224)).save(session / "0001_edg_dnn_0_oven_00_oven10.png")
    (idx,) = B.index_dataset(tmp_path / "mvh" / "edge", "edge")
    assert (idx.category, idx.condition, idx.session) == ("oven", "0", 1)
    with pytest.raises(DataError, match="16 categories"):
        B.index_dataset(tmp_path / "mvh", "edge")
    Image.new("RGB", (4, 4)).save(session / "0002_edg_dnn_0_zebra_00_zebra1.png")
    with pytest.raises(DataError, match="not one of the 16"):
        B.index_dataset(tmp_path / "mvh" / "edge", "edge")


def _recount(path: Path) -> dict[str, tuple[int, int]]:
    """Independent per-condition count with the csv module: condition → (correct, n)."""
    hits: Counter[str] = Counter()
    n: Counter[str] = Counter()
    for f in sorted(path.glob("*.csv")):
        with open(f, newline="") as fh:
            for row in csv.DictReader(fh):
                key = (
                    str(float(row["condition"]))
                    if row["condition"][0].isdigit() and "-" not in row["condition"]
                    else row["condition"].lower()
                )
                n[key] += 1
                hits[key] += row["object_response"] == row["category"]
    return {k: (hits[k], n[k]) for k in n}


# imgs/condition in MVH human data (DISTORTIONS.md §5) × subjects.
PER_CONDITION = {"colour": 640, "contrast": 160, "high-pass": 160, "low-pass": 160, "phase-scrambling": 160,
                 "power-equalisation": 560, "false-colour": 560, "rotation": 320, "eidolonI": 160, "eidolonII": 160,
                 "eidolonIII": 160, "uniform-noise": 160, "sketch": 800, "stylized": 800, "edge": 160,
                 "silhouette": 160, "cue-conflict": 1280}  # fmt: skip


def test_all_17_human_sets_give_per_condition_accuracies(shared_data: Path) -> None:
    raw = shared_data / "model-vs-human" / "raw-data"
    for name in B.MVH_DATASETS:
        humans = B.human_trials_for(name, raw)
        n_subj = humans["subj"].nunique()
        acc = B.accuracy_by_condition(humans.assign(subj="humans"), B.conditions_of(name))
        assert acc["condition"].tolist() == list(B.conditions_of(name)), name
        assert set(acc["n"]) == {PER_CONDITION[name] * n_subj}, name
        assert ((acc["accuracy"] > 0) & (acc["accuracy"] <= 1)).all(), name
    # Spot checks against an independent recount of the raw CSVs (4 subjects each).
    un = B.accuracy_by_condition(
        B.human_trials_for("uniform-noise", raw).assign(subj="h"), B.conditions_of("uniform-noise")
    )
    counts = _recount(raw / "uniform-noise")
    for cond, value in zip(un["condition"], un["accuracy"], strict=True):
        hits, n = counts[str(float(cond))]
        assert value == pytest.approx(hits / n)
    assert un.set_index("condition").loc["0.35", "accuracy"] == pytest.approx(255 / 640)  # 0.398 (G18: .456)
    ei = B.accuracy_by_condition(B.human_trials_for("eidolonI", raw).assign(subj="h"), B.conditions_of("eidolonI"))
    counts = _recount(raw / "eidolonI")
    assert ei.set_index("condition").loc["16-10-10", "accuracy"] == pytest.approx(counts["16-10-10"][0] / 640)


def test_excluded_conditions_match_reference() -> None:
    ex = B.EXCLUDED_CONDITIONS
    assert ex["high-pass"] == ("inf", "0.55", "0.45", "0.4")
    assert ex["eidolonIII"] == ("1-0-10", "16-0-10", "32-0-10", "64-0-10", "128-0-10")
    assert ex["uniform-noise"] == ("0.0", "0.6", "0.9") and ex["cue-conflict"] == ()
    assert sum(len(v) for v in ex.values()) == 1 + 3 + 4 + 3 + 3 + 1 + 1 + 1 + 3 + 4 + 5 + 3


def test_robustness_trials_and_curves(tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    for cat in ("cat", "dog"):
        (tmp_path / "clean" / cat).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 8, (240, 260, 3), dtype=np.uint8)).save(
                tmp_path / "clean" / cat / f"{i}.png"
            )
    kw = dict(levels=["0", "0.9"], seed=3, model=ColourCodedModel(), device="cpu", batch_size=3)
    trials = robustness_trials("toy", tmp_path / "clean", "uniform-noise", **kw)
    assert len(trials) == 8 and trials["condition"].tolist() == ["0.0"] * 4 + ["0.9"] * 4
    assert trials["imagename"].iloc[0] == "0001_nse_dnn_0.0_cat_00_0.png"
    # At 30 % contrast every grey value is ~0.35-0.65: the colour code reads 15 ("truck") for all.
    assert set(trials["object_response"].iloc[:4]) == {"truck"}
    again = robustness_trials("toy", tmp_path / "clean", "uniform-noise", **kw)
    pd.testing.assert_frame_equal(trials, again)  # seeded per image and level
    import texturebias.robustness.curves as R

    real = R.robustness_trials
    monkeypatch.setattr(R, "robustness_trials", lambda m, d, n, **k: real(m, d, n, **{**k, **kw}))
    res = run_robustness(["toy"], tmp_path / "clean", ["uniform-noise"], tmp_path / "out",
                         human_data=shared_data / "model-vs-human" / "raw-data")  # fmt: skip
    humans = res.accuracy[res.accuracy["subj"] == "humans"]
    assert len(humans) == 8 and humans.set_index("condition").loc["0.35", "accuracy"] == pytest.approx(255 / 640)
    assert (tmp_path / "out" / "uniform-noise_accuracy.png").is_file()
    assert (tmp_path / "out" / "uniform-noise" / "uniform-noise_toy_session_1.csv").is_file()
    with pytest.raises(DataError, match="class folders"):
        (tmp_path / "bad" / "zebra").mkdir(parents=True)
        robustness_trials("toy", tmp_path / "bad", "uniform-noise", **kw)


def test_release_registry_entries() -> None:
    from texturebias.data.datasets import get_dataset
    from texturebias.robustness.datafiles import G18_DATA_FILES

    for name in B.MVH_DATASETS:
        ds = get_dataset(f"mvh/{name}")
        (f,) = ds.files
        assert ds.url(f) == B.RELEASE_URL.format(name=name) and f.extract
        assert f.sha256 is None  # not knowable offline: recorded honestly, checked against the human trials
    spectrum = get_dataset("g18/power-spectrum").files[0]
    assert spectrum.sha256 == G18_DATA_FILES["mean_power_spectrum_grey.npy"].sha256
    assert not math.isnan(0.0)


class TenchFirst(nn.Module):
    """1000-way "model" ranking tench (0), goldfish (1), great white shark (2) first for every image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], 1000)
        logits[:, 0], logits[:, 1], logits[:, 2] = 2.0, 1.0, 0.5
        return logits


def test_robustness_imagenet_folder_top1_top5(tmp_path: Path) -> None:
    from texturebias.robustness.curves import imagenet_accuracy_by_condition

    for wnid in ("n01440764", "n01443537", "n01484850"):  # tench, goldfish, great white shark
        (tmp_path / wnid).mkdir()
        Image.new("RGB", (224, 224), (90, 120, 60)).save(tmp_path / wnid / "a.png")
    res = robustness_trials("toy", tmp_path, "rotation", levels=["0", "90"], model=TenchFirst(), device="cpu")
    acc = imagenet_accuracy_by_condition(res).set_index("condition")
    assert acc.loc["0", "top1"] == pytest.approx(1 / 3) and acc.loc["90", "n"] == 3
    assert acc.loc["0", "top5"] == 1.0 and acc.loc["90", "top5"] == 1.0
    assert res[res["category"] == "n01443537"]["top1"].tolist() == [0, 0]
    assert res["prediction"].tolist() == [0] * 6


@pytest.mark.parametrize(
    "argv",
    [
        ["shape-bias", "--stimuli", "{d}", "--out", "{d}/o"],
        ["robustness", "--data", "{d}", "--distortion", "contrast", "--out", "{d}/o"],
        ["benchmark", "--data", "{d}", "--out", "{d}/o"],
    ],
    ids=["shape-bias", "robustness", "benchmark"],
)
def test_one_checkpoint_with_several_models_is_refused_before_any_work(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from texturebias.cli import main

    ckpt = tmp_path / "w.pt"
    torch.save({}, ckpt)
    args = [a.replace("{d}", str(tmp_path)) for a in argv]
    code = main([*args, "--model", "resnet18", "--model", "alexnet", "--checkpoint", str(ckpt)])
    err = capsys.readouterr().err
    assert code == 2  # usage error (README: bad usage exits 2)
    assert "--checkpoint needs exactly one --model (got 2: resnet18, alexnet)" in err
    assert "Traceback" not in err and not (tmp_path / "o").exists()
