from __future__ import annotations

import numpy as np
import pytest

from core.data.context_crops import ContextCrop, build_context_crops, make_context_crops
from core.data.voc import read_voc
from tests._voc_fixtures import COLOURS, write_voc_root

# four faces well apart, one incorrectly worn mask (blocks windows but gets no crop), one tiny face
SPECS = [
    {"file": "scene.png", "w": 400, "h": 300, "boxes": [
        ("with_mask", (40, 40, 80, 90)),
        ("without_mask", (250, 60, 290, 100)),
        ("mask_weared_incorrect", (150, 200, 190, 240)),
        ("without_mask", (330, 220, 370, 260)),
        ("with_mask", (10, 250, 14, 254)),
    ]},
    # two overlapping faces: every window holding one overlaps the other -> both skipped
    {"file": "pair.png", "w": 200, "h": 200, "boxes": [("with_mask", (50, 50, 90, 90)), ("without_mask", (85, 50, 125, 90))]},
    {"file": "empty.png", "w": 50, "h": 50, "boxes": []},
]


@pytest.fixture()
def voc(tmp_path):
    write_voc_root(tmp_path, SPECS)
    return tmp_path, read_voc(tmp_path)


def _colour_mask(img, colour, tol=40):
    return (np.abs(img.astype(int) - np.array(colour)).max(axis=2) < tol)


def test_box_geometry_matches_painted_face(voc):
    root, ims = voc
    crops = build_context_crops(root, ims, seed=0, size=224)
    scene = [c for c in crops if c.source_file == "images/scene.png"]
    assert [c.label for c in scene] == ["with_mask", "without_mask", "without_mask", "with_mask"]
    face_index = {0: 0, 1: 1, 2: 3, 3: 4}  # crop k -> box index in SPECS (colour index)
    for k, c in enumerate(scene):
        assert c.image.shape == (224, 224, 3) and c.image.dtype == np.uint8
        mask = _colour_mask(c.image, COLOURS[face_index[k]])
        ys, xs = np.nonzero(mask)
        x1, y1, x2, y2 = c.box
        # the painted face spans pixels [x1, x2) x [y1, y2): its extent matches the mapped box,
        # up to the blur of bilinear upscaling (about half a source pixel on each edge)
        bx1, _, bx2, _ = SPECS[0]["boxes"][face_index[k]][1]
        assert c.source_box == tuple(float(v) for v in SPECS[0]["boxes"][face_index[k]][1])
        tol = 1.0 + 0.5 * (x2 - x1) / (bx2 - bx1)
        assert abs(xs.min() - x1) <= tol and abs(xs.max() + 1 - x2) <= tol
        assert abs(ys.min() - y1) <= tol and abs(ys.max() + 1 - y2) <= tol


def test_windows_hold_no_other_face_and_fraction_in_range(voc):
    root, ims = voc
    for seed in range(5):
        for c in build_context_crops(root, ims, seed=seed, size=96):
            x1, y1, x2, y2 = c.box
            assert 0.08 - 1e-9 <= c.face_fraction <= 0.35 + 1e-9
            assert c.face_fraction == pytest.approx((x2 - x1) * (y2 - y1) / 96**2)
            assert 0 <= x1 < x2 <= 96 and 0 <= y1 < y2 <= 96  # face fully inside
            n_face_colours = sum(_colour_mask(c.image, col).any() for col in COLOURS[:5])
            assert n_face_colours == 1, "a window shows more than one face"


def test_touching_faces_and_tiny_faces_are_skipped(voc):
    root, ims = voc
    crops = build_context_crops(root, ims, seed=0, size=64)
    assert not any(c.source_file == "images/pair.png" for c in crops)
    # the 4x4 face is cropped by default but can be dropped with min_face_px
    assert any(c.box[2] - c.box[0] < 64 * 0.6 and c.label == "with_mask" and c.box[1] > 0 for c in crops)
    crops_big = build_context_crops(root, ims, seed=0, size=64, min_face_px=8)
    assert len(crops_big) == len(crops) - 1


def test_hand_computed_window():
    # face 20x20, fraction fixed to 1/4 -> window side exactly 40 -> box is half the crop side
    from core.data.voc import VocBox, VocImage

    img = np.full((100, 100, 3), 128, np.uint8)
    img[30:50, 30:50] = (0, 0, 255)
    vimg = VocImage("x.png", 100, 100, (VocBox("with_mask", (30, 30, 50, 50)),))
    for seed in range(10):
        # size == side: no resampling, so the crop is pixel-exact
        (c,) = make_context_crops(img, vimg, np.random.default_rng(seed), size=40, face_frac=(0.25, 0.25))
        x1, y1, x2, y2 = c.box
        assert (x2 - x1, y2 - y1) == (20.0, 20.0) and c.face_fraction == 0.25
        assert float(x1).is_integer() and 0 <= x1 <= 20 and 0 <= y1 <= 20
        assert (c.image[int(y1):int(y2), int(x1):int(x2)] == (0, 0, 255)).all()
        outside = np.ones((40, 40), bool)
        outside[int(y1):int(y2), int(x1):int(x2)] = False
        assert (c.image[outside] == 128).all()


def test_border_windows_are_edge_replicated():
    from core.data.voc import VocBox, VocImage

    img = np.zeros((60, 60, 3), np.uint8)
    img[:, :, 1] = np.arange(60, dtype=np.uint8)[None, :] + 100  # horizontal ramp, no black
    img[0:20, 0:20] = (0, 0, 255)  # face in the top-left corner
    vimg = VocImage("x.png", 60, 60, (VocBox("without_mask", (0, 0, 20, 20)),))
    seen_outside = False
    for seed in range(30):
        (c,) = make_context_crops(img, vimg, np.random.default_rng(seed), size=40, face_frac=(0.25, 0.25))
        assert c.image.reshape(-1, 3).max(axis=1).min() > 0, "no black padding"
        seen_outside |= c.box[0] > 0 or c.box[1] > 0
    assert seen_outside


def test_deterministic_and_order_independent(voc):
    root, ims = voc
    a = build_context_crops(root, ims, seed=7, size=64)
    b = build_context_crops(root, ims, seed=7, size=64)
    c = build_context_crops(root, list(reversed(ims)), seed=7, size=64)
    d = build_context_crops(root, ims, seed=8, size=64)
    key = lambda cs: sorted((x.source_file, x.box, x.image.tobytes()) for x in cs)  # noqa: E731
    assert key(a) == key(b) == key(c)
    assert key(a) != key(d)


def test_context_crop_validates():
    with pytest.raises(ValueError, match="image must be"):
        ContextCrop(np.zeros((4, 5, 3), np.uint8), (0, 0, 1, 1), "with_mask", "f", 0.1)
    from core.data.voc import VocImage

    with pytest.raises(ValueError, match="face_frac"):
        make_context_crops(np.zeros((4, 4, 3), np.uint8), VocImage("x", 4, 4, ()), np.random.default_rng(), face_frac=(0.5, 0.1))
