"""Boxes from maps: thresholds and connected components on hand-made maps."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.boxes import Box, Threshold, boxes_from_maps, otsu_thresholds, threshold_values


def canvas(h: int = 20, w: int = 30) -> torch.Tensor:
    return torch.zeros(1, h, w)


def test_empty_map_gives_no_box():
    for spec in (Threshold(), Threshold("percentile", 90), Threshold("otsu")):
        assert boxes_from_maps(canvas(), spec) == [[]]


def test_one_blob_exact_box_and_score():
    m = canvas()
    m[0, 5:9, 10:16] = 1.0  # rows 5..8, cols 10..15
    m[0, 6, 12] = 0.5  # below the 0.8 threshold: a hole, still the same component outline
    (boxes,) = boxes_from_maps(m, Threshold("fraction", 0.8))
    assert len(boxes) == 1
    b = boxes[0]
    assert b.xyxy == [10.0, 5.0, 16.0, 9.0]
    assert b.area == 23 and b.score == pytest.approx(1.0)


def test_two_blobs_sorted_by_mean_value():
    m = canvas()
    m[0, 2:5, 2:5] = 0.6  # weaker blob
    m[0, 10:14, 20:26] = 1.0
    (boxes,) = boxes_from_maps(m, Threshold("fraction", 0.5))
    assert [b.xyxy for b in boxes] == [[20.0, 10.0, 26.0, 14.0], [2.0, 2.0, 5.0, 5.0]]
    assert [round(b.score, 6) for b in boxes] == [1.0, 0.6]


def test_blob_on_the_border():
    m = canvas()
    m[0, 0:3, 25:30] = 1.0
    (boxes,) = boxes_from_maps(m)
    assert boxes[0].xyxy == [25.0, 0.0, 30.0, 3.0]


def test_diagonal_pixels_are_one_component():
    m = canvas()
    m[0, 3, 3] = m[0, 4, 4] = 1.0  # 8-connectivity
    (boxes,) = boxes_from_maps(m)
    assert [b.xyxy for b in boxes] == [[3.0, 3.0, 5.0, 5.0]]


def test_min_area_drops_small_components():
    m = canvas(10, 10)
    m[0, 0, 0] = 1.0  # 1 px = 1%
    m[0, 5:8, 5:8] = 1.0  # 9 px
    (boxes,) = boxes_from_maps(m, Threshold("fraction", 0.5, min_area=0.05))
    assert [b.xyxy for b in boxes] == [[5.0, 5.0, 8.0, 8.0]]


def test_batch_gives_one_list_per_image():
    m = torch.zeros(3, 8, 8)
    m[1, 1:3, 1:3] = 1
    m[2, 4:8, 0:2] = 1
    out = boxes_from_maps(m)
    assert [len(b) for b in out] == [0, 1, 1]
    assert out[2][0].xyxy == [0.0, 4.0, 2.0, 8.0]


def test_threshold_values_hand_cases():
    m = torch.arange(100, dtype=torch.float32).reshape(1, 10, 10) / 99.0
    assert threshold_values(m, Threshold("fraction", 0.25)).item() == pytest.approx(0.25)
    assert threshold_values(m, Threshold("percentile", 50)).item() == pytest.approx(0.5)


def test_otsu_splits_a_bimodal_map():
    m = torch.full((1, 10, 10), 0.2)
    m[0, :, 6:] = 0.8
    t = otsu_thresholds(m).item()
    assert 0.2 < t < 0.8
    (boxes,) = boxes_from_maps(m, Threshold("otsu"))
    assert [b.xyxy for b in boxes] == [[6.0, 0.0, 10.0, 10.0]]


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "median"}, "threshold mode must be one of"),
    ({"mode": "fraction", "value": 1.5}, "fraction threshold must be in"),
    ({"mode": "percentile", "value": 101}, "percentile threshold must be in"),
    ({"min_area": 1.0}, "min_area must be in"),
])
def test_threshold_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Threshold(**kwargs)


def test_box_validation_and_scaling():
    with pytest.raises(ValueError, match="x2 >= x1"):
        Box(5, 0, 4, 1, 1.0)
    assert Box(10, 20, 30, 40, 0.5).scaled(2.0, 0.5).xyxy == [20, 10, 60, 20]
    assert np.isclose(Box(0, 0, 1, 1, 0.3).score, 0.3)
