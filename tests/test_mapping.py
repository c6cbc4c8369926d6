"""16-class decision mapping (REFERENCE §3): the 207 ImageNet indices as data, aggregation, user mappings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from texturebias.data.labels import CATEGORIES, class_name
from texturebias.errors import DataError
from texturebias.evaluate.mapping import (
    IMAGENET_16_INDICES,
    identity_mapping,
    imagenet_mapping,
    load_mapping,
    logits_to_decisions,
    resolve_mapping,
)

EXPECTED_COUNTS = {
    "airplane": 1, "bear": 4, "bicycle": 2, "bird": 49, "boat": 5, "bottle": 7, "car": 3, "cat": 6,
    "chair": 4, "clock": 3, "dog": 109, "elephant": 2, "keyboard": 2, "knife": 1, "oven": 1, "truck": 8,
}  # fmt: skip


def test_categories_alphabetical_and_counts() -> None:
    assert CATEGORIES == tuple(sorted(CATEGORIES)) and len(CATEGORIES) == 16
    assert {c: len(v) for c, v in IMAGENET_16_INDICES.items()} == EXPECTED_COUNTS
    all_indices = [i for v in IMAGENET_16_INDICES.values() for i in v]
    assert len(all_indices) == 207 and len(set(all_indices)) == 207  # no overlap


def test_indices_are_the_published_lists() -> None:
    m = IMAGENET_16_INDICES
    assert m["airplane"] == (404,) and m["knife"] == (499,) and m["oven"] == (766,)
    assert m["bear"] == (294, 295, 296, 297) and m["cat"] == tuple(range(281, 287))
    assert m["truck"] == (555, 569, 656, 675, 717, 734, 864, 867)
    # Hand-removed classes stay removed: bird 9 (ostrich) / 17 (jay), dog 192, 204, 227, 242, 251, 258, 260, 264.
    assert 9 not in m["bird"] and 17 not in m["bird"] and 134 not in m["bird"]
    assert not {192, 204, 227, 242, 251, 258, 260, 264} & set(m["dog"])
    assert min(m["dog"]) == 152 and max(m["dog"]) == 268
    assert class_name(404) == "airliner" and class_name(499) == "cleaver"


def test_aggregation_mean_sum_max_differ_as_documented() -> None:
    p = np.zeros((1, 1000))
    p[0, 404] = 0.2  # airplane: one class
    p[0, list(IMAGENET_16_INDICES["dog"])] = 0.005  # dog: 109 small classes, sum 0.545
    m = imagenet_mapping()
    assert m.decide(p, "mean") == ["airplane"]
    assert m.decide(p, "sum") == ["dog"]
    assert m.decide(p, "max") == ["airplane"]
    scores = m.aggregate(p, "mean")
    assert scores.shape == (1, 16)
    assert scores[0, CATEGORIES.index("dog")] == pytest.approx(0.005)
    assert m.aggregate(p, "sum")[0, CATEGORIES.index("dog")] == pytest.approx(0.545)
    with pytest.raises(ValueError):
        m.aggregate(p, "median")  # type: ignore[arg-type]


def test_logits_softmax_over_all_outputs() -> None:
    logits = torch.zeros(2, 1000)
    logits[0, 499] = 5.0  # knife
    logits[1, 281] = 3.0  # cat
    decisions, scores = logits_to_decisions(logits, imagenet_mapping())
    assert decisions == ["knife", "cat"]
    p_knife = np.exp(5) / (np.exp(5) + 999)
    assert scores[0, CATEGORIES.index("knife")] == pytest.approx(p_knife)


def test_identity_mapping_for_16_way_heads() -> None:
    m = resolve_mapping(None, 16)
    assert m.name == "identity16" and m.categories == CATEGORIES
    logits = torch.full((1, 16), -1.0)
    logits[0, CATEGORIES.index("truck")] = 2.0
    assert logits_to_decisions(logits, m)[0] == ["truck"]
    assert resolve_mapping("auto", 1000).name == "imagenet16"
    with pytest.raises(DataError, match="mapping file"):
        resolve_mapping(None, 10)
    with pytest.raises(DataError, match="needs 1000 outputs"):
        resolve_mapping("imagenet16", 16)
    assert identity_mapping().num_outputs == 16


def test_user_json_mapping(tmp_path) -> None:
    spec = {c: [2 * i, 2 * i + 1] for i, c in enumerate(reversed(CATEGORIES))}
    f = tmp_path / "things.json"
    f.write_text(json.dumps(spec))
    m = resolve_mapping(f, 40)
    assert m.categories == CATEGORIES  # column order follows the 16 categories, not the file
    p = np.zeros((1, 40))
    p[0, 1] = 1.0  # index 1 belongs to the first entry of the file: truck
    assert m.decide(p) == ["truck"]
    with pytest.raises(DataError, match="outside"):
        load_mapping(f, num_outputs=20)
    f.write_text(json.dumps({**spec, "zebra": [39]}))
    with pytest.raises(DataError, match="unknown categories"):
        load_mapping(f, num_outputs=40)
    f.write_text(json.dumps({**spec, "truck": [2]}))  # 2 already belongs to another category
    with pytest.raises(DataError, match="both"):
        load_mapping(f, num_outputs=40)
    f.write_text("{not json")
    with pytest.raises(DataError, match="JSON"):
        load_mapping(f, num_outputs=40)
    with pytest.raises(DataError, match="not found"):
        load_mapping(tmp_path / "missing.json", num_outputs=40)
