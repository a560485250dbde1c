"""Localisation evaluation: predicted boxes, threshold calibration, bootstrap intervals."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.boxes import Threshold
from core.localization import (
    MethodScores,
    bootstrap_ci,
    calibrate_threshold,
    face_share_labels,
    maxboxacc_bootstrap_ci,
    paired_bootstrap,
    peak_in_box,
    predicted_boxes,
    score_method,
    threshold_candidates,
    threshold_from_dict,
    threshold_to_dict,
)
from core.metrics import cam_threshold_grid, max_box_acc_from_curve


def delta_map(r: int, c: int, n: int = 7) -> torch.Tensor:
    m = torch.zeros(n, n)
    m[r, c] = 1.0
    return m


def test_upsampled_delta_gives_known_box():
    # A one-hot 7x7 map upsampled to 224 (bilinear, half-pixel centres): weight on cell 3 is
    # 1 - |(x + 0.5) / 32 - 0.5 - 3|, and its maximum is 1 - 0.5/32; >= half the max keeps
    # x = 96..127 exactly, so the box is the cell itself: [96, 96, 128, 128].
    maps = delta_map(3, 3)[None]
    pred = predicted_boxes(maps, Threshold("fraction", 0.5), size=(224, 224))
    assert pred.tolist() == [[96.0, 96.0, 128.0, 128.0]]
    s = score_method(maps, np.array([[96, 96, 128, 128.0]]), Threshold("fraction", 0.5), size=(224, 224),
                     cam_thresholds=np.array([]))
    assert s.iou.tolist() == [1.0] and s.dice.tolist() == [1.0]
    # GT twice as wide: IoU 1/2, Dice 2/3
    s = score_method(maps, np.array([[96, 96, 160, 128.0]]), Threshold("fraction", 0.5), size=(224, 224),
                     cam_thresholds=np.array([]))
    assert s.iou[0] == pytest.approx(0.5) and s.dice[0] == pytest.approx(2 / 3)


def two_blob_map() -> torch.Tensor:
    m = torch.zeros(20, 20)
    m[1:3, 1:3] = 1.0  # small, strong
    m[8:18, 8:18] = 0.8  # large, weaker
    return m


def test_select_score_vs_area():
    maps = two_blob_map()[None]
    spec = Threshold("fraction", 0.5)
    assert predicted_boxes(maps, spec, select="score").tolist() == [[1, 1, 3, 3]]
    assert predicted_boxes(maps, spec, select="area").tolist() == [[8, 8, 18, 18]]
    with pytest.raises(ValueError, match="select"):
        predicted_boxes(maps, spec, select="biggest")


def test_no_component_scores_zero():
    s = score_method(torch.zeros(1, 8, 8), np.array([[0, 0, 4, 4.0]]), Threshold(), cam_thresholds=np.array([0.5]))
    assert math.isnan(s.pred[0, 0])
    assert s.iou.tolist() == [0.0] and s.dice.tolist() == [0.0]
    summ = s.summary(n_boot=50)
    assert summ["no_box_rate"] == 1.0 and summ["corloc"] == 0.0 and summ["maxboxacc_v2"] == 0.0


def nested() -> torch.Tensor:
    m = torch.zeros(20, 20)
    m[4:16, 4:16] = 0.25
    m[6:14, 6:14] = 0.5
    m[8:12, 8:12] = 1.0
    return m


def test_calibration_picks_the_threshold_that_fits_the_box():
    maps = nested()[None].repeat(3, 1, 1)
    gt = np.array([[6, 6, 14, 14.0]] * 3)
    cands = [Threshold("fraction", v) for v in (0.2, 0.4, 0.8)]
    cal = calibrate_threshold(maps, gt, cands)
    assert cal.threshold == Threshold("fraction", 0.4)
    assert cal.mean_iou == pytest.approx(1.0)
    assert [round(s, 4) for _, s in cal.table] == [round(64 / 144, 4), 1.0, 0.25]
    # inner square as GT: the highest threshold wins
    assert calibrate_threshold(maps, np.array([[8, 8, 12, 12.0]] * 3), cands).threshold.value == 0.8


def test_default_candidates_and_dict_roundtrip():
    cands = threshold_candidates()
    assert len(cands) == 20 and cands[0] == Threshold("fraction", 0.05) and cands[-1].mode == "otsu"
    for c in cands + [Threshold("percentile", 90.0, 0.01)]:
        assert threshold_from_dict(threshold_to_dict(c)) == c
    assert threshold_from_dict(0.3) == Threshold("fraction", 0.3)
    with pytest.raises(ValueError, match="thresholds.gradcam"):
        threshold_from_dict({"mode": "fraction"}, "thresholds.gradcam")
    with pytest.raises(ValueError, match="thresholds.x"):
        threshold_from_dict({"mode": "nope", "value": 1}, "thresholds.x")


def test_bootstrap_ci_matches_reference_loop():
    v = np.random.default_rng(3).random(40)
    lo, hi = bootstrap_ci(v, n_boot=500, seed=7)
    rng = np.random.default_rng(7)
    idx = rng.integers(0, v.size, size=(500, v.size))
    ref = np.quantile(v[idx].mean(axis=1), [0.025, 0.975])
    assert (lo, hi) == pytest.approx(tuple(ref))
    assert lo < v.mean() < hi
    assert bootstrap_ci(np.full(10, 0.7)) == pytest.approx((0.7, 0.7))
    assert all(math.isnan(x) for x in bootstrap_ci(np.array([])))


def test_paired_bootstrap():
    b = np.random.default_rng(0).random(50)
    r = paired_bootstrap(b + 0.1, b)
    assert r.diff == pytest.approx(0.1) and r.ci95 == pytest.approx((0.1, 0.1)) and r.excludes_zero
    assert r.p_le_zero == 0.0
    r0 = paired_bootstrap(b, b)
    assert r0.diff == 0.0 and not r0.excludes_zero
    noisy = paired_bootstrap(b, b[::-1].copy())
    assert noisy.ci95[0] < 0 < noisy.ci95[1]
    with pytest.raises(ValueError, match="matching"):
        paired_bootstrap(b, b[:3])


def test_maxboxacc_bootstrap_brackets_point_estimate():
    rng = np.random.default_rng(0)
    curve = rng.random((60, 20))
    thr = cam_threshold_grid(0.05)
    point = max_box_acc_from_curve(curve, thr).value
    lo, hi = maxboxacc_bootstrap_ci(curve, n_boot=300, seed=1)
    assert 0.0 <= lo <= hi <= 1.0
    assert lo - 0.02 <= point <= hi + 0.02  # max over thresholds is biased up under resampling


def test_summary_values_and_per_class_subset():
    maps = torch.stack([delta_map(3, 3), delta_map(0, 0), torch.zeros(7, 7)])
    gt = np.array([[96, 96, 128, 128.0], [96, 96, 128, 128.0], [0, 0, 10, 10.0]])
    s = score_method(maps, gt, Threshold("fraction", 0.5), size=(224, 224), cam_thresholds=cam_threshold_grid(0.1))
    assert s.iou.tolist() == [1.0, 0.0, 0.0]
    summ = s.summary(n_boot=100)
    assert summ["n"] == 3 and summ["iou"] == pytest.approx(1 / 3) and summ["corloc"] == pytest.approx(1 / 3)
    assert summ["iou_ci95"][0] <= summ["iou"] <= summ["iou_ci95"][1]
    assert s.summary(np.array([0]), n_boot=10)["iou"] == 1.0
    with pytest.raises(ValueError, match="one box per map"):
        score_method(maps, gt[:2], Threshold())


def test_peak_in_box_hand_cases():
    # 7x7 one-hot at (row 3, col 3) upsampled to 224: weight 1 - |(x + 0.5) / 32 - 3.5| peaks
    # at x = 111 and 112 (tied); the first, pixel (111, 111), has centre (111.5, 111.5): inside
    # [96, 96, 128, 128] and [111.5, ...] (edges count), not inside [112, 96, 128, 128].
    maps = torch.stack([delta_map(3, 3), delta_map(3, 3), delta_map(3, 3), delta_map(0, 6)])
    gt = np.array([[96, 96, 128, 128.0], [111.5, 111.5, 128, 128.0], [112, 96, 128, 128.0], [96, 96, 128, 128.0]])
    assert peak_in_box(maps, gt, size=(224, 224)).tolist() == [True, True, False, False]
    # no upsampling: peak of a 4x4 map at (row 2, col 1) -> centre (1.5, 2.5)
    m = torch.zeros(1, 4, 4)
    m[0, 2, 1] = 1.0
    assert peak_in_box(m, np.array([[1, 2, 2, 3.0]])).tolist() == [True]
    assert peak_in_box(m, np.array([[2, 2, 3, 3.0]])).tolist() == [False]
    with pytest.raises(ValueError, match="one box per map"):
        peak_in_box(m, np.zeros((2, 4)))


def test_by_face_share_hand_case():
    # 100x100 window; faces of 10%, 12%, 20% and 30% of it
    gt = np.array([[0, 0, 20, 50], [0, 0, 30, 40], [10, 0, 30, 100], [0, 0, 50, 60]], float)
    pred = np.array([[0, 0, 40, 50],            # twice the face: IoU 0.5
                     [0, 0, 30, 40],            # exact: IoU 1
                     [np.nan] * 4,              # no box: IoU 0, no area ratio
                     [0, 0, 50, 30]], float)    # half the face: IoU 0.5
    iou = np.array([0.5, 1.0, 0.0, 0.5])
    curve = np.array([[0.5, 0.9], [1.0, 0.2], [0.1, 0.3], [0.5, 0.4]])
    sc = MethodScores(iou, iou, pred, curve, np.array([0.2, 0.4]))
    assert face_share_labels() == ["<15%", "15-25%", ">=25%"]
    out = sc.by_face_share(gt, (100, 100))
    assert list(out) == ["<15%", "15-25%", ">=25%"]
    assert out["<15%"] == {"n": 2, "iou": 0.75, "area_ratio": 1.5, "oracle_iou": pytest.approx(0.95)}
    assert out["15-25%"]["n"] == 1 and out["15-25%"]["iou"] == 0.0 and np.isnan(out["15-25%"]["area_ratio"])
    assert out[">=25%"] == {"n": 1, "iou": 0.5, "area_ratio": 0.5, "oracle_iou": 0.5}
    # other edges; an empty bucket; no MaxBoxAccV2 curve -> no oracle
    bare = MethodScores(iou, iou, pred, np.zeros((4, 0)), np.zeros(0))
    out = bare.by_face_share(gt, (100, 100), edges=(0.5,))
    assert list(out) == ["<50%", ">=50%"] and out[">=50%"] == {"n": 0} and "oracle_iou" not in out["<50%"]
    with pytest.raises(ValueError, match="one box per scored image"):
        sc.by_face_share(gt[:2], (100, 100))
