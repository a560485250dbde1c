"""High-resolution HayCAM+ (core.cams.haycam_hr): exactness of the dilated copy, shapes, config."""
from __future__ import annotations

import pytest
import torch

from core.cams import METHODS
from core.cams.haycam_hr import HiResConfig, HiResHayCAM, dilated_copy, shift_and_stitch, shift_offsets
from tests.conftest import seeded_model

_MODELS: dict = {}


pytestmark = pytest.mark.usefixtures("one_thread")


def get_model(backbone: str):
    if backbone not in _MODELS:
        m = seeded_model(backbone)
        if backbone == "mobilenet_v2":  # random BN stats shrink activations to ~1e-7: use unit-ish ones
            for mod in m.modules():
                if isinstance(mod, torch.nn.BatchNorm2d):
                    mod.running_var.fill_(0.05)
        _MODELS[backbone] = m
    return _MODELS[backbone]


@pytest.fixture(scope="module", params=["resnet18", "mobilenet_v2"])
def model(request):
    return get_model(request.param)


def test_dilated_copy_is_exact_on_even_positions(model):
    # DeepLab identity: stride 1 + dilation 2 computes the original outputs at even
    # positions (and new ones in between), with the same weights.
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = model.forward_features(x)
        d = dilated_copy(model).forward_features(x)
    assert d.shape[-2:] == (2 * a.shape[-2], 2 * a.shape[-1])
    torch.testing.assert_close(d[..., ::2, ::2], a, rtol=1e-3, atol=1e-4 * float(a.abs().max()))
    # the original is untouched
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), a)


@pytest.mark.parametrize("backbone, cfg", [
    ("mobilenet_v2", HiResConfig("dilate")), ("mobilenet_v2", HiResConfig("fuse", "product")),
    ("mobilenet_v2", HiResConfig("fuse", "max")), ("mobilenet_v2", HiResConfig("scale", scale=2.0)),
    ("resnet18", HiResConfig("fuse", "mean")), ("resnet18", HiResConfig("shift")),
])
def test_maps_shape_range_and_logits(backbone, cfg):
    model = get_model(backbone)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    r = HiResHayCAM(model, cfg)(x)
    assert r.maps.shape == (2, 4, 4)  # 2x the 2x2 last-layer grid at 64 px
    assert float(r.maps.min()) >= 0.0 and float(r.maps.max()) <= 1.0
    assert torch.isfinite(r.raw).all()
    with torch.no_grad():
        torch.testing.assert_close(r.logits, model(x)[0])  # the model's own decision


def test_fuse_product_is_geometric_mean_of_normalised_maps():
    model = get_model("mobilenet_v2")
    import torch.nn.functional as F

    from core.cams.haycam_hr import _haycam_plus_raw, forward_mid_last

    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    r = HiResHayCAM(model, HiResConfig("fuse", "product"))(x)
    with torch.no_grad():
        _, mid, last = forward_mid_last(model, x)
    m_last, _ = _haycam_plus_raw(last, 0.9)
    m_mid, _ = _haycam_plus_raw(mid, 0.9)
    up = F.interpolate(m_last[:, None], size=m_mid.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(r.raw, (up * m_mid).sqrt())
    # reusing a forward gives the same maps, and forward_mid_last's logits/last are the model's
    logits, _, last = forward_mid_last(model, x)
    ref_logits, ref_last = model(x)
    torch.testing.assert_close(logits, ref_logits)
    torch.testing.assert_close(last, ref_last)
    r2 = HiResHayCAM(model, HiResConfig("fuse", "product"))(x, mid=mid, last=last)
    torch.testing.assert_close(r2.maps, r.maps)
    torch.testing.assert_close(r2.logits, ref_logits)


def test_config_validation_and_roundtrip():
    c = HiResConfig("fuse", "mean", 1.5, 0.8)
    assert HiResConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="variant"):
        HiResConfig("bigger")
    with pytest.raises(ValueError, match="fuse"):
        HiResConfig("fuse", "sum")
    with pytest.raises(ValueError, match="scale"):
        HiResConfig("scale", scale=1.0)
    with pytest.raises(ValueError, match="shifts"):
        HiResConfig("shift", shifts=1)
    assert HiResConfig.from_dict({"variant": "shift", "shifts": 4}).shifts == 4
    assert HiResConfig.from_dict({"variant": "dilate"}).shifts == 2  # older checkpoints lack the key
    with pytest.raises(ValueError, match="unknown haycam\\+hr option"):
        HiResConfig.from_dict({"variant": "dilate", "layer": 3})


def test_engine_table_still_holds_the_six_methods():
    assert list(METHODS) == ["gradcam", "gradcam++", "layercam", "eigencam", "haycam", "haycam+"]


def test_shift_offsets_centre_a_regular_finer_grid():
    assert shift_offsets(32, 2) == [8, -8]
    assert shift_offsets(32, 4) == [12, 4, -4, -12]
    # sub-grid j, cell i is centred at 32 i + 16 - s_j = (32 / n)(n i + j + 1/2)
    for n in (2, 4, 8):
        centres = sorted(32 * i + 16 - s for i in range(3) for s in shift_offsets(32, n))
        step = 32 // n
        assert centres == [step * k + step // 2 for k in range(3 * n)]


def test_shift_and_stitch_equals_a_stride_16_pooling():
    # features = 32x32 average pooling (output stride 32). Stitching 2x2 shifted copies must
    # give 32x32 windows every 16 px, centred at 8 + 16 k: exactly avg_pool(kernel 32,
    # stride 16) of the input padded by 8 px of repeated edge pixels.
    import torch.nn.functional as F

    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(3))
    got = shift_and_stitch(lambda t: F.avg_pool2d(t, 32), x, stride=32, shifts=2)
    ref = F.avg_pool2d(F.pad(x, (8, 8, 8, 8), mode="replicate"), 32, stride=16)
    assert got.shape == (2, 3, 6, 8) == ref.shape
    torch.testing.assert_close(got, ref)
    # and 4 shifts: windows every 8 px (pad 12)
    got4 = shift_and_stitch(lambda t: F.avg_pool2d(t, 32), x, stride=32, shifts=4)
    torch.testing.assert_close(got4, F.avg_pool2d(F.pad(x, (12, 12, 12, 12), mode="replicate"), 32, stride=8))
