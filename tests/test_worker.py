"""The batched worker: Processor results against core.explain, faces mode in one batch, bad frames,
and the BatchWorker thread's batching, ordering and error hand-off."""

from __future__ import annotations

import dataclasses
import queue
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from core.explain import explain  # noqa: E402
from core.preprocess import images_to_input  # noqa: E402
from stream.config import WorkerConfig  # noqa: E402
from stream.frames import Frame, SourceEvent, SourceState  # noqa: E402
from stream.processor import Processor, resolve_threshold  # noqa: E402
from stream.results import Done, FrameResult, SkippedFrame  # noqa: E402
from stream.sources.normalize import to_bgr  # noqa: E402
from stream.worker import BatchWorker  # noqa: E402
from tests._stream_fakes import CLASSES, FakeDetector, FakeSource, make_frame, save_seeded_checkpoint, torch_backend  # noqa: E402
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    return torch_backend(save_seeded_checkpoint(tmp_path_factory.mktemp("ck") / "m.pt", input_size=96))


class CountingBackend:
    def __init__(self, inner):
        self.inner, self.calls, self.batch_sizes = inner, 0, []
        self.meta, self.device, self.dtype = inner.meta, inner.device, inner.dtype

    def forward(self, x):
        self.calls += 1
        self.batch_sizes.append(int(x.shape[0]))
        return self.inner.forward(x)

    def head_weights(self):
        return self.inner.head_weights()


@pytest.mark.parametrize("method", ["haycam+", "gradcam"])
def test_frame_mode_matches_core_explain(backend, method):
    cfg = WorkerConfig(method=method, batch_size=3)
    proc = Processor(backend, cfg)
    frames = [make_frame("a", i, h=60, w=100) for i in range(3)]
    results = proc.process(frames)
    x = images_to_input([f.image for f in frames], backend.meta)
    ref = explain(backend.model, x, method, threshold=resolve_threshold(cfg), options={"variance_fraction": 0.9})
    for i, r in enumerate(results):
        assert isinstance(r, FrameResult) and r.frame is frames[i]
        assert r.label == CLASSES[int(ref.labels[i])]
        np.testing.assert_allclose(r.probs, ref.probs[i].numpy(), rtol=1e-4, atol=1e-5)
        # the heatmap is the native map (3x3 at 96 px), never an input-size copy
        assert r.heatmap.shape == tuple(ref.raw_maps.shape[1:]) == (3, 3)
        np.testing.assert_array_equal(
            r.heatmap, (ref.low_res_maps[i] * 255).round().clamp(0, 255).to(torch.uint8).numpy()
        )
        # boxes: the map's boxes, squashed from 96x96 input to 100x60 frame pixels
        assert len(r.detections) == len(ref.boxes[i])
        for d, b in zip(r.detections, ref.boxes[i]):
            np.testing.assert_allclose(
                d.box, [b.x1 * 100 / 96, b.y1 * 60 / 96, b.x2 * 100 / 96, b.y2 * 60 / 96], rtol=1e-5
            )
            assert d.label in CLASSES and 0.5 <= d.score <= 1.0 and d.map_score == pytest.approx(b.score)


def test_heatmap_drawn_from_native_map_looks_like_the_input_size_one(backend):
    # The overlay upsamples the native map itself (cv2.resize); drawn at frame size it is the
    # picture the input-size map gave: same colours within a few levels of 255.
    from stream.overlay import HeatmapAnnotator

    frame = make_frame("a", 1, h=120, w=160)
    (r,) = Processor(backend, WorkerConfig()).process([frame])
    x = images_to_input([frame.image], backend.meta)
    full = explain(backend.model, x, "haycam+").maps[0]
    full_u8 = (full * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    ann = HeatmapAnnotator(alpha=1.0)
    small_drawn = ann.annotate(frame.image.copy(), r)
    full_drawn = ann.annotate(frame.image.copy(), dataclasses.replace(r, heatmap=full_u8))
    assert r.heatmap.nbytes == 9  # 3x3 bytes crossed to the host, not 96x96
    assert np.abs(small_drawn.astype(int) - full_drawn.astype(int)).mean() < 4


def test_whole_frame_box_gets_frame_label(backend):
    # threshold 0: every pixel is foreground, so the single box is the whole frame and its
    # class evidence equals the frame's logits: same label, same probability.
    cfg = WorkerConfig(threshold={"mode": "fraction", "value": 0.0, "min_area": 0.0})  # type: ignore[arg-type]
    from stream.config import ThresholdConfig

    cfg = WorkerConfig(threshold=ThresholdConfig("fraction", 0.0, 0.0))
    (r,) = Processor(backend, cfg).process([make_frame("a", 3, h=64, w=64)])
    (d,) = r.detections
    assert d.box == (0.0, 0.0, 64.0, 64.0)
    assert d.label == r.label and d.score == pytest.approx(r.score, abs=1e-4)


def test_faces_mode_one_forward_for_all_faces(backend):
    cb, det = CountingBackend(backend), FakeDetector()
    proc = Processor(cb, WorkerConfig(mode="faces", face_margin=0.0), det)
    frames = [make_frame("a", i, h=100, w=200) for i in range(3)]
    results = proc.process(frames)
    assert cb.calls == 1 and cb.batch_sizes == [6] and det.calls == 1
    for r in results:
        assert r.label is None and len(r.detections) == 2
        assert r.detections[0].box == (20.0, 10.0, 80.0, 50.0)  # 0.1..0.4 x 200, 0.1..0.5 x 100
        assert r.detections[1].box == (100.0, 20.0, 180.0, 80.0)
        assert [d.map_score for d in r.detections] == pytest.approx([0.9, 0.8])
        assert r.heatmap.shape == (100, 200) and r.heatmap[:10].max() == 0  # nothing outside faces
        assert r.heatmap[10:50, 20:80].max() > 0
    # each face's class equals classifying its crop alone
    crop = frames[0].image[10:50, 20:80]
    logits, _ = backend.forward(images_to_input([crop], backend.meta))
    assert results[0].detections[0].label == CLASSES[int(logits.argmax())]


def test_faces_mode_without_faces(backend):
    proc = Processor(backend, WorkerConfig(mode="faces"), FakeDetector(rel_boxes=np.zeros((0, 5))))
    (r,) = proc.process([make_frame("a", 0)])
    assert len(r.detections) == 0 and r.heatmap is None


@pytest.mark.parametrize(
    "image,ok,reason,value",
    [
        (np.zeros((0, 0, 3), np.uint8), False, "empty", None),
        (np.zeros((10, 0, 3), np.uint8), False, "empty", None),
        (np.full((10, 12), 7, np.uint8), True, "", 7),
        (np.full((10, 12, 1), 7, np.uint8), True, "", 7),
        (np.full((10, 12, 4), 7, np.uint8), True, "", 7),
        # 16-bit frames are scaled to 8 bits (top byte), not clipped: 0x1234 -> 0x12, 0xFFFF -> 255
        (np.full((10, 12, 3), 0x1234, np.uint16), True, "", 0x12),
        (np.full((10, 12), 0x00FF, np.uint16), True, "", 0),
        (np.full((10, 12, 3), 0.5, np.float32), False, "dtype_float32", None),
        (np.zeros((10, 12, 5), np.uint8), False, "channels_5", None),
        (None, False, "none", None),
        ("frame", False, "not_an_array", None),
    ],
)
def test_one_frame_normaliser(image, ok, reason, value):
    """The worker and the sources share stream.sources.normalize.to_bgr (one behaviour for 16-bit frames)."""
    out, why, _ = to_bgr(image)
    assert (out is not None) == ok and (why or "") == reason
    if ok:
        assert out.shape == (10, 12, 3) and out.dtype == np.uint8
        assert (out == value).all()


def test_bad_frames_are_skipped_not_fatal(backend):
    frames = [
        Frame("a", 0, np.zeros((0, 0, 3), np.uint8), 0.0),
        make_frame("a", 1),
        Frame("a", 2, np.full((30, 40), 9, np.uint8), 0.0),
        Frame("a", 3, np.zeros((30, 40, 4), np.uint8), 0.0),
    ]
    out = Processor(backend, WorkerConfig()).process(frames)
    assert isinstance(out[0], SkippedFrame) and out[0].reason == "empty"
    assert [type(o).__name__ for o in out[1:]] == ["FrameResult"] * 3
    assert out[2].frame.image.shape == (30, 40, 3)


def _drain(q: queue.Queue, timeout: float = 20.0) -> list:
    items, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        it = q.get(timeout=timeout)
        items.append(it)
        if isinstance(it, Done):
            return items
    raise AssertionError("no Done")


@pytest.mark.timeout(30)
def test_batchworker_batches_and_keeps_order():
    batches = []

    def process(frames):
        batches.append([(f.source_id, f.index) for f in frames])
        return [("R", f.source_id, f.index) for f in frames]

    ev = SourceEvent("a", SourceState.RECONNECTING, 0.0, "x", 2)
    a = FakeSource([make_frame("a", 0), make_frame("a", 1), ev, make_frame("a", 2)], "a")
    b = FakeSource([make_frame("b", i) for i in range(3)], "b")
    q, stop = queue.Queue(maxsize=4), threading.Event()
    w = BatchWorker([a, b], process, q, stop, batch_size=4, batch_timeout_s=0.5)
    w.start()
    items = _drain(q)
    w.join(5)
    assert not w.is_alive()
    done = items[-1]
    assert isinstance(done, Done) and done.error is None and done.frames_in == 6
    assert all(len(bt) <= 4 for bt in batches) and sum(len(bt) for bt in batches) == 6
    a_items = [
        it
        for it in items
        if (isinstance(it, tuple) and it[1] == "a") or isinstance(it, SourceEvent) and it.source_id == "a"
    ]
    assert [x if isinstance(x, tuple) else x.state for x in a_items] == [
        ("R", "a", 0),
        ("R", "a", 1),
        SourceState.RECONNECTING,
        ("R", "a", 2),
        SourceState.END_OF_STREAM,
    ]


@pytest.mark.timeout(30)
def test_batchworker_partial_batch_after_timeout():
    batches = []
    src = FakeSource([make_frame("a", 0)], "a", end=False)  # one frame, then silence
    q, stop = queue.Queue(maxsize=4), threading.Event()
    w = BatchWorker(
        [src], lambda fr: batches.append(len(fr)) or [f.index for f in fr], q, stop, batch_size=8, batch_timeout_s=0.05
    )
    w.start()
    assert q.get(timeout=5) == 0  # pushed well before 8 frames arrived
    stop.set()
    w.join(5)
    assert not w.is_alive() and batches == [1]


@pytest.mark.timeout(30)
def test_batchworker_max_frames():
    src = FakeSource([make_frame("a", i) for i in range(50)], "a")
    q, stop = queue.Queue(maxsize=100), threading.Event()
    w = BatchWorker([src], lambda fr: [f.index for f in fr], q, stop, batch_size=4, max_frames=10)
    w.start()
    items = _drain(q)
    assert items[:-1] == list(range(10)) and items[-1].frames_in == 10


@pytest.mark.timeout(30)
@pytest.mark.parametrize("where", ["process", "source"])
def test_batchworker_error_is_handed_over(where):
    def process(frames):
        if where == "process":
            raise ValueError("boom in process")
        return [0] * len(frames)

    src = FakeSource([make_frame("a", i) for i in range(5)], "a", fail_at=3 if where == "source" else None)
    q, stop = queue.Queue(maxsize=1), threading.Event()
    w = BatchWorker([src], process, q, stop, batch_size=2)
    w.start()
    items = _drain(q)
    w.join(5)
    assert not w.is_alive()
    assert isinstance(items[-1].error, (ValueError, RuntimeError))


@pytest.mark.timeout(30)
def test_batchworker_never_blocks_after_stop():
    src = FakeSource([make_frame("a", i) for i in range(100)], "a")
    q, stop = queue.Queue(maxsize=1), threading.Event()  # nobody reads
    w = BatchWorker([src], lambda fr: [0] * len(fr), q, stop, batch_size=1)
    w.start()
    time.sleep(0.2)
    stop.set()
    w.join(5)
    assert not w.is_alive()


def test_fast_resize_close_to_reference_path(backend):
    # A natural image (the bundled public-domain sample), not noise: noise is where shrinking
    # uint8 first differs most, and a camera never sends it.
    photo = cv2.resize(cv2.imread(str(ROOT / "core/assets/samples/astronaut.png")), (640, 360))
    frames = [dataclasses.replace(make_frame("a", i, h=360, w=640), image=np.roll(photo, 40 * i, axis=1))
              for i in range(2)]
    fast = Processor(backend, WorkerConfig(fast_resize=True)).process(frames)
    ref = Processor(backend, WorkerConfig(fast_resize=False)).process(frames)
    for f, r in zip(fast, ref):
        np.testing.assert_allclose(f.probs, r.probs, atol=1e-2)  # pure-noise frames: the worst case
        assert np.abs(f.heatmap.astype(int) - r.heatmap.astype(int)).mean() < 3  # of 255
