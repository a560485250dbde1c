"""Test doubles for the processing side: a scripted FrameSource, a fake face detector,
a seeded checkpoint and generated video. Shared by tests/test_{worker,pipeline,sinks,overlay,run_cli}.py."""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from stream.frames import Frame, SourceEvent, SourceState, SourceStats

CLASSES = ("with_mask", "without_mask")


def make_frame(
    source_id: str = "fake",
    index: int = 0,
    h: int = 48,
    w: int = 64,
    seed: int | None = None,
    image: np.ndarray | None = None,
) -> Frame:
    rng = np.random.default_rng(index if seed is None else seed)
    img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) if image is None else image
    return Frame(source_id, index, img, time.monotonic(), None)


class FakeSource:
    """A FrameSource that hands out a scripted list of frames/events, then END_OF_STREAM.

    ``fail_at``: raise RuntimeError on that get() call; ``end``: False keeps returning None
    forever (a live source that went quiet); ``delay``: seconds between items.
    """

    def __init__(
        self,
        items,
        source_id: str = "fake",
        live: bool = False,
        end: bool = True,
        fail_at: int | None = None,
        delay: float = 0.0,
    ) -> None:
        self.items = collections.deque(items)
        self.source_id = source_id
        self.live = live
        self.end = end
        self.fail_at = fail_at
        self.delay = delay
        self.stats = SourceStats()
        self.state = SourceState.CONNECTING
        self.calls = 0
        self.started = self.stopped = False
        self._ended = False
        self._lock = threading.Lock()

    def start(self) -> None:
        self.started = True
        self.state = SourceState.CONNECTED

    def get(self, timeout: float):
        with self._lock:
            self.calls += 1
            if self.fail_at is not None and self.calls >= self.fail_at:
                raise RuntimeError("fake source exploded")
            if self.items:
                if self.delay:
                    time.sleep(self.delay)
                it = self.items.popleft()
                if isinstance(it, Frame):
                    self.stats.frames_read += 1
                    it = Frame(it.source_id, it.index, it.image, time.monotonic(), it.pos_ms)
                return it
            if self.end and not self._ended:
                self._ended = True
                self.state = SourceState.END_OF_STREAM
                return SourceEvent(self.source_id, SourceState.END_OF_STREAM, time.monotonic(), "end")
        time.sleep(min(timeout, 0.01))
        return None

    def stop(self) -> None:
        self.stopped = True

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


class FakeDetector:
    """Returns the same boxes (frame-relative fractions) for every image."""

    def __init__(self, rel_boxes=((0.1, 0.1, 0.4, 0.5, 0.9), (0.5, 0.2, 0.9, 0.8, 0.8))) -> None:
        self.rel = np.array(rel_boxes, np.float32).reshape(-1, 5)
        self.calls = 0

    def detect(self, images):
        self.calls += 1
        out = []
        for im in images:
            h, w = im.shape[:2]
            d = self.rel.copy()
            d[:, [0, 2]] *= w
            d[:, [1, 3]] *= h
            out.append(d)
        return out


def save_seeded_checkpoint(path: Path, input_size: int = 96, seed: int = 0) -> Path:
    from core.checkpoint import save_checkpoint
    from core.model import CamModel, ModelMeta, build_torchvision

    torch.manual_seed(seed)
    model = CamModel(build_torchvision("mobilenet_v2", 2)).eval()
    # torchvision's fresh head gives logits ~1e-10 (argmax ties); rescale it so classes differ.
    with torch.no_grad():
        pooled = model.forward_features(torch.rand(8, 3, input_size, input_size)).mean((2, 3))
        lin = model.net.classifier[-1]
        lin.weight.normal_(0.0, 1.0 / (float(pooled.std()) * pooled.shape[1] ** 0.5 + 1e-12))
    return save_checkpoint(path, model, ModelMeta("mobilenet_v2", CLASSES, input_size=input_size))


def torch_backend(path: Path):
    from core.backends import TorchBackend
    from core.checkpoint import load_checkpoint

    ck = load_checkpoint(path)
    return TorchBackend(ck.model, ck.meta, torch.device("cpu"), False)


def write_video(path: Path, n: int = 20, size: tuple[int, int] = (160, 120), fps: float = 25.0) -> Path:
    """A clip whose frame i shows a bright square at a position that moves with i, and i in pixels."""
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix == ".mp4" else "MJPG"))
    wr = cv2.VideoWriter(str(path), fourcc, fps, size)
    assert wr.isOpened()
    w, h = size
    for i in range(n):
        im = np.full((h, w, 3), 40, np.uint8)
        x = (i * 7) % max(1, w - 30)
        cv2.rectangle(im, (x, 20), (x + 30, 60), (230, 230, 230), -1)
        cv2.putText(im, str(i), (5, h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1)
        wr.write(im)
    wr.release()
    return path


def count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n
