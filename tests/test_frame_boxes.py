"""core.frame_boxes: class evidence inside boxes, and model-space -> frame-pixel geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.boxes import Box
from core.frame_boxes import (
    box_class_logits,
    class_evidence_maps,
    crop_boxes_to_frame,
    crop_rects,
    paste_maps,
    scale_boxes,
)


def test_evidence_mean_is_the_logit(mobilenet_model):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits, acts = mobilenet_model(x)
    w, b = mobilenet_model.head_weights()
    ev = class_evidence_maps(acts, w, b)
    assert ev.shape == (2, 2) + acts.shape[2:]
    torch.testing.assert_close(ev.mean((2, 3)), logits, rtol=1e-4, atol=1e-4)
    # a box covering the whole input gives back the image's logits
    whole = [[Box(0, 0, 64, 64, 1.0)], [Box(0, 0, 64, 64, 1.0)]]
    got = box_class_logits(ev, whole, (64, 64))
    torch.testing.assert_close(torch.cat(got), logits, rtol=1e-4, atol=1e-4)


def test_box_logits_hand_computed():
    # 2x2 grid over an 8x8 input: class 0 evidence on the left column, class 1 on the right.
    ev = torch.zeros(1, 2, 2, 2)
    ev[0, 0, :, 0] = 4.0
    ev[0, 1, :, 1] = 2.0
    boxes = [[Box(0, 0, 4, 8, 1), Box(4, 0, 8, 8, 1), Box(2, 0, 6, 4, 1), Box(1, 1, 1, 1, 1)]]
    (out,) = box_class_logits(ev, boxes, (8, 8))
    expected = torch.tensor([[4.0, 0.0], [0.0, 2.0], [2.0, 1.0], [4.0, 0.0]])
    torch.testing.assert_close(out, expected)


def test_box_logits_empty_and_bad_lengths():
    ev = torch.zeros(2, 3, 4, 4)
    out = box_class_logits(ev, [[], []], (8, 8))
    assert [o.shape for o in out] == [(0, 3), (0, 3)]
    with pytest.raises(ValueError, match="one list per image"):
        box_class_logits(ev, [[]], (8, 8))


def test_scale_boxes_squash():
    got = scale_boxes(np.array([[0, 0, 224, 224], [112, 56, 168, 112]]), (224, 224), (720, 1280))
    np.testing.assert_allclose(got, [[0, 0, 1280, 720], [640, 180, 960, 360]])


@pytest.mark.parametrize(
    "dets,margin,expected_rects,expected_keep",
    [
        (np.zeros((0, 5)), 0.0, np.zeros((0, 4)), []),
        (np.array([[10, 10, 30, 50, 0.5]]), 0.0, [[10, 10, 30, 50]], [0]),
        (np.array([[10, 10, 30, 50, 0.5]]), 0.5, [[0, 0, 40, 70]], [0]),  # 10px/20px per side, clipped at 0
        (np.array([[90, 90, 120, 120, 0.9]]), 0.0, [[90, 90, 100, 100]], [0]),  # border-touching: clipped
        (np.array([[5, 5, 6, 30, 0.9], [0, 0, 10, 10, 0.1]]), 0.0, [[0, 0, 10, 10]], [1]),  # 1 px wide dropped
        (np.array([[0, 0, 10, 10, 0.1], [20, 20, 40, 40, 0.9]]), 0.0, [[20, 20, 40, 40], [0, 0, 10, 10]], [1, 0]),
        (np.array([[np.nan, 0, 10, 10, 0.9]]), 0.0, np.zeros((0, 4)), []),
    ],
)
def test_crop_rects(dets, margin, expected_rects, expected_keep):
    rects, keep = crop_rects(dets, (100, 100), margin)
    np.testing.assert_array_equal(rects, np.asarray(expected_rects).reshape(-1, 4))
    assert keep.tolist() == expected_keep


def test_crop_rects_max_n_and_bad_shape():
    d = np.array([[0, 0, 10, 10, s] for s in (0.1, 0.9, 0.5)], np.float32)
    assert crop_rects(d, (50, 50), max_n=2)[1].tolist() == [1, 2]
    with pytest.raises(ValueError, match=r"\(n, 4\) or \(n, 5\)"):
        crop_rects(np.zeros((2, 3)), (10, 10))


def test_crop_boxes_to_frame_and_paste():
    got = crop_boxes_to_frame(np.array([[0, 0, 64, 64], [32, 32, 64, 64]]), (100, 50, 140, 90), (64, 64))
    np.testing.assert_allclose(got, [[100, 50, 140, 90], [120, 70, 140, 90]])
    maps = np.stack([np.full((8, 8), 100, np.uint8), np.full((8, 8), 200, np.uint8)])
    canvas = paste_maps((20, 30), maps, np.array([[0, 0, 10, 10], [5, 5, 15, 15]]))
    assert canvas.shape == (20, 30) and canvas.dtype == np.uint8
    assert canvas[0, 0] == 100 and canvas[7, 7] == 200 and canvas[12, 12] == 200 and canvas[18, 25] == 0
