"""Logit correlation between two models: hand-checkable cases (identical, negated, numpy's corrcoef)."""

from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest
import torch

from texturebias.errors import DataError
from texturebias.evaluate.correlation import logit_correlation, pearson_rows
from texturebias.models.bagnet import BagNet


def test_pearson_rows_matches_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 30)), rng.normal(size=(5, 30))
    expected = [np.corrcoef(a[i], b[i])[0, 1] for i in range(5)]
    np.testing.assert_allclose(pearson_rows(torch.tensor(a), torch.tensor(b)).numpy(), expected, rtol=1e-12)
    assert torch.isnan(pearson_rows(torch.ones(1, 4), torch.arange(4.0).view(1, 4)))[0]


def test_identical_and_negated_models(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (30 + i, 40, 3), dtype=np.uint8)).save(
            tmp_path / "imgs" / "sub" / f"{i}.png"
        )
    (tmp_path / "imgs" / "bad.png").write_bytes(b"\x89PNG broken")
    torch.manual_seed(0)
    a = BagNet(widths=(4,), blocks=(1,), kernel3=(1,), strides=(2,), num_classes=10, in_stem=4).eval()
    neg = copy.deepcopy(a)
    with torch.no_grad():
        neg.fc.weight.neg_()
        neg.fc.bias.neg_()
    same = logit_correlation(tmp_path / "imgs", tmp_path / "same", model_a=a, model_b=a, batch_size=2)
    assert same.n_images == 5 and same.n_skipped == 1
    assert same.mean_r == pytest.approx(1.0) and same.top1_agreement == 1.0 and same.sd_r == pytest.approx(0, abs=1e-9)
    opp = logit_correlation(tmp_path / "imgs", tmp_path / "neg", model_a=a, model_b=neg)
    assert opp.mean_r == pytest.approx(-1.0) and opp.top1_agreement == 0.0
    assert sum(opp.histogram_counts) == 5 and opp.histogram_counts[0] == 5
    summary = json.loads((tmp_path / "neg" / "correlation.json").read_text())
    assert summary["mean_r"] == pytest.approx(-1.0) and summary["n_skipped"] == 1
    rows = list(csv.DictReader(open(tmp_path / "neg" / "correlation.csv")))
    assert len(rows) == 5 and all(r["agree"] == "0" for r in rows)
    assert (tmp_path / "neg" / "correlation.png").is_file() and (tmp_path / "neg" / "correlation.pdf").is_file()
    skipped = list(csv.DictReader(open(tmp_path / "neg" / "skipped.csv")))
    assert [r["image"].endswith("bad.png") for r in skipped] == [True]


def test_empty_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no images"):
        logit_correlation(tmp_path, tmp_path / "out", model_a=torch.nn.Identity(), model_b=torch.nn.Identity())
