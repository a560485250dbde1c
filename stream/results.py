"""The result type: what the worker produces and every consumer reads. No torch here, on purpose.

A web page, a message publisher, a tracker or a remote aggregator reads :class:`FrameResult` and
:class:`Detections` with numpy only (``tests/test_results.py`` asserts that importing this module
does not import torch). The boxes of a frame are arrays, one row per box, in the spirit of
``supervision.Detections``: ``xyxy`` (N, 4), ``class_id`` (N,), ``confidence`` (N,), plus an
optional ``tracker_id`` (N,) and per-box extra arrays in ``data``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from stream.frames import Frame


@dataclass(frozen=True)
class Detection:
    """One box, a read-only view of one row of :class:`Detections`.

    Attributes:
        box: (x1, y1, x2, y2) in frame pixels.
        label: class name.
        label_index: class index.
        score: probability of ``label``.
        map_score: frame mode: mean map value inside the blob; faces mode: detector score; or None.
        track_id: the tracker's id for this box, or None when untracked.
        data: this box's entries of ``Detections.data``.
    """

    box: tuple[float, float, float, float]
    label: str
    label_index: int
    score: float
    map_score: float | None = None
    track_id: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


def _column(values: Any, n: int, dtype: Any, name: str) -> np.ndarray:
    a = np.asarray(values, dtype=dtype).reshape(-1)
    if a.shape[0] != n:
        raise ValueError(f"Detections.{name} has {a.shape[0]} rows for {n} boxes")
    return a


@dataclass(frozen=True, eq=False)
class Detections:
    """The boxes of one frame as arrays (N boxes, N may be 0), best first.

    Attributes:
        xyxy: (N, 4) float32, (x1, y1, x2, y2) in frame pixels, x2 >= x1 and y2 >= y1.
        class_id: (N,) int64 class index of each box.
        confidence: (N,) float32 probability of the box's class.
        class_names: names of the model's classes; ``class_names[class_id[i]]`` is box i's label.
        map_score: (N,) float32 frame mode: mean map value in the blob; faces mode: detector score;
            NaN where there is none.
        tracker_id: (N,) int64 track id per box (-1: not tracked), or None when no tracker ran.
        data: per-box extra arrays, each with N rows (e.g. a person's decided label).
    """

    xyxy: np.ndarray
    class_id: np.ndarray
    confidence: np.ndarray
    class_names: tuple[str, ...] = ()
    map_score: np.ndarray | None = None
    tracker_id: np.ndarray | None = None
    data: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = xyxy.shape[0]
        if n and not ((xyxy[:, 2] >= xyxy[:, 0]).all() and (xyxy[:, 3] >= xyxy[:, 1]).all()):
            raise ValueError(f"boxes must be (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1, but got {xyxy.tolist()}")
        set_ = object.__setattr__
        set_(self, "xyxy", xyxy)
        set_(self, "class_id", _column(self.class_id, n, np.int64, "class_id"))
        set_(self, "confidence", _column(self.confidence, n, np.float32, "confidence"))
        ms = np.full(n, np.nan, np.float32) if self.map_score is None else self.map_score
        set_(self, "map_score", _column(ms, n, np.float32, "map_score"))
        if self.tracker_id is not None:
            set_(self, "tracker_id", _column(self.tracker_id, n, np.int64, "tracker_id"))
        data = {}
        for k, v in dict(self.data).items():
            a = np.asarray(v)
            if a.ndim == 0 or a.shape[0] != n:
                raise ValueError(f"Detections.data[{k!r}] has {0 if a.ndim == 0 else a.shape[0]} rows for {n} boxes")
            data[k] = a
        set_(self, "data", data)
        set_(self, "class_names", tuple(self.class_names))
        if n and (self.class_id.min() < 0 or (self.class_names and self.class_id.max() >= len(self.class_names))):
            raise ValueError(f"class_id {self.class_id.tolist()} out of range for classes {self.class_names}")

    @classmethod
    def empty(cls, class_names: Sequence[str] = ()) -> "Detections":
        """No boxes."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32), tuple(class_names))

    @classmethod
    def from_list(cls, dets: Sequence[Detection], class_names: Sequence[str] = ()) -> "Detections":
        """From :class:`Detection` views (tracker ids kept when every one has one; ``data`` keys of the first)."""
        if not dets:
            return cls.empty(class_names)
        names = tuple(class_names)
        if not names:
            k = max(d.label_index for d in dets) + 1
            by_index = {d.label_index: d.label for d in dets}
            names = tuple(by_index.get(i, str(i)) for i in range(k))
        tid = [d.track_id for d in dets]
        keys = list(dets[0].data)
        return cls(
            xyxy=np.array([d.box for d in dets], np.float32),
            class_id=np.array([d.label_index for d in dets], np.int64),
            confidence=np.array([d.score for d in dets], np.float32),
            class_names=names,
            map_score=np.array([np.nan if d.map_score is None else d.map_score for d in dets], np.float32),
            tracker_id=None if any(t is None for t in tid) else np.array(tid, np.int64),
            data={k: np.array([d.data[k] for d in dets]) for k in keys},
        )

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    @property
    def labels(self) -> list[str]:
        """Class name of each box."""
        return [self.class_names[int(k)] if self.class_names else str(int(k)) for k in self.class_id]

    def __getitem__(self, i: int) -> Detection:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        k = int(self.class_id[i])
        ms = float(self.map_score[i])
        tid = None if self.tracker_id is None or self.tracker_id[i] < 0 else int(self.tracker_id[i])
        return Detection(
            box=tuple(float(v) for v in self.xyxy[i]),  # type: ignore[arg-type]
            label=self.class_names[k] if self.class_names else str(k),
            label_index=k,
            score=float(self.confidence[i]),
            map_score=None if np.isnan(ms) else ms,
            track_id=tid,
            data={key: v[i].item() if hasattr(v[i], "item") else v[i] for key, v in self.data.items()},
        )

    def __iter__(self) -> Iterator[Detection]:
        return (self[i] for i in range(len(self)))

    def with_tracks(self, tracker_id: Any, **data: Any) -> "Detections":
        """A copy with ``tracker_id`` (N,) set and ``data`` columns added or replaced."""
        return replace(self, tracker_id=np.asarray(tracker_id, np.int64), data={**self.data, **data})


@dataclass(frozen=True)
class FrameResult:
    """Everything the worker found in one frame.

    Attributes:
        frame: the input frame; ``frame.image`` is the (H, W, 3) uint8 BGR image the model saw;
            ``frame.name`` is the photo's file name for image-folder sources (events, ``--output DIR``), else None.
        label: frame mode: predicted class of the whole frame; faces mode: None.
        score: probability of ``label`` (frame mode), else None.
        probs: (K,) class probabilities (frame mode), else None.
        detections: the frame's boxes in frame pixels, best first (a sequence of :class:`Detection` is
            converted with ``Detections.from_list``).
        heatmap: (h, w) uint8 map in [0, 255] covering the whole frame at any resolution
            (frame mode: the model's native map, e.g. 7x7, squashed like the input; faces mode: face maps
            pasted at frame size), or None (faces mode with no face).
        degenerate: frame mode: the map was all zero (constant/NaN activations).
        n_components: PCA components used (PCA methods, frame mode), else None.
        done_time: ``time.monotonic()`` when the worker finished the batch.
        batch_size: frames in the batch this frame was processed in.
        extra: per-frame extra data a later stage attaches (e.g. the people in view).
    """

    frame: Frame
    label: str | None
    score: float | None
    probs: tuple[float, ...] | None
    detections: Detections
    heatmap: np.ndarray | None
    degenerate: bool = False
    n_components: int | None = None
    done_time: float = 0.0
    batch_size: int = 1
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.detections, Detections):  # a list of Detection rows, e.g. built by hand
            object.__setattr__(self, "detections", Detections.from_list(list(self.detections)))

    @property
    def source_id(self) -> str:
        """The frame's source id (safe to log)."""
        return self.frame.source_id


@dataclass(frozen=True)
class SkippedFrame:
    """A frame that could not be processed (zero-size, bad channel count...)."""

    frame: Frame
    reason: str


@dataclass(frozen=True)
class Done:
    """Last item the worker puts: ``error`` is set when it stopped on an exception."""

    error: BaseException | None = None
    frames_in: int = 0


Item = Any  # FrameResult | SkippedFrame | SourceEvent | Done
