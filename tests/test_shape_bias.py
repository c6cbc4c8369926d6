"""Shape bias, error consistency and the cue-conflict evaluation (REFERENCE §3), end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from texturebias.cli import main
from texturebias.errors import DataError
from texturebias.evaluate.metrics import (
    analyze_trials,
    average_consistency,
    bootstrap_shape_bias,
    cohens_kappa,
    consistency_table,
    expected_consistency,
    human_human_consistency,
    observed_consistency,
    shape_bias,
)
from texturebias.evaluate.trials import TRIAL_COLUMNS, read_trials, write_trials

HUMAN_PER_CATEGORY = {
    "airplane": 0.893, "bear": 0.935, "bicycle": 0.997, "bird": 0.968, "boat": 0.872, "bottle": 0.987,
    "car": 0.974, "cat": 0.959, "chair": 0.991, "clock": 0.996, "dog": 0.941, "elephant": 0.963,
    "keyboard": 0.942, "knife": 0.891, "oven": 0.968, "truck": 0.983,
}  # fmt: skip


def _trials(rows: list[tuple[str, str, str, str]], condition: str = "0") -> pd.DataFrame:
    """(subj, category, response, stimulus) → trial table."""
    return pd.DataFrame(
        [
            {"subj": s, "session": 1, "trial": i + 1, "rt": math.nan, "object_response": r, "category": c,
             "condition": condition, "imagename": f"{i + 1:04d}_s5n_s01_0_{c}_00_{stim}"}
            for i, (s, c, r, stim) in enumerate(rows)
        ],
        columns=list(TRIAL_COLUMNS),
    )  # fmt: skip


HAND = [
    ("s1", "bird", "bird", "bird1-cat2.png"),  # shape
    ("s1", "bird", "clock", "bird1-clock1.png"),  # texture
    ("s1", "cat", "cat", "cat1-bird1.png"),  # shape
    ("s1", "cat", "cat", "cat2-cat3.png"),  # shape = texture: excluded
    ("s1", "dog", "na", "dog1-knife1.png"),  # no response: other
    ("s1", "dog", "truck", "dog2-bear1.png"),  # another class: other
    ("s2", "bird", "cat", "bird1-cat2.png"),  # texture
    ("s2", "cat", "bird", "cat1-bird1.png"),  # texture
    ("s2", "bird", "clock", "bird1-clock1.png"),  # texture
    ("s2", "dog", "knife", "dog1-knife1.png"),  # texture
]


def test_formula_on_hand_made_tables() -> None:
    t = _trials(HAND)
    s1 = shape_bias(t[t.subj == "s1"])
    assert (s1.n_shape, s1.n_texture, s1.n_other, s1.n_excluded) == (2, 1, 2, 1)
    assert s1.shape_bias == pytest.approx(2 / 3)
    assert s1.per_category["bird"] == pytest.approx(0.5) and s1.per_category["cat"] == 1.0
    assert math.isnan(s1.per_category["dog"]) and math.isnan(s1.per_category["oven"])
    assert shape_bias(t[t.subj == "s2"]).shape_bias == 0.0
    pooled = shape_bias(t)  # pooled trials, not the mean of subject ratios (which would be 1/3)
    assert (pooled.n_shape, pooled.n_texture, pooled.n_other) == (2, 5, 2)
    assert pooled.shape_bias == pytest.approx(2 / 7)
    only_other = shape_bias(_trials([("s", "dog", "na", "dog1-knife1.png")]))
    assert math.isnan(only_other.shape_bias) and only_other.to_dict()["shape_bias"] is None


def test_humans_reproduce_published_values(shared_data) -> None:
    trials = read_trials(shared_data / "texture-vs-shape" / "raw-data" / "style-transfer-512-nomask-experiment")
    r = shape_bias(trials)
    assert (r.n_shape, r.n_texture, r.n_other) == (9236, 398, 2366)
    assert round(r.shape_bias, 4) == 0.9587
    assert {c: round(v, 3) for c, v in r.per_category.items()} == HUMAN_PER_CATEGORY
    per_subject = [shape_bias(g).shape_bias for _, g in trials.groupby("subj")]
    assert len(per_subject) == 10 and round(float(np.mean(per_subject)), 4) == 0.9576
    lo, hi = bootstrap_shape_bias(trials, n_boot=2000, seed=0)
    assert lo < r.shape_bias < hi and hi - lo < 0.03
    assert bootstrap_shape_bias(trials, n_boot=2000, seed=0) == (lo, hi)  # deterministic


def test_kappa_hand_computed_case() -> None:
    a = [1, 1, 1, 1, 0, 0, 0, 0, 1, 1]
    b = [1, 1, 1, 0, 0, 0, 1, 1, 1, 0]
    # p1 = p2 = 0.6; c_obs = 6/10; c_exp = 0.36 + 0.16 = 0.52; kappa = 0.08 / 0.48 = 1/6
    assert observed_consistency(a, b) == pytest.approx(0.6)
    assert expected_consistency(0.6, 0.6) == pytest.approx(0.52)
    assert cohens_kappa(a, b) == pytest.approx(1 / 6)
    assert cohens_kappa(a, a) == 1.0
    # complement: p2 = 0.4, c_obs = 0, c_exp = 0.48 -> kappa = -0.48 / 0.52
    assert cohens_kappa(a, [1 - x for x in a]) == pytest.approx(-12 / 13)
    assert cohens_kappa([1, 1], [1, 1]) == 1.0  # c_exp = 1: perfect agreement by convention


def test_consistency_pairs_by_image_and_averages() -> None:
    a = [1, 1, 1, 1, 0, 0, 0, 0, 1, 1]
    b = [1, 1, 1, 0, 0, 0, 1, 1, 1, 0]
    stims = [f"cat{i}-bird1.png" for i in range(10)]
    human = _trials([("subject-01", "cat", "cat" if x else "bird", s) for x, s in zip(a, stims, strict=True)])
    human2 = _trials([("subject-02", "cat", "cat", s) for s in stims[:5]])  # saw only half the images
    rows = [("resnet", "cat", "cat" if x else "dog", s) for x, s in zip(b, stims, strict=True)][::-1]  # other order
    model = _trials(rows + [("resnet", "cat", "cat", "cat99-bird1.png")])  # an image no human saw
    table = consistency_table(model, pd.concat([human, human2]))
    row1 = table[table.subj == "subject-01"].iloc[0]
    assert (row1.n, row1.acc_model, row1.acc_human) == (10, 0.6, 0.6)
    assert row1.kappa == pytest.approx(1 / 6) and row1.observed == pytest.approx(0.6)
    assert row1.accuracy_difference == 0.0
    row2 = table[table.subj == "subject-02"].iloc[0]
    assert row2.n == 5 and row2.acc_model == pytest.approx(0.6) and row2.observed == pytest.approx(0.6)
    avg = average_consistency(table)
    assert avg["observed_consistency"] == pytest.approx(0.6) and avg["n_subjects"] == 2
    assert avg["accuracy_difference"] == pytest.approx(0.16 / 2)  # (0.6 - 1.0)^2 for subject-02
    with pytest.raises(DataError, match="share no images"):  # "0.0" excludes condition "0": nothing left
        consistency_table(model, human, excluded_conditions=["0.0"])


def test_human_baseline_on_cue_conflict(shared_data) -> None:
    trials = read_trials(shared_data / "texture-vs-shape" / "raw-data" / "style-transfer-512-nomask-experiment")
    base = human_human_consistency(trials)
    assert base["n_pairs"] == 45
    assert 0.2 < base["error_consistency"] < 0.5 and 0.7 < base["observed_consistency"] < 0.85


def test_analyze_cli_table_and_json(shared_data, tmp_path, capsys) -> None:
    write_trials(tmp_path / "hand.csv", _trials(HAND))
    human_dir = shared_data / "texture-vs-shape" / "raw-data" / "style-transfer-512-nomask-experiment"
    assert main(["analyze", str(human_dir), str(tmp_path / "hand.csv"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["humans", "s1", "s2"]
    assert round(out["humans"]["shape_bias"], 4) == 0.9587
    assert out["humans"]["n_other"] == 2366 and out["humans"]["per_category"]["boat"] == pytest.approx(0.872, abs=5e-4)
    assert out["s1"] == {**analyze_trials([tmp_path / "hand.csv"])["s1"].to_dict()}
    assert out["s1"]["per_category"]["dog"] is None
    assert main(["analyze", str(human_dir)]) == 0
    assert "0.9587" in capsys.readouterr().out
    assert main(["analyze", str(tmp_path / "nope.csv")]) == 1


def test_figures_written(tmp_path) -> None:
    from texturebias.evaluate.figures import plot_shape_bias_matrix, plot_shape_bias_summary

    t = _trials(HAND)
    results = {"humans": shape_bias(t[t.subj == "s1"]), "model": shape_bias(t[t.subj == "s2"])}
    files = plot_shape_bias_matrix(results, tmp_path / "m") + plot_shape_bias_summary(
        results, tmp_path / "s", ci={"model": (0.0, 0.1)}
    )
    assert [f.name for f in files] == ["m.png", "m.pdf", "s.png", "s.pdf"]
    for f in files:
        head = f.read_bytes()[:5]
        assert head in (b"\x89PNG\r", b"%PDF-")
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def _small_stimuli(shared_data, tmp_path):
    src = shared_data / "texture-vs-shape" / "stimuli" / "style-transfer-preprocessed-512"
    dst = tmp_path / "stimuli"
    picks = {"bird": ["bird1-airplane2.png", "bird1-bear1.png"], "cat": ["cat1-airplane1.png", "cat1-bird1.png"]}
    for cat, names in picks.items():
        (dst / cat).mkdir(parents=True)
        for n in names:
            (dst / cat / n).symlink_to(src / cat / n)
    return dst


def test_shape_bias_cli_small_and_resumable(shared_data, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TEXTUREBIAS_DATA", str(shared_data))
    stimuli = _small_stimuli(shared_data, tmp_path)
    out = tmp_path / "out"
    args = ["shape-bias", "--stimuli", str(stimuli), "--out", str(out), "--sets", "cue-conflict",
            "--bootstrap", "200", "--no-download", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "humans" in text and "efficientnet_lite0" in text
    csv = out / "efficientnet_lite0" / "cue-conflict_efficientnet_lite0_session-1.csv"
    trials = read_trials(csv)
    assert len(trials) == 4 and trials["subj"].unique().tolist() == ["efficientnet_lite0"]
    assert trials["imagename"].iloc[0] == "0001_s5n_dnn_0_bird_00_bird1-airplane2.png"
    summary = json.loads((out / "efficientnet_lite0" / "summary.json").read_text())
    assert summary["n_shape"] + summary["n_texture"] + summary["n_other"] == 4
    assert summary["aggregation"] == "mean" and len(summary["shape_bias_ci95"]) == 2
    assert set(summary["consistency"]["cue-conflict"]) == {"model_vs_humans", "human_vs_human"}
    results = json.loads((out / "results.json").read_text())
    assert round(results["humans"]["shape_bias"], 4) == 0.9587
    for f in ("shape-bias-matrix.png", "shape-bias-matrix.pdf", "shape-bias-summary.png", "shape-bias-summary.pdf"):
        assert (out / f).stat().st_size > 1000
    mtime = csv.stat().st_mtime_ns
    assert main([*args, "--no-humans"]) == 0  # same configuration: trials reused, not recomputed
    assert csv.stat().st_mtime_ns == mtime
    assert main([*args, "--no-humans", "--aggregation", "sum"]) == 0  # another configuration: recomputed
    assert csv.stat().st_mtime_ns != mtime
    mtime = csv.stat().st_mtime_ns
    assert main([*args, "--no-humans", "--aggregation", "sum", "--mean", "0.5", "0.5", "0.5"]) == 0  # other mean
    assert csv.stat().st_mtime_ns != mtime
    config = json.loads((out / "efficientnet_lite0" / ".cue-conflict.config.json").read_text())
    assert config["preprocessing"]["mean"] == [0.5, 0.5, 0.5] and config["preprocessing"]["resize_size"] == 256


def test_shape_bias_cli_errors(tmp_path, capsys) -> None:
    assert main(["shape-bias", "--stimuli", str(tmp_path / "missing"), "--no-download"]) == 1
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad" / "zebra"
    bad.mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (224, 224)).save(bad / "zebra1-cat1.png")
    assert main(["shape-bias", "--stimuli", str(tmp_path / "bad"), "--no-download", "--no-humans"]) == 1
    assert "16 categories" in capsys.readouterr().err
    args = ["shape-bias", "--model", "efficientnet_lite0", "--model", "efficientnet_lite1", "--checkpoint", "x.pth"]
    assert main(args) == 2  # bad usage (README: exit 2)


@pytest.mark.slow
def test_efficientnet_lite0_on_the_real_1280_stimuli(shared_data, tmp_path) -> None:
    """End to end on all 1,280 cue-conflict stimuli (real offline weights; ~1–3 min on 2 free cores)."""
    from texturebias.evaluate.cue_conflict import evaluate_shape_bias

    r = evaluate_shape_bias(
        "efficientnet_lite0", stimuli=shared_data, out_dir=tmp_path, sets=("cue-conflict",), n_boot=1000,
        batch_size=64, device="cpu", human_consistency=False, download=False,
    )  # fmt: skip
    trials = read_trials(r.files["cue-conflict"])
    assert len(trials) == 1280 and r.shape.n_excluded == 80 and r.shape.n_conflict == 1200
    # Measured with this code (fp32, mean aggregation): 197 shape, 622 texture, 381 other -> 0.2405,
    # bootstrap 95 % CI [0.212, 0.270]; 16-class accuracy on the shape label 0.209.
    assert abs(r.shape.n_shape - 197) <= 3 and abs(r.shape.n_texture - 622) <= 3
    assert r.shape.shape_bias == pytest.approx(0.2405, abs=0.004)
    assert r.ci[0] < r.shape.shape_bias < r.ci[1] and r.ci[1] - r.ci[0] < 0.08
    assert r.accuracy["cue-conflict"] == pytest.approx(0.209, abs=0.004)
    assert r.shape.per_category["clock"] > 0.6 and r.shape.per_category["bird"] < 0.1
    summary = json.loads((tmp_path / "efficientnet_lite0" / "summary.json").read_text())
    assert summary["n_shape"] == r.shape.n_shape and summary["shape_bias_ci95"] == list(r.ci)


def test_bootstrap_reuses_its_draws_without_changing_them(shared_data) -> None:
    from texturebias.evaluate import metrics
    from texturebias.utils.seed import rng_for

    humans = read_trials(shared_data / "texture-vs-shape" / "raw-data" / "style-transfer-512-nomask-experiment")
    one = humans[humans["subj"] == "subject-01"]
    metrics._resample_counts.cache_clear()
    ci_humans = bootstrap_shape_bias(humans, n_boot=2500, seed=3)
    ci_one = bootstrap_shape_bias(one, n_boot=2500, seed=3)
    # The same 1,280 images and seed: the second decision maker reuses the first one's draws.
    assert metrics._resample_counts.cache_info().hits == 1
    # The reference: the multinomial draws made chunk by chunk, as before the draws were kept.
    for trials, ci in ((humans, ci_humans), (one, ci_one)):
        df = metrics.cue_conflict_table(trials)
        per_image = df.assign(key=df["imagename"].map(lambda n: n.split("_")[-1])).groupby("key")["decision"]
        s = per_image.apply(lambda d: (d == "shape").sum()).to_numpy(float)
        t = per_image.apply(lambda d: (d == "texture").sum()).to_numpy(float)
        rng = rng_for("bootstrap_shape_bias", 3)
        p = np.full(len(s), 1 / len(s))
        draws = np.concatenate([rng.multinomial(len(s), p, size=m) for m in (1000, 1000, 500)])
        stats = (draws @ s) / (draws @ s + draws @ t)
        assert ci == tuple(np.quantile(stats, [0.025, 0.975]))
    assert ci_humans != ci_one
    assert all(not chunk.flags.writeable for chunk in metrics._resample_counts(len(s), 2500, 3))
    # Pinned: the published humans CI at the default 10,000 resamples (results.json, docs).
    assert bootstrap_shape_bias(humans) == (0.9523757450299821, 0.9648542897590627)
