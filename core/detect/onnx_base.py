"""Shared batching for the ONNX detectors: letterbox a list of frames onto one canvas, run, undo."""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from core.detect.base import FaceDetector
from core.detect.geometry import (
    Letterbox,
    canvas_size,
    place,
    plan_letterbox,
    undo_letterbox,
)


class CanvasDetector(FaceDetector):
    """A detector whose network takes a (B, 3, H, W) canvas (H, W multiples of ``stride``).

    Subclasses give ``stride``, ``fill`` (BGR padding value) and implement :meth:`_blob` and :meth:`_decode`.
    """

    stride: int = 32
    fill: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def _raw(self, images: list[np.ndarray]) -> list[np.ndarray]:
        plans = [plan_letterbox(im.shape[:2], self.options.input_size) for im in images]
        cw, ch = canvas_size(plans, self.stride)
        canvas = np.stack([place(im, lb, (cw, ch), self.fill) for im, lb in zip(images, plans)])
        per_image = self._decode(self._run(self._blob(canvas)), (ch, cw))
        return [undo_letterbox(d, lb) for d, lb in zip(per_image, plans)]

    @abstractmethod
    def _blob(self, canvas: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 BGR canvas -> the network's (B, 3, H, W) float32 input."""

    @abstractmethod
    def _run(self, blob: np.ndarray) -> list[np.ndarray]:
        """Network outputs for the blob."""

    @abstractmethod
    def _decode(self, outputs: list[np.ndarray], canvas_hw: tuple[int, int]) -> list[np.ndarray]:
        """Network outputs -> per-image candidate detections (n_i, 5) in canvas pixels."""


__all__ = ["CanvasDetector", "Letterbox"]
