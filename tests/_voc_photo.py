"""A real val photo of the shared facemask_voc and a fake detector that returns its annotated faces.

For tests that check a research tool against the worker on the same faces: the densest val photo (most
two-class faces), its two-class boxes as an (N, 5) detector output (score 0.9), and the worker's labels of those
boxes keyed by the (clipped) box. Callers skip through ``shared_data`` when the data is absent.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest


@dataclass
class ValPhoto:
    """data: the facemask_voc folder; ann: the photo's annotation; image: (H, W, 3) uint8 BGR;
    boxes: (N, 5) float32 two-class boxes x1, y1, x2, y2, 0.9."""

    data: Path
    ann: dict
    image: np.ndarray
    boxes: np.ndarray

    @property
    def name(self) -> str:
        """The photo's file name, as image-folder events carry it."""
        return self.ann["file"].split("/")[-1]

    def clipped(self) -> list[tuple[float, ...]]:
        """Each box clipped to the photo and rounded to 0.1 px, as the worker reports it."""
        h, w = self.image.shape[:2]
        return [tuple(round(float(v), 1) for v in np.clip(b[:4], 0, [w, h, w, h])) for b in self.boxes]

    def events(self, path: Path, label: str = "with_mask") -> Path:
        """Write an events file in which a run found exactly the annotated boxes (all labelled ``label``)."""
        lines = [{"type": "frame", "name": self.name}]
        lines += [{"type": "detection", "name": self.name, "box": [float(v) for v in b[:4]], "score": 0.9,
                   "label": label} for b in self.boxes]
        path.write_text("".join(json.dumps(x) + "\n" for x in lines))
        return path


class AnnotationDetector:
    """A 'detector' that returns the given (N, 5) boxes for every image."""

    def __init__(self, boxes: np.ndarray) -> None:
        self.boxes = boxes

    def detect(self, images: list) -> list[np.ndarray]:
        return [self.boxes.copy() for _ in images]


def densest_val_photo(shared_data: Path) -> ValPhoto:
    """The val photo with the most two-class faces (skips the test when facemask_voc is absent)."""
    from tools.crowd_eval import TWO_CLASS
    from tools.detector_recall import split_files

    data = shared_data / "facemask_voc"
    if not (data / "annotations.json").is_file():
        pytest.skip("facemask_voc is not in the shared data")
    val = split_files(data, "val")
    anns = [a for a in json.loads((data / "annotations.json").read_text()) if a["file"] in val]
    a = max(anns, key=lambda a: sum(b["label"] in TWO_CLASS for b in a["boxes"]))
    boxes = np.array([b["xyxy"] + [0.9] for b in a["boxes"] if b["label"] in TWO_CLASS], np.float32)
    return ValPhoto(data, a, cv2.imread(str(data / a["file"])), boxes)


def worker_labels(photo: ValPhoto, backend, cfg) -> dict[tuple[float, ...], int]:
    """The worker's (``stream.processor.Processor``) class index of each annotated box, keyed by its reported box."""
    from stream.frames import Frame
    from stream.processor import Processor

    proc = Processor(backend, cfg, AnnotationDetector(photo.boxes))
    (r,) = proc.process([Frame("p", 0, photo.image, time.monotonic(), None)])
    return {tuple(round(v, 1) for v in d.box): d.label_index for d in r.detections}
