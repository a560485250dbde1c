from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from core.data import DataError
from core.data.face_crops import (
    CropItem,
    build_voc_face_crops,
    crops_split,
    load_crop,
    read_crops_manifest,
    voc_face_crops,
)
from core.data.voc import VocBox, VocImage, read_voc
from tests._voc_fixtures import write_voc_root


def test_voc_face_crop_hand_computed():
    img = np.full((100, 100, 3), 128, np.uint8)
    img[30:50, 30:50] = (0, 0, 255)
    vimg = VocImage("x.png", 100, 100, (VocBox("with_mask", (30, 30, 50, 50)), VocBox("mask_weared_incorrect", (60, 60, 70, 70))))
    (c,) = voc_face_crops(img, vimg, size=40, margin=0.5)  # side 20 * 2 = 40 -> no resampling
    assert c.box == (10.0, 10.0, 30.0, 30.0) and c.label == "with_mask" and c.source_file == "x.png"
    assert (c.image[10:30, 10:30] == (0, 0, 255)).all()
    assert (c.image[:10] == 128).all() and (c.image[30:] == 128).all()


def test_voc_face_crop_at_border_replicates_edges():
    img = np.full((50, 50, 3), 200, np.uint8)
    img[0:10, 0:10] = (0, 255, 0)
    vimg = VocImage("x.png", 50, 50, (VocBox("without_mask", (0, 0, 10, 10)),))
    (c,) = voc_face_crops(img, vimg, size=20, margin=0.5)
    assert c.box == (5.0, 5.0, 15.0, 15.0)
    assert (c.image[:15, :15] == (0, 255, 0)).all()  # the face colour replicated into the padding


def test_build_voc_face_crops_counts_and_min_size(tmp_path):
    write_voc_root(tmp_path, [{"file": "a.png", "w": 100, "h": 100, "boxes": [
        ("with_mask", (10, 10, 40, 40)), ("without_mask", (60, 60, 64, 64)), ("mask_weared_incorrect", (50, 10, 70, 30))]}])
    ims = read_voc(tmp_path)
    assert [c.label for c in build_voc_face_crops(tmp_path, ims, size=32)] == ["with_mask", "without_mask"]
    assert [c.label for c in build_voc_face_crops(tmp_path, ims, size=32, min_face_px=8)] == ["with_mask"]


def _write_crops_root(root, n=40):
    man = []
    for i in range(n):
        lab = "with_mask" if i % 2 else "without_mask"
        f = f"{lab}/{i:03d}.jpg"
        (root / lab).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / f), np.full((30, 20, 3), i, np.uint8))
        man.append({"file": f, "label": lab, "dup_group": i // 4, "sub_source": "upstream numeric filename"})
    (root / "manifest.json").write_text(json.dumps(man))
    return man


def test_crops_manifest_and_group_aware_split(tmp_path):
    man = _write_crops_root(tmp_path)
    items = read_crops_manifest(tmp_path)
    assert items[3] == CropItem("with_mask/003.jpg", "with_mask", 0, "upstream numeric filename")
    parts = crops_split(items)
    assert parts == crops_split(list(reversed(items)))
    side = {}
    for name, part in parts.items():
        for it in part:
            assert side.setdefault(it.dup_group, name) == name
    assert sum(len(p) for p in parts.values()) == len(man)
    assert load_crop(tmp_path, items[5]).shape == (30, 20, 3)
    with pytest.raises(DataError, match="nope.jpg"):
        load_crop(tmp_path, CropItem("with_mask/nope.jpg", "with_mask", 0))


@pytest.mark.parametrize("content, needle", [("[{\"file\": \"a.jpg\", \"label\": \"hat\", \"dup_group\": 1}]", "entry 0"),
                                             ("[{\"file\": \"a.jpg\"}]", "entry 0: KeyError"), ("{}", "expected a JSON list"),
                                             ("not json", "cannot be read as JSON")])
def test_crops_manifest_errors_name_file(tmp_path, content, needle):
    (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(DataError) as ei:
        read_crops_manifest(tmp_path)
    assert "manifest.json" in str(ei.value) and needle in str(ei.value)


def test_real_crops_split(shared_data):
    items = read_crops_manifest(shared_data / "facemask_crops")
    assert len(items) == 3768
    parts = crops_split(items)
    side = {}
    for name, part in parts.items():
        for it in part:
            assert side.setdefault(it.dup_group, name) == name
