from __future__ import annotations

import json

import numpy as np
import pytest

from core.data import DataError
from core.data.voc import VocBox, VocImage, load_image, read_duplicate_groups, read_voc
from tests._voc_fixtures import COLOURS, write_voc_root

SPECS = [
    {"file": "a.png", "w": 100, "h": 80, "boxes": [("with_mask", (10, 10, 30, 40)), ("without_mask", (50, 20, 70, 50))]},
    {"file": "b.png", "w": 60, "h": 60, "boxes": []},
    {"file": "c.png", "w": 60, "h": 50, "boxes": [("mask_weared_incorrect", (0, 0, 60, 50))]},
]


def test_read_voc_round_trip(tmp_path):
    write_voc_root(tmp_path, SPECS)
    ims = read_voc(tmp_path)
    assert [im.file for im in ims] == ["images/a.png", "images/b.png", "images/c.png"]
    assert ims[0] == VocImage("images/a.png", 100, 80, (VocBox("with_mask", (10.0, 10.0, 30.0, 40.0)),
                                                        VocBox("without_mask", (50.0, 20.0, 70.0, 50.0))))
    assert ims[0].boxes[0].area == 600.0
    img = load_image(tmp_path, ims[0])
    assert img.shape == (80, 100, 3) and img.dtype == np.uint8
    assert tuple(img[20, 20]) == COLOURS[0]  # BGR order kept


@pytest.mark.parametrize("entry, needle", [
    ({"file": "images/x.png", "width": 10, "height": 10}, "missing key 'boxes'"),
    ({"file": "images/x.png", "width": 10, "height": 10, "boxes": [{"label": "hat", "xyxy": [0, 0, 1, 1]}]}, "box 0"),
    ({"file": "images/x.png", "width": 10, "height": 10, "boxes": [{"label": "with_mask", "xyxy": [5, 0, 1, 1]}]}, "x1 < x2"),
    ({"file": "images/x.png", "width": 10, "height": 10, "boxes": [{"label": "with_mask", "xyxy": [0, 0, 11, 5]}]}, "outside"),
    ("not a dict", "expected an object"),
])
def test_read_voc_bad_entry_names_file_and_entry(tmp_path, entry, needle):
    (tmp_path / "annotations.json").write_text(json.dumps([entry]))
    with pytest.raises(DataError) as ei:
        read_voc(tmp_path)
    msg = str(ei.value)
    assert "annotations.json" in msg and "entry 0" in msg and needle in msg


def test_read_voc_missing_file(tmp_path):
    with pytest.raises(DataError, match="annotations.json: no such file"):
        read_voc(tmp_path)


def test_duplicate_groups_by_bare_name_and_singletons(tmp_path):
    write_voc_root(tmp_path, SPECS)
    assert read_duplicate_groups(tmp_path) == {"images/a.png": 0, "images/b.png": 1, "images/c.png": 2}
    (tmp_path / "duplicate_groups.json").write_text(json.dumps([["c.png", "images/a.png"]]))
    g = read_duplicate_groups(tmp_path)
    assert g["images/a.png"] == g["images/c.png"] != g["images/b.png"]
    (tmp_path / "duplicate_groups.json").write_text(json.dumps([["c.png", "zzz.png"]]))
    with pytest.raises(DataError, match="duplicate_groups.json: group 0: 'zzz.png'"):
        read_duplicate_groups(tmp_path)


def test_duplicate_groups_sharing_a_file_merge(tmp_path):
    write_voc_root(tmp_path, SPECS)
    (tmp_path / "duplicate_groups.json").write_text(json.dumps([["a.png", "b.png"], ["b.png", "c.png"]]))
    assert len(set(read_duplicate_groups(tmp_path).values())) == 1


def test_load_image_errors_name_the_file(tmp_path):
    write_voc_root(tmp_path, SPECS)
    with pytest.raises(DataError, match="nope.png: missing"):
        load_image(tmp_path, VocImage("images/nope.png", 10, 10, ()))
    with pytest.raises(DataError, match="a.png: image is 100x80"):
        load_image(tmp_path, VocImage("images/a.png", 10, 10, ()))


def test_real_voc_reads(shared_data):
    root = shared_data / "facemask_voc"
    ims = read_voc(root)
    assert len(ims) == 725
    assert sum(len(im.boxes) for im in ims) == 3490  # SOURCE.md counts
    groups = read_duplicate_groups(root)
    assert set(groups) == {im.file for im in ims}
    assert len(ims) - len(set(groups.values())) == 13  # 13 pairs listed
