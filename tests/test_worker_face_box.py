"""Faces mode reports the detector's face box (what ground truth is matched against and what is drawn),
while the classifier's crop around it keeps its ``face_margin``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from stream.config import WorkerConfig  # noqa: E402
from stream.processor import Processor  # noqa: E402
from tests._stream_fakes import FakeDetector, make_frame, save_seeded_checkpoint, torch_backend  # noqa: E402


@pytest.mark.timeout(60)
def test_face_box_is_the_detector_box_not_the_crop(tmp_path):
    backend = torch_backend(save_seeded_checkpoint(tmp_path / "m.pt", input_size=64))
    det = FakeDetector(rel_boxes=((0.1, 0.1, 0.4, 0.5, 0.9), (0.95, 0.5, 1.0, 0.9, 0.8)))
    (r,) = Processor(backend, WorkerConfig(mode="faces", face_margin=0.25), det).process(
        [make_frame("a", 0, h=100, w=200)]
    )
    # 0.1..0.4 x 200, 0.1..0.5 x 100; the second box touches the right border: clipped to the frame
    assert [d.box for d in r.detections] == [(20.0, 10.0, 80.0, 50.0), (190.0, 50.0, 200.0, 90.0)]
    # the maps are pasted over the crops only (the first crop: [5, 0, 95, 60] with the 25% margin)
    assert r.heatmap[:, 100:180].max() == 0 and r.heatmap[60:, :100].max() == 0


def test_reported_faces_clips_boxes_and_fills_missing_scores():
    import numpy as np

    from stream.processor import reported_faces

    dets = np.array([[-4, 2, 30, 20, 0.9], [50, 60, 130, 90, 0.7], [1, 1, 5, 5, 0.1]], np.float32)
    got = reported_faces(dets, np.array([1, 0]), (80, 120))  # H=80, W=120; the third row not kept
    np.testing.assert_array_equal(got, np.array([[50, 60, 120, 80, 0.7], [0, 2, 30, 20, 0.9]], np.float32))
    no_scores = reported_faces(dets[:, :4], np.array([2]), (80, 120))
    np.testing.assert_array_equal(no_scores, np.array([[1, 1, 5, 5, 1]], np.float32))
    assert reported_faces(np.zeros(0, np.float32), np.zeros(0, np.int64), (80, 120)).shape == (0, 5)


@pytest.mark.timeout(60)
def test_crowd_preset_crops_the_face_with_thirty_percent_per_side(tmp_path):
    """The crowd preset's classifier crop (``face_margin: 0.3``, chosen on val photos, docs/CROWD.md)."""
    from stream.config import load_config

    wcfg = load_config("crowd").worker
    assert wcfg.face_margin == 0.3
    backend = torch_backend(save_seeded_checkpoint(tmp_path / "m.pt", input_size=64))
    det = FakeDetector(rel_boxes=((0.1, 0.1, 0.4, 0.5, 0.9),))
    proc = Processor(backend, wcfg, det)
    seen = []
    to_input = proc._to_input
    proc._to_input = lambda images: seen.extend(images) or to_input(images)
    (r,) = proc.process([make_frame("a", 0, h=100, w=200)])
    # face box (20, 10, 80, 50): 60 x 40 px; + 0.3 x 60 = 18 px left/right, + 0.3 x 40 = 12 px up/down ->
    # (2, -2, 98, 62), clipped at the top -> rows 0..62, columns 2..98: a 62 x 96 crop
    assert [d.box for d in r.detections] == [(20.0, 10.0, 80.0, 50.0)]
    assert [im.shape for im in seen] == [(62, 96, 3)]
    frame = make_frame("a", 0, h=100, w=200).image
    assert (seen[0] == frame[0:62, 2:98]).all()
