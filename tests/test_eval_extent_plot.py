"""extent.png: points and median lines land where the axes say."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.evaluation.eval_extent_plot import COLORS, render_extent, to_pixel


def test_axes_mapping_hand_computed():
    # x: 5%..40% over pixels 72..736; y: log2 ratio -2..2 over pixels 404..44
    assert to_pixel(0.05, 0.25) == (72, 404)
    assert to_pixel(0.40, 4.0) == (736, 44)
    assert to_pixel(0.225, 1.0) == (404, 224)
    assert to_pixel(0.9, 100.0) == (736, 44)  # clipped to the axes


def test_median_lines_sit_at_each_methods_ratio(tmp_path):
    share = np.full(12, 0.2)
    ratios = {"big": np.full(12, 2.0), "small": np.r_[np.full(11, 0.5), np.nan]}  # a crop without a box
    path = render_extent(tmp_path / "extent.png", share, ratios)
    img = cv2.imread(str(path))
    assert img.shape == (460, 760, 3)
    for (name, color), ratio in zip(zip(ratios, COLORS), (2.0, 0.5)):
        x, y = to_pixel(0.19, ratio)  # between the two bin centres the 12 crops fall into
        assert np.abs(img[y, x].astype(int) - color).max() <= 40, (name, img[y, x])
    x, y = to_pixel(0.19, 1.0)
    assert img[y, x].tolist() != list(COLORS[0]) and img[y, x].tolist() != list(COLORS[1])
    with pytest.raises(ValueError, match="at most 4 methods"):
        render_extent(tmp_path / "x.png", share, {str(k): ratios["big"] for k in range(5)})
