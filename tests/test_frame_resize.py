"""core.frame_resize: the uint8 shrink matches core.preprocess's float path to one rounding step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.frame_resize import shrink_bgr_uint8
from core.model import IMAGENET_MEAN, IMAGENET_STD
from core.preprocess import bgr_to_input


@pytest.mark.parametrize("hw,size", [((720, 1280), (224, 224)), ((480, 640), (96, 96)), ((97, 61), (64, 64))])
def test_matches_float_path(hw, size):
    rng = np.random.default_rng(0)
    # smooth content (a real frame) plus noise
    yy, xx = np.mgrid[0 : hw[0], 0 : hw[1]]
    base = (127 + 100 * np.sin(xx / 37.0)[..., None] * np.cos(yy / 23.0)[..., None]).repeat(3, 2)
    img = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    t = torch.from_numpy(img)[None]
    ref = bgr_to_input(t, size, IMAGENET_MEAN, IMAGENET_STD)
    fast = bgr_to_input(shrink_bgr_uint8(t, size), size, IMAGENET_MEAN, IMAGENET_STD)
    # one uint8 step (plus the kernel's own fixed-point rounding) over the smallest std
    assert (fast - ref).abs().max().item() <= 1.01 / 255 / min(IMAGENET_STD) + 1e-6


def test_identity_and_bad_input():
    t = torch.zeros(1, 8, 8, 3, dtype=torch.uint8)
    assert shrink_bgr_uint8(t, (8, 8)) is t
    with pytest.raises(ValueError, match="uint8"):
        shrink_bgr_uint8(t.float(), (4, 4))
