"""JPEG coding in the low-resolution augmentation, and the resolution probe that motivated it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.data.augment import AugmentConfig, augment_rgb01, augment_rgb01_with_masks, jpeg_roundtrip

# geometry and colour off; every image down-sampled by exactly 1 (a no-op), so only the JPEG step acts
_ONLY_JPEG = dict(scale=(1.0, 1.0), translate=0.0, rotate_deg=0.0, hflip=0.0, brightness=0.0, contrast=0.0,
                  saturation=0.0, gray_p=0.0, lowres_p=1.0, lowres_min=1.0)


def _stripes(n: int = 2, side: int = 32) -> torch.Tensor:
    """(n, 3, side, side): black with 1-px red/green vertical stripes, a colour detail finer than 4:2:0 chroma."""
    x = torch.zeros(n, 3, side, side)
    x[:, 0, :, 0::2] = 1.0
    x[:, 1, :, 1::2] = 1.0
    return x


def test_jpeg_roundtrip_keeps_flat_colour_drops_fine_colour_and_degrades_with_quality():
    flat = torch.full((1, 3, 16, 16), 0.0)
    flat[:, 0], flat[:, 1], flat[:, 2] = 200 / 255, 120 / 255, 40 / 255
    assert (jpeg_roundtrip(flat, 50) - flat).abs().max() <= 3 / 255  # flat 8x8 blocks survive coding
    # chroma is stored at half resolution: adjacent red and green columns average to the same hue,
    # whatever the quality (red minus green goes from +-1 to about 0)
    rg = jpeg_roundtrip(_stripes(1, 16), 95)
    assert (rg[:, 0] - rg[:, 1]).abs().max() < 0.1
    noise = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    err = {q: float((jpeg_roundtrip(noise, q) - noise).abs().mean()) for q in (10, 50, 95)}
    assert err[10] > err[50] > err[95] > 0.0


def test_augment_jpeg_is_the_roundtrip_at_the_drawn_quality_and_off_by_default():
    x = _stripes(3)
    g = torch.Generator().manual_seed(0)
    out = augment_rgb01(x, AugmentConfig(**_ONLY_JPEG, jpeg_p=1.0, jpeg_quality=(30, 30)), g)
    assert torch.allclose(out, jpeg_roundtrip(x, 30), atol=1e-6)
    assert not torch.allclose(out, x, atol=0.05)
    # the default (jpeg_p 0) codes nothing: down-sampling by 1 is the identity
    assert torch.allclose(augment_rgb01(x, AugmentConfig(**_ONLY_JPEG), torch.Generator().manual_seed(0)), x, atol=1e-6)
    # and the images it skips are untouched
    some = augment_rgb01(x, AugmentConfig(**_ONLY_JPEG, jpeg_p=0.5, jpeg_quality=(30, 30)),
                         torch.Generator().manual_seed(3))
    coded = [not torch.allclose(some[i], x[i], atol=1e-6) for i in range(3)]
    for i, c in enumerate(coded):
        assert torch.allclose(some[i], jpeg_roundtrip(x[i:i + 1], 30)[0] if c else x[i], atol=1e-6)


def test_jpeg_codes_the_image_not_the_mask():
    x = _stripes(2)
    masks = torch.zeros(2, 1, 32, 32)
    masks[:, :, 4:20, 6:30] = 1.0
    cfg = AugmentConfig(**_ONLY_JPEG, jpeg_p=1.0, jpeg_quality=(20, 20))
    img, m = augment_rgb01_with_masks(x, masks, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(m, masks)
    assert torch.allclose(img, jpeg_roundtrip(x, 20), atol=1e-6)


def test_jpeg_options_are_checked():
    with pytest.raises(ValueError, match="jpeg_p"):
        AugmentConfig(jpeg_p=1.5)
    with pytest.raises(ValueError, match="jpeg_quality"):
        AugmentConfig(jpeg_quality=(50, 120))


def test_as_if_face_px_hand_computed():
    from core.training.train_diagnostics import as_if_face_px

    w = np.full((8, 8, 3), 100, np.uint8)
    w[:, 0::2] = 0
    w[:, 1::2] = 250  # 1-px stripes: mean 125
    # face 4 px in the window, asked to be 2 px: the window shrinks to 8*2/4 = 4 px, pairs of stripes average out
    assert np.array_equal(as_if_face_px(w, 4.0, 2.0), np.full((8, 8, 3), 125, np.uint8))
    # asked to be as large as it is (or larger): unchanged
    assert np.array_equal(as_if_face_px(w, 4.0, 4.0), w) and np.array_equal(as_if_face_px(w, 4.0, 9.0), w)
    # 2-px red/green columns become 1-px ones at half size; JPEG's half-resolution chroma then merges them
    rg = np.zeros((16, 16, 3), np.uint8)
    rg[:, [0, 1, 4, 5, 8, 9, 12, 13], 2] = 255  # red (BGR)
    rg[:, [2, 3, 6, 7, 10, 11, 14, 15], 1] = 255  # green
    clean, coded = as_if_face_px(rg, 8.0, 4.0), as_if_face_px(rg, 8.0, 4.0, jpeg_quality=95)
    red_minus_green = lambda im: np.abs(im[..., 2].astype(int) - im[..., 1].astype(int))  # noqa: E731
    assert red_minus_green(clean).max() > 100 and red_minus_green(coded).max() < 40


def test_train_records_the_augmentation_and_resume_keeps_it(tmp_path, capsys):
    from core.checkpoint import load_checkpoint
    from core.training.train import main
    from tests.test_train import _argv, make_roots

    roots = make_roots(tmp_path / "data", n_voc=6, n_crops=16)
    assert main(_argv(roots, tmp_path, "--aug-jpeg", "2", "--skip-test")) == 2
    assert "--aug-jpeg" in capsys.readouterr().err
    small = ("--backbone", "mobilenet_v2", "--frozen-prefix", "3", "--skip-test")
    assert main(_argv(roots, tmp_path, *small, "--epochs", "1", "--aug-jpeg", "0.5", "--aug-lowres-min", "0.1")) == 0
    aug = load_checkpoint(tmp_path / "run" / "best.pt").extra["augment"]
    assert aug["jpeg_p"] == 0.5 and aug["lowres_min"] == 0.1
    # resuming with other augmentation would change the training distribution mid-schedule: refused
    assert main(_argv(roots, tmp_path, *small, "--epochs", "2", "--resume")) == 2
    assert "other --aug-* options" in capsys.readouterr().err
