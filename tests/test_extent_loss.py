"""core.extent_loss and the mask-carrying augmentation it trains with."""
from __future__ import annotations

import math

import pytest
import torch

from core.data.augment import AugmentConfig, augment_rgb01, augment_rgb01_with_masks
from core.extent_loss import box_masks, extent_loss


def test_box_masks_hand_case():
    m = box_masks(torch.tensor([[1.0, 0.0, 3.0, 2.0], [float("nan")] * 4]), 4)
    assert m.shape == (2, 1, 4, 4)
    # pixel centres 0.5..3.5: x in [1, 3] -> columns 1, 2; y in [0, 2] -> rows 0, 1
    assert m[0, 0].tolist() == [[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert m[1].sum() == 0


def test_extent_loss_hand_case_and_gradient():
    # a 2x2 grid at 4 px: the box covers the top-left cell fully and half of the top-right one
    masks = box_masks(torch.tensor([[0.0, 0.0, 3.0, 2.0]]), 4)
    t = torch.tensor([[1.0, 0.5], [0.0, 0.0]])
    acts = torch.tensor([[[[2.0, 1.0], [0.0, 0.0]]]], requires_grad=True)  # peak-scaled: exactly t
    loss = extent_loss(acts, masks, torch.tensor([True])).detach()
    eps = 1e-4
    p = t.clamp(eps, 1 - eps)
    ref = -(t * p.log() + (1 - t) * (1 - p).log()).mean()  # the minimum of BCE at p = t
    assert float(loss) == pytest.approx(float(ref), rel=1e-5)
    assert float(ref) == pytest.approx(-0.5 * (0.5 * math.log(0.5) * 2) / 2, abs=1e-3)
    # a blob in the wrong place costs more, and the gradient reaches the activations
    wrong = torch.tensor([[[[0.2, 0.1], [0.1, 2.0]]]], requires_grad=True)  # > 0: see the clamp note in the module
    bad = extent_loss(wrong, masks, torch.tensor([True]))
    assert float(bad.detach()) > float(loss) + 1.0
    assert float(extent_loss(acts.detach().flip(-1), masks, torch.tensor([True]))) > float(loss)
    bad.backward()
    assert wrong.grad is not None and wrong.grad.abs().sum() > 0
    # images without a box are ignored; none at all gives 0 (and still a graph)
    two = torch.cat([acts.detach(), wrong.detach()])
    both = extent_loss(two, torch.cat([masks, masks]), torch.tensor([True, False]))
    assert float(both) == pytest.approx(float(loss), rel=1e-6)
    assert float(extent_loss(two, torch.cat([masks, masks]), torch.tensor([False, False]))) == 0.0


def test_masks_move_with_the_image_and_images_are_unchanged():
    g = torch.Generator()
    x = torch.rand(3, 3, 32, 32, generator=g.manual_seed(1))
    masks = box_masks(torch.tensor([[4.0, 8.0, 12.0, 28.0]] * 3), 32)
    cfg = AugmentConfig()
    ref = augment_rgb01(x, cfg, torch.Generator().manual_seed(7), out_size=32)
    got, m = augment_rgb01_with_masks(x, masks, cfg, torch.Generator().manual_seed(7), out_size=32)
    torch.testing.assert_close(got, ref)  # same draws, same images: earlier runs stay reproducible
    assert m.shape == (3, 1, 32, 32) and float(m.min()) >= 0 and float(m.max()) <= 1
    # a pure flip moves the mask to the mirrored columns
    flip = AugmentConfig(scale=(1.0, 1.0), translate=0.0, rotate_deg=0.0, hflip=1.0, lowres_p=0.0)
    _, mf = augment_rgb01_with_masks(x, masks, flip, torch.Generator().manual_seed(0), out_size=32)
    torch.testing.assert_close(mf, masks.flip(-1))
    with pytest.raises(ValueError, match="masks must be"):
        augment_rgb01_with_masks(x, masks[:2], cfg, g)
