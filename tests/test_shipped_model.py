"""The shipped default checkpoint on the bundled (public-domain) sample images.

These are behaviour checks of the file users get by default, against labels and a face box
read off the images by hand (not numbers copied from the model's own output).
"""
from __future__ import annotations

import cv2
import pytest

from core import explain
from core.cams import METHODS
from core.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from core.localization import threshold_from_dict
from core.metrics import box_iou
from core.preprocess import images_to_input
from tests.conftest import ROOT

SAMPLES = ROOT / "core/assets/samples"
# the face in astronaut_face_masked.png (200x200), hairline to chin, ear to ear, marked by hand
FACE_BOX = (50.0, 50.0, 160.0, 160.0)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt():
    return load_checkpoint(DEFAULT_CHECKPOINT)


@pytest.mark.parametrize("name, label", [
    ("astronaut.png", "without_mask"),
    ("astronaut_masked.png", "with_mask"),
    ("astronaut_face_masked.png", "with_mask"),
])
def test_default_model_labels_the_samples(ckpt, name, label):
    img = cv2.imread(str(SAMPLES / name))
    res = explain(ckpt.model, images_to_input([img], ckpt.meta), "haycam+")
    assert ckpt.meta.class_names[int(res.labels[0])] == label


def test_haycam_plus_box_finds_the_face(ckpt):
    img = cv2.imread(str(SAMPLES / "astronaut_face_masked.png"))
    spec = threshold_from_dict(ckpt.thresholds["haycam+"])
    res = explain(ckpt.model, images_to_input([img], ckpt.meta), "haycam+", threshold=spec)
    s = ckpt.meta.input_size
    box = res.boxes[0][0].scaled(img.shape[1] / s, img.shape[0] / s).xyxy
    assert box_iou(box, FACE_BOX) >= 0.5, box


def test_thresholds_are_calibrated_on_val_and_stored(ckpt):
    # eval --calibrate fitted every method's box threshold on the val side and stored it in the file
    for m in [*METHODS, "haycam+hr"]:
        entry = ckpt.thresholds[m]
        assert entry["calibrated"] is True and entry["n_val"] > 0, m
        threshold_from_dict(entry)  # well-formed
    assert ckpt.thresholds["haycam+hr"]["options"]["variant"] in ("dilate", "fuse", "scale", "shift")
