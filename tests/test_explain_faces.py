"""``maskstream explain --mode faces`` on the bundled astronaut stills: one record per detected face, each
box on the hand-measured face, each label and probability equal to the classifier run on that crop alone."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from core.detect import DEFAULT, detector_class
from stream.cli.main import main
from tests.conftest import ROOT

SAMPLES = ROOT / "core" / "assets" / "samples"
# tests/data/LICENSE.md's hand-measured face (x 80-137, y 45-114 in the 200 px crop of rows 0-299, columns
# 60-359 of the 512 px photo), in the 384 px stills: (60 + 1.5 * v) * 0.75.
FACE = np.array([(60 + 1.5 * 80) * 0.75, 1.5 * 45 * 0.75, (60 + 1.5 * 137) * 0.75, 1.5 * 114 * 0.75])


def _installed() -> bool:
    import importlib.util

    return importlib.util.find_spec(detector_class(DEFAULT).package.module) is not None


pytestmark = pytest.mark.skipif(not _installed(), reason=f"the {DEFAULT} detector's wheel is not installed")


def iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The unmasked still left of the masked one: two faces, 384 px apart."""
    img = np.hstack([cv2.imread(str(SAMPLES / "astronaut.png")), cv2.imread(str(SAMPLES / "astronaut_masked.png"))])
    p = tmp_path_factory.mktemp("img") / "pair.png"
    cv2.imwrite(str(p), img)
    return p, img


def test_one_record_per_face_matching_the_classifier_on_each_crop(pair, tmp_path, capsys):
    from core.checkpoint import load_checkpoint
    from core.preprocess import images_to_input

    path, img = pair
    assert main(["explain", str(path), "--mode", "faces", "--json", "--out", str(tmp_path)]) == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["mode"] == "faces" and rec["detector"] == DEFAULT
    faces = sorted(rec["faces"], key=lambda f: f["box"][0])
    assert len(faces) == 2
    for f, dx in zip(faces, (0, 384)):
        assert iou(f["box"], FACE + [dx, 0, dx, 0]) > 0.6
        x1, y1, x2, y2 = f["crop"]
        assert x1 <= f["box"][0] and y1 <= f["box"][1] and x2 >= f["box"][2] and y2 >= f["box"][3]
        assert 0 <= f["map"]["in_face"] <= 1 and not f["map"]["degenerate"]
        px, py = f["map"]["peak"]
        assert x1 <= px <= x2 and y1 <= py <= y2
    assert [f["label"] for f in faces] == ["without_mask", "with_mask"]
    ckpt = load_checkpoint()
    crops = [img[f["crop"][1]:f["crop"][3], f["crop"][0]:f["crop"][2]] for f in faces]
    with torch.no_grad():
        logits, _ = ckpt.model.eval()(images_to_input(crops, ckpt.meta))
    probs = torch.softmax(logits.float(), 1).numpy()
    for f, p in zip(faces, probs):
        assert f["label"] == ckpt.meta.class_names[int(p.argmax())]
        for k, c in enumerate(ckpt.meta.class_names):
            assert f["probs"][c] == pytest.approx(float(p[k]), abs=1e-4)
    over = cv2.imread(rec["overlay"])
    assert over.shape == img.shape
    assert (over[5:20, 5:20] == img[5:20, 5:20]).all()  # far from any face: untouched
    cx, cy = (int(v) for v in faces[0]["map"]["peak"])
    assert np.abs(over[cy, cx].astype(int) - img[cy, cx].astype(int)).sum() > 0  # the map is blended there


def test_frame_mode_still_one_record_for_the_image(pair, tmp_path, capsys):
    path, _ = pair
    assert main(["explain", str(path), "--json", "--out", str(tmp_path)]) == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert "faces" not in rec and rec["label"] in ("with_mask", "without_mask")


def test_no_face_gives_an_empty_list_and_an_overlay(tmp_path, capsys):
    p = tmp_path / "flat.png"
    cv2.imwrite(str(p), np.full((120, 160, 3), 128, np.uint8))
    assert main(["explain", str(p), "--mode", "faces", "--out", str(tmp_path / "o")]) == 0
    assert "0 face(s)" in capsys.readouterr().out
    assert main(["explain", str(p), "--mode", "faces", "--json", "--out", str(tmp_path / "o")]) == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["faces"] == [] and (cv2.imread(rec["overlay"]) == 128).all()


def test_model_method_haycam_hr_per_face_with_the_calibrated_variant(pair, tmp_path, capsys):
    """haycam+hr in faces mode: the checkpoint's calibrated options reach every crop; the saved map is the
    method's own map of each crop (core.explain with those options), pasted back at the crop's place."""
    from core import explain
    from core.checkpoint import load_checkpoint
    from core.frame_boxes import paste_maps
    from core.localization import stored_threshold
    from core.preprocess import images_to_input

    path, img = pair
    out = tmp_path / "hr"
    assert main(["explain", str(path), "--mode", "faces", "--method", "haycam+hr", "--save-maps", "--json",
                 "--out", str(out)]) == 0
    (rec,) = json.loads(capsys.readouterr().out)
    ckpt = load_checkpoint()
    stored = stored_threshold(ckpt.thresholds, "haycam+hr", str(ckpt.path))
    assert rec["method"] == "haycam+hr" and rec["options"] == dict(stored.options)
    assert rec["options"]["variant"] == "shift" and rec["overlay"].endswith("_haycamplushr_faces.png")
    assert len(rec["faces"]) == 2
    rects = np.array([f["crop"] for f in rec["faces"]])
    crops = [img[y1:y2, x1:x2] for x1, y1, x2, y2 in rects]
    ref = explain(ckpt.model.eval(), images_to_input(crops, ckpt.meta), "haycam+hr", options=dict(stored.options),
                  threshold=stored.threshold)
    want = paste_maps(img.shape[:2], ref.maps.numpy(), rects, dtype=np.float32)
    got = np.load(rec["maps"][0])
    assert got.shape == img.shape[:2] and np.abs(got - want).max() < 1e-4
    for f, boxes in zip(rec["faces"], ref.boxes):
        assert len(f["map_boxes"]) == len(boxes) > 0


def test_unknown_method_is_refused_in_faces_mode(pair, tmp_path, capsys):
    path, _ = pair
    assert main(["explain", str(path), "--mode", "faces", "--method", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "maskstream: error:" in err and "nope" in err and "haycam+hr" in err
