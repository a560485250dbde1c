"""Faces mode with people: detect less, track more, classify only the faces that are due.

For each frame of a batch, in order: the face detector runs only when the source's
:class:`stream.people.SourcePeople` asks for it (every k frames, adaptive), or when a piece of the
full-cost crowd pass is due (``proc.crowd``, :class:`stream.crowd_pass.CrowdPass`; its boxes join the cheap
ones as the tracker's seeds), the tracker steps (with the detections, or predicting), and the faces due
for classification are cropped. All due crops of the batch
go through ONE forward (class and map); every other face keeps its last class and map, pasted at its
current box. Then each person's vote is updated. A batch holding several frames of one source is run in
:func:`waves` (one frame per source each), so the faces classified on a frame never depend on how frames
were batched. The results carry the tracked faces as
``stream.results.Detections`` (``tracker_id`` = person id, ``data["person_label"]``), the people in view in
``extra["people"]`` and the person events of the frame in ``extra["person_events"]``.

Frame mode uses :func:`track_frame_result`: the map's boxes are tracked and voted on the same way.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from core.frame_boxes import crop_rects, paste_maps
from core.track.crowd_schedule import combine_passes
from stream.frames import Frame
from stream.people import PeopleStage, SourcePeople
from stream.results import Detections, FrameResult

PEOPLE = "people"
PERSON_EVENTS = "person_events"


def _detections(class_names: tuple[str, ...], step, people: list[dict], det_scores: np.ndarray) -> Detections:
    k = len(class_names)
    probs = np.array([p["probs"] if p["probs"] is not None else np.full(k, 1.0 / k) for p in people], np.float32)
    probs = probs.reshape(-1, k)
    cls = probs.argmax(1) if len(probs) else np.zeros(0, np.int64)
    det = Detections(
        xyxy=np.array([p["box"] for p in people], np.float32).reshape(-1, 4),
        class_id=cls,
        confidence=probs[np.arange(len(cls)), cls] if len(cls) else np.zeros(0, np.float32),
        class_names=class_names,
        map_score=det_scores,
    )
    return det.with_tracks(
        np.asarray(step.ids, np.int64), person_label=np.array([p["label"] for p in people], dtype=object)
    )


def _public_people(people: list[dict]) -> list[dict]:
    return [{k: v for k, v in p.items() if k != "probs"} for p in people]


def waves(frames: Sequence[Frame]) -> list[list[Frame]]:
    """Split a batch, in order, into runs holding at most one frame of each source.

    A source's next frame is tracked only after its previous frame's faces were classified and voted on,
    so what is classified on a frame never depends on how the frames were batched (the batch composition
    depends on timing): the same file gives the same people in any engine, at any load.
    """
    out: list[list[Frame]] = []
    seen: set[str] = set()
    for f in frames:
        if not out or f.source_id in seen:
            out.append([])
            seen = set()
        out[-1].append(f)
        seen.add(f.source_id)
    return out


def process_tracked_faces(
    proc: Any,
    frames: Sequence[Frame],
    stage: PeopleStage,
    classify: Callable[[list[np.ndarray]], dict] | None = None,
    on_result: Callable[[FrameResult], None] | None = None,
) -> list[FrameResult]:
    """Faces-mode results for ``frames`` with tracking (see the module docstring).

    The frames go in :func:`waves` (one forward per wave that has faces due; a batch of one frame per
    source is one wave).

    Args:
        proc: the ``stream.processor.Processor`` (its ``detector``, ``cfg``, ``class_names``, ``input_size``),
            or the ray engine's camera stage with the same attributes.
        frames: usable frames (BGR), any mix of sources, each source's frames in order.
        stage: the people stage.
        classify: BGR crops (each S x S, or larger) -> ``Processor.explain``'s dict (``probs`` (n, K),
            ``maps`` (n, h, w) uint8); default ``proc.explain(proc._to_input(crops))``.
        on_result: called with each result as soon as its source's state is the state after its frame
            (the ray engine snapshots it there).

    Returns:
        One ``stream.results.FrameResult`` per frame.
    """
    if classify is None:
        def classify(batch: list[np.ndarray]) -> dict:
            return proc.explain(proc._to_input(batch))

    t_start = time.monotonic()
    results: list[FrameResult] = []
    touched: dict[int, SourcePeople] = {}
    for wave in waves(frames):
        made = _tracked_wave(proc, wave, stage, classify, len(frames))
        for r in made:
            sp = stage.source(r.frame.source_id)
            touched[id(sp)] = sp
            if on_result is not None:
                on_result(r)
        results += made
    cost = (time.monotonic() - t_start) / max(1, len(frames))
    crowd = getattr(proc, "crowd", None)
    for sp in touched.values():
        sp.adapt(cost)
        if crowd is not None and sp.live:  # like the cheap tier: a file never backs off (results free of load)
            crowd.adapt(sp.source_id, cost)
    return results


def _tracked_wave(proc: Any, frames: Sequence[Frame], stage: PeopleStage,
                  classify: Callable[[list[np.ndarray]], dict], batch_size: int) -> list[FrameResult]:
    """:func:`process_tracked_faces` for frames of distinct sources: track all, ONE forward, vote all."""
    cfg = proc.cfg
    plans = []
    crops: list[np.ndarray] = []
    for f in frames:
        sp: SourcePeople = stage.source(f.source_id)
        dets = None
        crowd = getattr(proc, "crowd", None)
        piece = crowd.run(f, sp.media_time(f), sp.interval()) if crowd is not None else None
        seeding: dict = {}
        if piece is not None or sp.wants_detection(f):
            dets = np.asarray(proc.detector.detect([f.image])[0], np.float32).reshape(-1, 5)
            seeded = np.zeros(len(dets), bool)
            if piece is not None:
                dets, seeded = combine_passes(dets, piece.seeds)
            order = np.argsort(-dets[:, 4], kind="stable")[: cfg.max_faces]
            dets, seeded = dets[order], seeded[order]
            if piece is not None:
                seeding = {"seeded": seeded, "seed_region": piece.region, "hold_frames": piece.hold_frames}
        step, due, events = sp.track(f, dets, **seeding)
        rects = np.zeros((0, 4), np.int64)
        idx = np.zeros(0, np.int64)
        if len(due):
            boxes = np.concatenate([step.boxes[due], np.ones((len(due), 1), np.float32)], 1)
            rects, keep = crop_rects(boxes, f.image.shape[:2], cfg.face_margin, None)
            idx = due[keep]
        first = len(crops)
        for x1, y1, x2, y2 in rects:
            crops.append(f.image[y1:y2, x1:x2])
        det_scores = np.full(len(step.ids), np.nan, np.float32)
        if dets is not None and len(step.ids):
            m = step.det_index >= 0
            det_scores[m] = dets[step.det_index[m], 4]
        plans.append((f, sp, step, idx, first, events, det_scores))
    probs = np.zeros((0, len(proc.class_names)), np.float32)
    maps_u8 = np.zeros((0,) + tuple(proc.input_size), np.uint8)
    if crops:
        # crops no larger than the input are upscaled here as uint8 (bilinear, like the model's resize, within
        # one rounding step), so the batch is one tensor instead of one resize per crop
        s_h, s_w = proc.input_size
        batch = [
            cv2.resize(c, (s_w, s_h), interpolation=cv2.INTER_LINEAR) if c.shape[0] <= s_h and c.shape[1] <= s_w else c
            for c in crops
        ]
        out = classify(batch)
        probs, maps_u8 = out["probs"], out["maps"]  # maps: (n, h, w) uint8 at the method's native size
    t_done = time.monotonic()
    results = []
    for f, sp, step, idx, first, events, det_scores in plans:
        keep_crops = sp.snapshot_dir is not None
        classified = {
            int(k): (probs[first + j], maps_u8[first + j], crops[first + j] if keep_crops else None)
            for j, k in enumerate(idx)
        }
        people, vote_events = sp.observe(f, step, classified)
        # every face in view shows its current map, pasted at its current box
        with_map = [(sp.people[int(pid)].map_u8, b) for pid, b in zip(step.ids, step.boxes)]
        with_map = [(m, b) for m, b in with_map if m is not None]
        heat = None
        if with_map:
            boxes = np.concatenate([np.array([b for _, b in with_map], np.float32), np.ones((len(with_map), 1))], 1)
            rects, keep = crop_rects(boxes, f.image.shape[:2], cfg.face_margin, None)
            if len(rects):
                heat = paste_maps(f.image.shape[:2], np.stack([with_map[int(k)][0] for k in keep]), rects)
        results.append(
            FrameResult(
                frame=f,
                label=None,
                score=None,
                probs=None,
                detections=_detections(proc.class_names, step, people, det_scores),
                heatmap=heat,
                done_time=t_done,
                batch_size=batch_size,
                extra={PEOPLE: _public_people(people), PERSON_EVENTS: events + vote_events},
            )
        )
    return results


def track_frame_result(result: Any, stage: PeopleStage) -> FrameResult:
    """Frame mode: track the map's boxes of one result and vote per box-person.

    Args:
        result: a frame-mode ``stream.results.FrameResult`` (its ``detections`` are the map's boxes).
        stage: the people stage.

    Returns:
        A ``stream.results.FrameResult`` with tracked detections and the people fields in ``extra``.
    """
    f = result.frame
    sp = stage.source(f.source_id)
    names = tuple(stage.class_names)
    k = len(names)
    dets = list(result.detections)
    boxes = np.array([d.box for d in dets], np.float32).reshape(-1, 4)
    # map blobs carry no detector score: every box is a confident observation
    step, _, events = sp.track(f, np.concatenate([boxes, np.ones((len(boxes), 1), np.float32)], 1))
    classified = {}
    for j, di in enumerate(step.det_index):
        if di >= 0:
            d = dets[int(di)]
            p = np.full(k, (1.0 - d.score) / max(1, k - 1), np.float32)
            p[d.label_index] = d.score
            classified[j] = (p, None, None)
    people, vote_events = sp.observe(f, step, classified)
    map_scores = np.array(
        [dets[int(di)].map_score if di >= 0 and dets[int(di)].map_score is not None else np.nan for di in step.det_index],
        np.float32,
    )
    extra = dict(getattr(result, "extra", {}) or {})
    extra.update({PEOPLE: _public_people(people), PERSON_EVENTS: events + vote_events})
    return FrameResult(
        frame=f,
        label=result.label,
        score=result.score,
        probs=result.probs,
        detections=_detections(names, step, people, map_scores),
        heatmap=result.heatmap,
        degenerate=result.degenerate,
        n_components=result.n_components,
        done_time=result.done_time,
        batch_size=result.batch_size,
        extra=extra,
    )
