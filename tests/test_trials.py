"""The trial-CSV reader/writer on all human data sets of texture-vs-shape and model-vs-human."""

from __future__ import annotations

import math
import os

import pandas as pd
import pytest

from texturebias.data.labels import CATEGORIES, stimulus_name, texture_category
from texturebias.errors import DataError
from texturebias.evaluate.trials import (
    TRIAL_COLUMNS,
    canonical_condition,
    canonical_conditions,
    check_categories,
    decision_makers,
    image_key,
    image_keys,
    is_human,
    load_human_trials,
    model_imagename,
    read_trials,
    write_trials,
)

# rows, number of "na" responses (each with NaN rt) per data set — counted with grep/awk on the raw files.
MVH_ROWS = {
    "colour": (5120, 26), "contrast": (5120, 18), "cue-conflict": (12800, 131), "edge": (1600, 34),
    "eidolonI": (5120, 47), "eidolonII": (5120, 33), "eidolonIII": (5120, 31), "false-colour": (4480, 15),
    "high-pass": (5120, 44), "low-pass": (5120, 24), "phase-scrambling": (4480, 37),
    "power-equalisation": (4480, 17), "rotation": (5120, 28), "silhouette": (1600, 22), "sketch": (5600, 40),
    "stylized": (4000, 12), "uniform-noise": (5120, 38),
}  # fmt: skip


def test_reads_all_17_model_vs_human_sets(shared_data) -> None:
    root = shared_data / "model-vs-human" / "raw-data"
    assert sorted(p.name for p in root.iterdir()) == sorted(MVH_ROWS)
    for name, (rows, n_na) in MVH_ROWS.items():
        t = read_trials(root / name)
        assert list(t.columns) == list(TRIAL_COLUMNS), name  # "Session" header read case-insensitively
        assert len(t) == rows, name
        assert (t["object_response"] == "na").sum() == n_na, name
        assert t["rt"].isna().sum() == n_na, name  # NaN rt exactly on the "na" trials
        assert t["rt"].dtype == float and t["session"].dtype.kind == "i"
        check_categories(t, CATEGORIES, what=name)
        assert all(is_human(s) for s in t["subj"])
        # every imagename pairs: its condition field equals the condition column
        assert all(
            image_key(c, n).startswith(canonical_condition(c)) for c, n in zip(t.condition, t.imagename, strict=True)
        )


def test_conditions_stay_strings(shared_data) -> None:
    t = read_trials(shared_data / "model-vs-human" / "raw-data" / "uniform-noise")
    assert set(t["condition"]) >= {"0.00", "0.03", "0.90"}  # verbatim, not parsed to floats
    t = read_trials(shared_data / "model-vs-human" / "raw-data" / "false-colour")
    assert set(t["condition"]) == {"true", "false"}


def test_reads_texture_vs_shape_raw_data(shared_data) -> None:
    root = shared_data / "texture-vs-shape" / "raw-data"
    t = read_trials([root / "style-transfer-512-nomask-experiment", root / "edge-experiment"])
    assert len(t) == 12800 + 1600
    assert decision_makers(t)[:2] == ["subject-01", "subject-02"]
    first = t.iloc[0]
    assert (first.subj, first.session, first.trial, first.object_response, first.category) == (
        "subject-01", 1, 1, "bird", "bird",
    )  # fmt: skip
    assert first.rt == pytest.approx(1.13377118110657)


def test_case_insensitive_headers_and_roundtrip(tmp_path) -> None:
    f = tmp_path / "x.csv"
    f.write_text(
        "SUBJ,Session,Trial,RT,Object_Response,Category,Condition,ImageName\n"
        "subject-01,1,1,0.5,Bird,bird,0,0001_s5n_s01_0_bird_00_bird3-clock2.png\n"
        "subject-01,1,2,NaN,na,cat,0,0002_s5n_s01_0_cat_00_cat1-cat2.png\n"
    )
    t = read_trials(f)
    assert list(t.columns) == list(TRIAL_COLUMNS)
    assert t["object_response"].tolist() == ["bird", "na"]
    assert math.isnan(t["rt"].iloc[1])
    out = write_trials(tmp_path / "out" / "y.csv", t)
    text = out.read_text().splitlines()
    assert text[0] == ",".join(TRIAL_COLUMNS)
    assert text[2] == "subject-01,1,2,NaN,na,cat,0,0002_s5n_s01_0_cat_00_cat1-cat2.png"
    pd.testing.assert_frame_equal(read_trials(out), t)


def test_reader_errors(tmp_path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_trials(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="no .csv"):
        read_trials(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("subj,session,trial,rt,object_response,category,imagename\nsubject-01,1,1,1,cat,cat,a.png\n")
    with pytest.raises(DataError, match="missing column.*condition"):
        read_trials(bad)
    bad.write_text(",".join(TRIAL_COLUMNS) + "\nsubject-01,1,1,fast,cat,cat,0,a.png\n")
    with pytest.raises(DataError, match="row 2: rt 'fast'"):
        read_trials(bad)
    with pytest.raises(DataError):
        read_trials([])


def test_name_helpers() -> None:
    assert stimulus_name("0001_s5n_s01_0_bird_00_bird3-bird2.png") == "bird3-bird2.png"
    assert stimulus_name("0001_hp_s01_0.7_boat_10_n03662601_12531.png") == "n03662601_12531.png"
    assert stimulus_name("0003_s5n_dnn_0_cat_00_cat1-airplane1.png") == "cat1-airplane1.png"
    assert stimulus_name("bird/bird3-bird2.png") == "bird3-bird2.png"
    assert texture_category("0002_s5n_s01_0_bird_00_bird2-clock3.png") == "clock"
    assert texture_category("knife10-elephant1.png") == "elephant"
    assert texture_category("0001_edg_s01_0_oven_00_oven10.png") == "oven"
    assert canonical_condition("0.60") == canonical_condition(0.6) == "0.6"
    assert canonical_condition("0.00") == canonical_condition(0) == "0"
    assert canonical_condition("inf") == "inf" and canonical_condition("True") == "true"
    assert canonical_condition("1-10-10") == "1-10-10" and canonical_condition("c03") == "c03"
    name = model_imagename(3, "s5n", 0, "cat", "cat1-airplane1.png")
    assert name == "0003_s5n_dnn_0_cat_00_cat1-airplane1.png"
    assert image_key(0, name) == image_key("0", "0007_s5n_s04_0_cat_00_cat1-airplane1.png")
    assert is_human("subject-10") and not is_human("resnet50")


def test_table_helpers_match_the_scalar_ones() -> None:
    conditions = pd.Series(["0.60", "0.6", "0", True, 1, 1.0, "True"], dtype=object)
    assert canonical_conditions(conditions) == [canonical_condition(c) for c in conditions]
    assert canonical_conditions([True, 1]) == ["true", "1"]  # equal and hashing alike, still told apart
    names = pd.Series([f"000{i}_s5n_s01_0_cat_00_cat{i}-dog1.png" for i in range(3)], dtype="string")
    conds = pd.Series(["0.0", "0", "0.5"], dtype="string")
    assert image_keys(conds, names) == [image_key(c, n) for c, n in zip(conds, names, strict=True)]
    assert image_keys(conds, names)[1] == "0|cat1-dog1.png"


def test_human_trials_are_read_once_per_file_version(tmp_path) -> None:
    from texturebias.evaluate import trials as trials_module

    def rows(response: str) -> pd.DataFrame:
        return pd.DataFrame(
            [{"subj": subj, "session": 1, "trial": 1, "rt": 0.5, "object_response": response, "category": "cat",
              "condition": "0", "imagename": "0001_s5n_s01_0_cat_00_cat1-dog1.png"}
             for subj in ("subject-01", "resnet50")]
        )  # fmt: skip

    csv = tmp_path / "humans.csv"
    write_trials(csv, rows("cat"))
    calls = []
    real = trials_module.read_trials
    trials_module.read_trials = lambda p: calls.append(p) or real(p)
    try:
        first = load_human_trials("cue-conflict-humans", tmp_path)
        first.loc[0, "object_response"] = "dog"  # a caller's edit does not reach the kept copy
        second = load_human_trials("cue-conflict-humans", tmp_path)
        assert len(calls) == 1 and list(second["subj"]) == ["subject-01"]
        assert second.loc[0, "object_response"] == "cat"
        write_trials(csv, rows("dog"))
        os.utime(csv, ns=(csv.stat().st_atime_ns, csv.stat().st_mtime_ns + 10**9))  # an edit within the same tick
        third = load_human_trials("cue-conflict-humans", tmp_path)
        assert len(calls) == 2 and third.loc[0, "object_response"] == "dog"
    finally:
        trials_module.read_trials = real
