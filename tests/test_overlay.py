"""Annotators: heatmap blend values, box colours by class, HUD text (state, no credentials)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from stream.config import OverlayConfig  # noqa: E402
from stream.frames import SourceEvent, SourceState  # noqa: E402
from stream.overlay import BoxAnnotator, HeatmapAnnotator, HudAnnotator, annotate, build_annotators  # noqa: E402
from stream.results import Detection, FrameResult  # noqa: E402
from stream.summary import SourceMonitor, state_text  # noqa: E402
from tests._stream_fakes import make_frame  # noqa: E402


def result(image, heat=None, dets=(), label="with_mask", source_id="cam"):
    f = make_frame(source_id, 5, image=image)
    return FrameResult(f, label, 0.9 if label else None, None, tuple(dets), heat)


def test_heatmap_blend_values():
    img = np.full((20, 30, 3), 100, np.uint8)
    heat = np.full((10, 15), 200, np.uint8)  # at another resolution: resized to the frame
    color = cv2.applyColorMap(np.full((1, 1), 200, np.uint8), cv2.COLORMAP_JET)[0, 0].astype(float)
    out = HeatmapAnnotator(alpha=0.25).annotate(img.copy(), result(img, heat))
    np.testing.assert_allclose(out[3, 4], 0.75 * 100 + 0.25 * color, atol=1)
    assert (HeatmapAnnotator(alpha=0.0).annotate(img.copy(), result(img, heat)) == img).all()
    assert (HeatmapAnnotator(enabled=False).annotate(img.copy(), result(img, heat)) == img).all()
    assert (HeatmapAnnotator().annotate(img.copy(), result(img, None)) == img).all()


def test_faces_heatmap_only_inside_faces():
    img = np.full((20, 30, 3), 100, np.uint8)
    heat = np.zeros((20, 30), np.uint8)
    heat[5:10, 5:10] = 255
    out = HeatmapAnnotator(alpha=0.5).annotate(img.copy(), result(img, heat, label=None))
    assert (out[15:, 15:] == 100).all() and (out[6, 6] != 100).any()


@pytest.mark.parametrize(
    "label,bgr", [("with_mask", (0, 200, 0)), ("without_mask", (0, 0, 255)), ("other", (255, 200, 0))]
)
def test_box_colour_by_class(label, bgr):
    img = np.zeros((100, 120, 3), np.uint8)
    det = Detection((20.0, 30.0, 80.0, 90.0), label, 0, 0.87)
    ann = BoxAnnotator(OverlayConfig().colors, OverlayConfig().default_color, thickness=2)
    out = ann.annotate(img.copy(), result(img, dets=[det], label=None))
    assert tuple(out[60, 20]) == bgr and tuple(out[89, 50]) == bgr  # left edge, bottom edge (x2/y2 exclusive)
    assert (out[60, 50] == 0).all()  # inside stays untouched


def test_box_clipped_at_border_never_raises():
    img = np.zeros((50, 50, 3), np.uint8)
    det = Detection((-10.0, -5.0, 500.0, 400.0), "without_mask", 1, 0.5)
    out = BoxAnnotator({"without_mask": (0, 0, 255)}).annotate(img.copy(), result(img, dets=[det]))
    assert tuple(out[25, 0]) == (0, 0, 255)


def test_state_text():
    assert state_text(SourceState.CONNECTED) == "CONNECTED"
    assert state_text(SourceState.RECONNECTING, 3) == "RECONNECTING 3"
    assert state_text(SourceState.END_OF_STREAM) == "END OF STREAM"


def test_hud_text_fps_latency_state_and_no_credentials():
    mon = SourceMonitor("rtsp://admin:***@cam/live")
    t0 = time.monotonic()
    for i in range(11):
        mon.on_frame(t0 + i * 0.04, 0.120)
    assert mon.fps == pytest.approx(25.0)
    mon.on_event(SourceEvent("x", SourceState.RECONNECTING, 0.0, "", 3))
    hud = HudAnnotator(lambda sid: mon)
    img = np.zeros((60, 400, 3), np.uint8)
    r = result(img, source_id="rtsp://admin:hunter2@cam/live?token=s3cret")
    text = hud.text(r)
    assert "RECONNECTING 3" in text and "25.0 FPS" in text and "120 ms" in text
    assert "hunter2" not in text and "s3cret" not in text
    out = hud.annotate(img.copy(), r)
    assert out[-20:].any() and not out[:20].any()


def test_build_annotators_and_annotate_copies():
    cfg = OverlayConfig(heatmap=False, hud=False)
    chain = build_annotators(cfg, lambda sid: SourceMonitor(sid))
    assert [type(a).__name__ for a in chain] == ["HeatmapAnnotator", "BoxAnnotator"]
    assert chain[0].enabled is False  # present so the h key can turn it on
    img = np.zeros((40, 40, 3), np.uint8)
    out = annotate(img, result(img, dets=[Detection((1.0, 1.0, 20.0, 20.0), "with_mask", 0, 0.9)]), chain)
    assert out is not img and not img.any() and out.any()
