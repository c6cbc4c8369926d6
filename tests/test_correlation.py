"""Logit correlation between two models: hand-checkable cases (identical, negated, numpy's corrcoef)."""

from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest
import torch

from texturebias.errors import DataError
from texturebias.explain.correlation import logit_correlation, pearson_rows
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


class _Flaky(torch.nn.Module):
    """Wraps a model; raises on forward call number ``fail_at`` (an interruption), counts the calls."""

    def __init__(self, inner: torch.nn.Module, fail_at: int | None = None) -> None:
        super().__init__()
        self.inner, self.fail_at, self.calls = inner, fail_at, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise KeyboardInterrupt
        return self.inner(x)


def test_interrupted_run_resumes_with_only_the_missing_images(tmp_path):
    from PIL import Image

    from texturebias.errors import TextureBiasError

    rng = np.random.default_rng(1)
    (tmp_path / "imgs").mkdir()
    for i in range(7):
        Image.fromarray(rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    torch.manual_seed(0)
    a = BagNet(widths=(4,), blocks=(1,), kernel3=(1,), strides=(2,), num_classes=10, in_stem=4).eval()
    torch.manual_seed(1)
    b = BagNet(widths=(4,), blocks=(1,), kernel3=(1,), strides=(2,), num_classes=10, in_stem=4).eval()

    full = logit_correlation(tmp_path / "imgs", tmp_path / "full", model_a=a, model_b=_Flaky(b), batch_size=2)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):  # dies in the third batch: images 0-3 are journaled
        logit_correlation(tmp_path / "imgs", out, model_a=a, model_b=_Flaky(b, fail_at=3), batch_size=2)
    assert not (out / "correlation.csv").exists()
    assert len(list(csv.DictReader(open(out / "correlation.partial.csv")))) == 4

    # Other settings are refused instead of being mixed in.
    with pytest.raises(TextureBiasError, match="other settings"):
        logit_correlation(tmp_path / "imgs", out, model_a=a, model_b=b, batch_size=2)

    # A damaged settings file is refused the same way (one message, no traceback).
    saved = (out / "correlation.partial.json").read_text()
    (out / "correlation.partial.json").write_text("{not json")
    with pytest.raises(TextureBiasError, match="other settings"):
        logit_correlation(tmp_path / "imgs", out, model_a=a, model_b=_Flaky(b), batch_size=2)
    (out / "correlation.partial.json").write_text(saved)

    healthy = _Flaky(b)
    resumed = logit_correlation(tmp_path / "imgs", out, model_a=a, model_b=healthy, batch_size=2)
    assert healthy.calls == 2  # images 4-6 only
    assert resumed.n_images == full.n_images == 7
    assert resumed.top1_agreement == full.top1_agreement
    assert resumed.mean_r == pytest.approx(full.mean_r, abs=1e-9)
    rows_full = list(csv.DictReader(open(tmp_path / "full" / "correlation.csv")))
    rows_res = list(csv.DictReader(open(out / "correlation.csv")))
    assert [r["image"] for r in rows_res] == [r["image"] for r in rows_full]  # input order, not resume order
    for x, y in zip(rows_full, rows_res, strict=True):
        assert abs(float(x["pearson_r"]) - float(y["pearson_r"])) <= 1e-6
    assert not (out / "correlation.partial.csv").exists() and not (out / "correlation.partial.json").exists()
