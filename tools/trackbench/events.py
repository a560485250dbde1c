"""``maskstream run`` JSON Lines events -> per-frame predictions for the scorer.

Reads the ``detection`` events (issue 13's schema: ``frame_index``, ``box``, ``label``, ``score``,
``person_id`` (null when untracked), ``person_label`` (the person's decided label or ``"undecided"``))
and counts ``person`` events by kind. Frames become 1-based (MOT): ``frame = frame_index + 1``.

faces-mode boxes in the events are the detector's face boxes (``stream.processor.reported_face_boxes``), so
they are compared with the ground-truth face boxes as they are (``margin`` 0). Events written before that
change carry the crop the classifier saw, the face box enlarged by ``worker.face_margin`` (0.15) per side;
``margin=0.15`` shrinks those back (a face box enlarged by 0.15 per side has IoU 0.59 with itself).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Predictions:
    """N detections of one clip.

    Attributes:
        frame: (N,) int, 1-based.
        xyxy: (N, 4) float face boxes, frame pixels.
        label: (N,) object: the per-frame classification.
        person_id: (N,) int track ids, -1 where untracked.
        person_label: (N,) object: the track's decided label, ``"undecided"``, or None when absent.
        person_events: count of ``person`` events by kind (appeared, decided, changed, left).
        tracked: True when at least one detection carries a person_id.
    """

    frame: np.ndarray
    xyxy: np.ndarray
    label: np.ndarray
    person_id: np.ndarray
    person_label: np.ndarray
    person_events: dict = field(default_factory=dict)

    @property
    def tracked(self) -> bool:
        return bool((self.person_id >= 0).any())

    @classmethod
    def from_lists(cls, frame, xyxy, label, person_id=None, person_label=None, person_events=None) -> "Predictions":
        """Arrays from plain lists (``person_id`` None: untracked)."""
        n = len(frame)
        pid = [-1] * n if person_id is None else _int_ids(person_id)
        return cls(np.asarray(frame, np.int64).reshape(n), np.asarray(xyxy, np.float64).reshape(n, 4),
                   np.array(list(label), dtype=object).reshape(n), np.asarray(pid, np.int64).reshape(n),
                   np.array([None] * n if person_label is None else list(person_label), dtype=object).reshape(n),
                   dict(person_events or {}))


def _int_ids(ids) -> list[int]:
    """Person ids as ints >= 0 (-1 for None); ids that are not integers (e.g. strings) are numbered in order."""
    out, names = [], {}
    for v in ids:
        if v is None:
            out.append(-1)
        elif isinstance(v, (int, np.integer)) and v >= 0:
            out.append(int(v))
        else:
            out.append(names.setdefault(v, 10**9 + len(names)))
    return out


def shrink(xyxy: np.ndarray, margin: float) -> np.ndarray:
    """Undo a per-side enlargement by ``margin`` of the box size: (N, 4) -> (N, 4)."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    if margin == 0:
        return b.copy()
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    dw, dh = w * margin / (1 + 2 * margin), h * margin / (1 + 2 * margin)
    return np.stack([b[:, 0] + dw, b[:, 1] + dh, b[:, 2] - dw, b[:, 3] - dh], 1)


def read_events(path: str | Path, margin: float = 0.0, source: str | None = None) -> Predictions:
    """Detections of ``path`` (one source: ``source`` or the first one seen), boxes shrunk by ``margin``.

    Raises:
        ValueError: naming the file and line of a malformed event.
    """
    frames, boxes, labels, pids, plabels = [], [], [], [], []
    kinds: dict[str, int] = {}
    with open(path, encoding="utf-8") as fh:
        for k, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} line {k}: not JSON ({exc.msg})") from None
            typ = ev.get("type")
            if typ not in ("detection", "person"):
                continue
            if source is None:
                source = ev.get("source")
            if ev.get("source") != source:
                continue
            if typ == "person":
                kinds[str(ev.get("event"))] = kinds.get(str(ev.get("event")), 0) + 1
                continue
            try:
                frames.append(int(ev["frame_index"]) + 1)
                boxes.append([float(v) for v in ev["box"]])
                labels.append(str(ev["label"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path} line {k}: detection event without a usable {exc}") from None
            pids.append(ev.get("person_id"))
            plabels.append(ev.get("person_label"))
    p = Predictions.from_lists(frames, boxes, labels, pids, plabels, kinds)
    return Predictions(p.frame, shrink(p.xyxy, margin), p.label, p.person_id, p.person_label, kinds)
