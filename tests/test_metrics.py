"""Box IoU / Dice (paper Eq. 10-11) and MaxBoxAccV2 against hand-computed cases."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from core.metrics import (
    best_iou_curve,
    box_dice,
    box_dice_pairs,
    box_iou,
    box_iou_matrix,
    box_iou_pairs,
    cam_threshold_grid,
    component_boxes,
    max_box_acc_from_curve,
    max_box_acc_v2,
)

# (a, b, IoU, Dice), all computed by hand with area = (x2 - x1) * (y2 - y1).
CASES = [
    pytest.param([0, 0, 10, 10], [0, 0, 10, 10], 1.0, 1.0, id="identical"),
    pytest.param([0, 0, 10, 10], [20, 20, 30, 30], 0.0, 0.0, id="disjoint"),
    pytest.param([0, 0, 10, 10], [10, 0, 20, 10], 0.0, 0.0, id="touching-edge"),
    pytest.param([0, 0, 10, 10], [2, 2, 6, 6], 16 / 100, 32 / 116, id="contained"),
    pytest.param([0, 0, 10, 10], [5, 5, 15, 15], 25 / 175, 50 / 200, id="partial-corner"),
    pytest.param([0, 0, 4, 2], [2, 0, 6, 2], 4 / 12, 8 / 16, id="partial-half"),
    pytest.param([0.5, 0.5, 2.5, 1.5], [1.5, 0.5, 3.5, 1.5], 1 / 3, 0.5, id="fractional"),
    pytest.param([3, 3, 3, 3], [3, 3, 3, 3], 0.0, 0.0, id="both-zero-area"),
    pytest.param([0, 0, 10, 10], [5, 5, 5, 8], 0.0, 0.0, id="one-zero-area"),
]


@pytest.mark.parametrize("a, b, iou, dice", CASES)
def test_scalar_iou_dice(a, b, iou, dice):
    assert box_iou(a, b) == pytest.approx(iou)
    assert box_dice(a, b) == pytest.approx(dice)
    assert box_iou(b, a) == pytest.approx(iou)  # symmetric


@pytest.mark.parametrize("a, b, iou, dice", CASES)
def test_batched_match_scalar(a, b, iou, dice):
    ta, tb = torch.tensor([a], dtype=torch.float32), torch.tensor([b], dtype=torch.float32)
    assert box_iou_pairs(ta, tb).item() == pytest.approx(iou)
    assert box_dice_pairs(ta, tb).item() == pytest.approx(dice)
    assert box_iou_matrix(ta, tb).item() == pytest.approx(iou)


def test_matrix_shape_and_values():
    a = torch.tensor([[0, 0, 10, 10], [5, 5, 15, 15.0]])
    b = torch.tensor([[0, 0, 10, 10], [2, 2, 6, 6], [100, 100, 101, 101.0]])
    m = box_iou_matrix(a, b)
    expected = torch.tensor([[1.0, 0.16, 0.0], [25 / 175, 1 / 115, 0.0]], dtype=torch.float64)
    assert m.shape == (2, 3)
    torch.testing.assert_close(m, expected)


def test_nan_box_scores_zero():
    a = torch.tensor([[math.nan] * 4, [0, 0, 2, 2.0]])
    b = torch.tensor([[0, 0, 2, 2.0], [0, 0, 2, 2.0]])
    torch.testing.assert_close(box_iou_pairs(a, b), torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(box_dice_pairs(a, b), torch.tensor([0.0, 1.0], dtype=torch.float64))


def test_dice_is_monotone_function_of_iou():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 50, size=(200, 2, 2))
    boxes = np.concatenate([p.min(1), p.max(1)], axis=1)
    a, b = torch.from_numpy(boxes[:100]), torch.from_numpy(boxes[100:])
    j, d = box_iou_pairs(a, b), box_dice_pairs(a, b)
    torch.testing.assert_close(d, 2 * j / (1 + j))  # holds for any two sets


@pytest.mark.parametrize("bad", [[0, 0, -1, 5], [0, 5, 5, 0], [1, 2, 3]])
def test_invalid_box_raises(bad):
    with pytest.raises(ValueError, match="box"):
        box_iou(bad, [0, 0, 1, 1])


def test_threshold_grid():
    g = cam_threshold_grid()
    assert g.size == 100 and g[0] == 0.0 and g[-1] == pytest.approx(0.99)
    with pytest.raises(ValueError, match="step"):
        cam_threshold_grid(0)


def test_component_boxes_pixel_edges():
    m = np.zeros((10, 12), bool)
    m[2:4, 3:7] = True  # rows 2-3, cols 3-6
    m[8, 11] = True  # one pixel in the corner
    boxes = sorted(component_boxes(m).tolist())
    assert boxes == [[3, 2, 7, 4], [11, 8, 12, 9]]
    assert component_boxes(np.zeros((4, 4), bool)).shape == (0, 4)


def _cc_reference(mask: np.ndarray) -> list:
    n, _, st, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return sorted((float(x), float(y), float(x + w), float(y + h)) for x, y, w, h, _ in st[1:n])


def test_component_boxes_match_connected_components_labelling():
    rng = np.random.default_rng(0)
    masks = [rng.random((int(rng.integers(1, 40)), int(rng.integers(1, 40)))) < rng.uniform(0.05, 0.7)
             for _ in range(300)]
    ring = np.zeros((30, 30), bool)
    ring[5:25, 5:25] = True
    ring[8:22, 8:22] = False
    ring[12:15, 12:15] = True  # island inside the ring's hole: a component of its own
    masks += [ring, np.ones((5, 5), bool), np.eye(6, dtype=bool)]  # border-touching, diagonal (8-conn)
    for m in masks:
        assert sorted(map(tuple, component_boxes(m).tolist())) == _cc_reference(m)
    assert sorted(map(tuple, component_boxes(ring).tolist())) == [(5, 5, 25, 25), (12, 12, 15, 15)]


def nested_map() -> np.ndarray:
    """20x20 map: 1.0 in [8,12)^2, 0.5 in the ring up to [6,14)^2, 0.25 up to [4,16)^2."""
    m = np.zeros((20, 20), np.float32)
    m[4:16, 4:16] = 0.25
    m[6:14, 6:14] = 0.5
    m[8:12, 8:12] = 1.0
    return m


def test_best_iou_curve_nested_squares():
    thr = cam_threshold_grid()
    curve = best_iou_curve(nested_map()[None], [np.array([[6, 6, 14, 14.0]])], thr)[0]
    # tau < 0.25: box [4,4,16,16] -> 64/144; 0.25 <= tau < 0.5: the GT box; tau >= 0.5: [8,8,12,12] -> 16/64
    assert curve[thr < 0.25] == pytest.approx(64 / 144)
    assert curve[(thr >= 0.25) & (thr < 0.5)] == pytest.approx(1.0)
    assert curve[thr >= 0.5] == pytest.approx(0.25)


def test_maxboxacc_v2_two_images_need_different_thresholds():
    # Same map, GT A = middle square, GT B = inner square: no single map threshold serves
    # both, so every BoxAcc(delta) is 1/2 although each image alone can be localised.
    m = np.stack([nested_map(), nested_map()])
    gts = [np.array([[6, 6, 14, 14.0]]), np.array([[8, 8, 12, 12.0]])]
    r = max_box_acc_v2(m, gts)
    assert r.per_delta == pytest.approx({0.3: 0.5, 0.5: 0.5, 0.7: 0.5})
    assert r.value == pytest.approx(0.5)
    assert r.best_threshold[0.7] == pytest.approx(0.25)  # first threshold reaching the best
    assert max_box_acc_v2(m[:1], gts[:1]).value == pytest.approx(1.0)
    assert max_box_acc_v2(m[1:], gts[1:]).value == pytest.approx(1.0)


def test_maxboxacc_v2_counts_any_component_and_any_gt():
    # A strong decoy blob away from the face and a weaker blob exactly on it: V2 uses every
    # component, so the image is correct at thresholds that keep the weaker blob.
    m = np.zeros((30, 30), np.float32)
    m[0:3, 0:3] = 1.0
    m[10:20, 10:20] = 0.4
    gt_face = np.array([[10, 10, 20, 20.0]])
    thr = cam_threshold_grid()
    curve = best_iou_curve(m[None], [gt_face], thr)[0]
    assert curve[thr < 0.4] == pytest.approx(1.0)
    assert curve[thr >= 0.4] == pytest.approx(0.0)
    # several GT boxes: the best one counts
    two_gt = np.array([[0, 0, 3, 3.0], [25, 25, 30, 30.0]])
    assert best_iou_curve(m[None], [two_gt], thr)[0, -1] == pytest.approx(1.0)
    assert max_box_acc_v2(m[None], [gt_face]).value == pytest.approx(1.0)


def test_maxboxacc_all_zero_map_scores_zero():
    r = max_box_acc_v2(np.zeros((1, 8, 8), np.float32), [np.array([0, 0, 4, 4.0])])
    assert r.value == 0.0


def test_maxboxacc_from_curve_matches_direct_and_torch_input():
    rng = np.random.default_rng(1)
    maps = torch.from_numpy(rng.random((3, 16, 16)).astype(np.float32))
    gts = [np.array([[2, 2, 9, 9.0]])] * 3
    thr = cam_threshold_grid(0.1)
    direct = max_box_acc_v2(maps, gts, thr)
    via = max_box_acc_from_curve(best_iou_curve(maps.numpy(), gts, thr), thr)
    assert direct.value == via.value and direct.curve.shape == (10, 3)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="maps"):
        best_iou_curve(np.zeros((4, 4)), [np.zeros(4)], np.array([0.5]))
    with pytest.raises(ValueError, match="gt_boxes"):
        best_iou_curve(np.zeros((2, 4, 4)), [np.zeros(4)], np.array([0.5]))
