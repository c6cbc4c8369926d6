"""detect.evaluate against hand-computed VOC cases (REFERENCE §6): +1 IoU, difficult, duplicates, 11-point vs all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from texturebias.detect.evaluate import (
    VOC07_RECALL_THRESHOLDS,
    Detection,
    GroundTruth,
    average_precision,
    box_iou_plus1,
    evaluate_class,
    evaluate_detections,
    read_results,
    read_results_file,
    write_results,
)
from texturebias.errors import DataError

G1 = (1.0, 1.0, 10.0, 10.0)  # 10 x 10 pixels with the +1 convention
G2 = (21.0, 21.0, 30.0, 30.0)


def det(image: str, score: float, box: tuple[float, float, float, float]) -> Detection:
    return Detection(image, score, box)


def test_iou_uses_plus_one_and_a_strict_threshold() -> None:
    gt = np.array([G1])
    # (1,1,10,19): 10x19 = 190 px, intersection 100 -> IoU 100/190 = 0.526 (without +1: 81/162 = 0.5 exactly).
    assert box_iou_plus1((1, 1, 10, 19), gt)[0] == pytest.approx(100 / 190)
    # (1,1,10,20): 10x20 = 200 px -> IoU exactly 0.5, which is NOT a match (IoU > 0.5 strictly).
    assert box_iou_plus1((1, 1, 10, 20), gt)[0] == 0.5
    gts = {"a": [GroundTruth(G1)]}
    assert evaluate_class(gts, [det("a", 0.9, (1, 1, 10, 19))]).ap_all == 1.0
    assert evaluate_class(gts, [det("a", 0.9, (1, 1, 10, 20))]).ap_all == 0.0
    # Touching boxes share a 1-pixel column under +1: (10,1,19,10) overlaps G1 in 10 px.
    assert box_iou_plus1((10, 1, 19, 10), gt)[0] == pytest.approx(10 / 190)


def test_duplicates_are_false_positives_and_11_point_differs_from_all_point() -> None:
    gts = {"a": [GroundTruth(G1), GroundTruth(G2)]}
    dets = [det("a", 0.9, G1), det("a", 0.8, G1), det("a", 0.7, G2)]  # TP, duplicate FP, TP
    r = evaluate_class(gts, dets)
    assert r.npos == 2 and r.detections == 3
    np.testing.assert_allclose(r.recall, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(r.precision, [1.0, 0.5, 2 / 3])
    # 11-point: thresholds 0..0.5 (6 of them) reach precision 1, 0.6..1.0 (5) only the last point, 2/3.
    assert r.ap_voc07 == pytest.approx((6 * 1.0 + 5 * 2 / 3) / 11)
    # All-point: recall 0 -> 0.5 at envelope 1, 0.5 -> 1.0 at envelope 2/3 (the tie at recall 0.5 is dropped).
    assert r.ap_all == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)


def test_difficult_boxes_are_ignored_not_counted() -> None:
    gts = {"a": [GroundTruth(G1), GroundTruth(G2, difficult=True)]}
    dets = [det("a", 0.95, G2), det("a", 0.9, G1)]  # the first matches a difficult box: neither TP nor FP
    r = evaluate_class(gts, dets)
    assert r.npos == 1 and r.ap_voc07 == pytest.approx(1.0) and r.ap_all == pytest.approx(1.0)
    assert r.detections == 2
    # Counted as ground truth, the same detections would give AP < 1.
    plain = evaluate_class({"a": [GroundTruth(G1), GroundTruth(G2)]}, [det("a", 0.95, G2), det("a", 0.9, G1)])
    assert plain.npos == 2 and plain.ap_all == pytest.approx(1.0)
    missed = evaluate_class({"a": [GroundTruth(G1)]}, [det("a", 0.95, G2), det("a", 0.9, G1)])
    assert missed.ap_all == pytest.approx(0.5)  # FP first, then TP at precision 1/2


def test_equal_scores_keep_file_order_like_the_devkit() -> None:
    gts = {"a": [GroundTruth(G1)]}
    fp_first = evaluate_class(gts, [det("a", 0.5, G2), det("a", 0.5, G1)])
    tp_first = evaluate_class(gts, [det("a", 0.5, G1), det("a", 0.5, G2)])
    assert fp_first.ap_all == pytest.approx(0.5) and fp_first.ap_voc07 == pytest.approx(0.5)
    assert tp_first.ap_all == pytest.approx(1.0) and tp_first.ap_voc07 == pytest.approx(1.0)


def test_11_point_thresholds_are_voc_eval_s_arange() -> None:
    # np.arange(0, 1.1, 0.1)[3] is 0.30000000000000004: a recall of exactly 3/10 does not reach it.
    assert VOC07_RECALL_THRESHOLDS[3] > 0.3 and len(VOC07_RECALL_THRESHOLDS) == 11
    recall = np.array([0.1, 0.2, 0.3])
    precision = np.ones(3)
    assert average_precision(recall, precision, voc07=True) == pytest.approx(3 / 11)
    assert average_precision(recall, precision, voc07=False) == pytest.approx(0.3)


def test_map_over_classes_with_ground_truth_and_a_class_without_detections() -> None:
    gt = {"cat": {"a": [GroundTruth(G1)]}, "dog": {"b": [GroundTruth(G2)]}}
    dets = {"cat": [det("a", 0.9, G1)], "bird": [det("a", 0.3, G2)]}
    ev = evaluate_detections(gt, dets, ["cat", "dog", "bird"], ["a", "b"])
    assert ev.classes["cat"].ap_all == 1.0
    assert ev.classes["dog"].ap_voc07 == 0.0 and ev.classes["dog"].detections == 0 and ev.classes["dog"].npos == 1
    assert ev.classes["bird"].npos == 0 and ev.classes["bird"].ap_all == 0.0  # no ground truth: not in the mean
    assert ev.map_voc07 == pytest.approx(0.5) and ev.map_all == pytest.approx(0.5)
    js = ev.to_json()
    assert set(js) == {"classes", "map_voc07", "map_all"}
    # 11 x (1/11) summed as voc_eval does it is 1.0000000000000002; kept, to equal that tool to the last digit.
    assert js["classes"]["cat"] == {"ap_voc07": pytest.approx(1.0), "ap_all": 1.0, "npos": 1, "detections": 1}
    with pytest.raises(DataError, match="not in the test set"):
        evaluate_detections(gt, {"cat": [det("zzz", 0.9, G1)]}, ["cat"], ["a", "b"])


def test_results_files_round_trip_in_devkit_format(tmp_path: Path) -> None:
    dets = {"cat": [det("000001", 0.987654321, (1.0, 2.0, 30.5, 40.25))], "dog": []}
    paths = write_results(tmp_path, dets, ["cat", "dog"])
    assert [p.name for p in paths] == ["comp4_det_test_cat.txt", "comp4_det_test_dog.txt"]
    assert paths[0].read_text() == "000001 0.987654 1.00 2.00 30.50 40.25\n"
    back = read_results(tmp_path, ["cat", "dog", "bird"])
    assert back["cat"] == [det("000001", 0.987654, (1.0, 2.0, 30.5, 40.25))] and back["dog"] == []
    assert "bird" not in back
    (tmp_path / "bad.txt").write_text("000001 0.5 1 2 3\n")
    with pytest.raises(DataError, match=r"bad.txt:1: expected"):
        read_results_file(tmp_path / "bad.txt")
    with pytest.raises(DataError, match="no results files"):
        read_results(tmp_path, ["horse"])
