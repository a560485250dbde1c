"""From frames to results: the model set-up and :class:`Processor` (no threads; unit-testable).

No math here: preprocessing is ``core.preprocess``, maps and boxes are ``core.explain_features``,
box labelling and frame geometry are ``core.frame_boxes``. This module only batches tensors,
calls the backend and the explainers, and packs results. The thread that feeds it is
:class:`stream.worker.BatchWorker`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Sequence

import numpy as np
import torch

from core.cams import MODEL_METHODS, build_model_method
from core.explain import explain_features, explain_model_method
from core.frame_boxes import (
    box_class_logits,
    class_evidence_maps,
    crop_rects,
    paste_maps,
    scale_boxes,
)
from core.frame_resize import shrink_bgr_uint8
from core.preprocess import bgr_to_input, images_to_input
from stream.config import WorkerConfig
from stream.errors import UserError
from stream.frames import Frame
from stream.results import Detections, FrameResult, SkippedFrame
from stream.sources.normalize import to_bgr

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- model set-up


def resolve_method(cfg: WorkerConfig, thresholds: dict | None = None) -> tuple[Any, dict]:
    """The ``core.boxes.Threshold`` the worker draws boxes with, and the method's options.

    ``threshold.mode: calibrated`` reads the checkpoint's stored threshold for ``cfg.method`` (no model
    is built; ``thresholds`` may be given instead); an ONNX file given without its checkpoint, or a
    checkpoint without one for the method, falls back to ``fraction`` at ``threshold.value``, with a log
    line saying so. A model method (``haycam+hr``) also takes its calibrated options (the variant) from
    the checkpoint, in any threshold mode.
    """
    from core.boxes import Threshold
    from core.checkpoint import read_thresholds
    from core.localization import stored_threshold

    t = cfg.threshold
    options: dict = {"variance_fraction": cfg.variance_fraction}
    onnx_only = cfg.onnx_path is not None and cfg.checkpoint is None
    where = f"checkpoint {cfg.checkpoint or 'shipped'}"
    try:
        needed = not onnx_only and (t.mode == "calibrated" or cfg.method in MODEL_METHODS)
        stored = None if not needed else stored_threshold(
            read_thresholds(cfg.checkpoint) if thresholds is None else thresholds, cfg.method, where)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if cfg.method in MODEL_METHODS:
        options = dict(stored.options) if stored is not None else {}
        if stored is None or not stored.options:
            log.info("method %s: no calibrated variant stored; using %s", cfg.method,
                     MODEL_METHODS[cfg.method].default_options)
    if t.mode != "calibrated":
        return t.to_core(), options
    if onnx_only:
        log.info("threshold: calibrated, but an ONNX file carries none; using fraction %.2f", t.value)
        return t.to_core(), options
    if stored is None:
        log.info("threshold: %s stores no calibrated threshold for %s; using fraction %.2f",
                 cfg.checkpoint or "the shipped model", cfg.method, t.value)
        return t.to_core(), options
    fitted = stored.threshold
    log.info("threshold: %s %.2f for %s (calibrated on val), min_area %.3f", fitted.mode, fitted.value,
             cfg.method, t.min_area)
    return Threshold(fitted.mode, fitted.value, float(t.min_area)), options


def resolve_threshold(cfg: WorkerConfig):
    """The ``core.boxes.Threshold`` of :func:`resolve_method`."""
    return resolve_method(cfg)[0]


def create_backend(cfg: WorkerConfig) -> Any:
    """The inference backend for ``cfg`` (``core.backends.create_backend`` with ``worker.backend_options``);
    ``worker.backend: auto`` is resolved by ``core.backends.resolve_kind`` (:meth:`WorkerConfig.backend_kind`)."""
    from core.backends import create_backend as _create
    from core.checkpoint import CheckpointError

    try:
        kind = cfg.backend_kind()
        return _create(kind, checkpoint=cfg.checkpoint, device=cfg.device, fp16=cfg.fp16,
                       onnx_path=cfg.onnx_path, **cfg.backend_kwargs(kind))
    except CheckpointError:
        raise
    except (ValueError, FileNotFoundError) as exc:  # unknown device, a missing ONNX file, a bad option...
        raise UserError(f"worker.backend {cfg.backend!r}: {exc}") from None


# ---------------------------------------------------------------- processing steps
# Processor.process is: usable_frames -> (faces mode: face_crops) -> model input -> Processor.explain ->
# frame_results / face_results. The steps are separate so the ray engine (stream/engines/stages.py) runs the
# very same ones on both sides of the network: the camera side prepares inputs and packs results, an
# inference replica runs Processor.explain.


def usable_frames(frames: Sequence[Frame]) -> tuple[list, list[Frame]]:
    """Frames -> (items, good): ``items`` holds, per frame in order, the BGR uint8 Frame or a ``SkippedFrame``
    (``stream.sources.normalize.to_bgr`` refuses it); ``good`` are the Frames of ``items``."""
    items: list = []
    good: list[Frame] = []
    for f in frames:
        img, reason, _ = to_bgr(f.image)
        if img is None:
            items.append(SkippedFrame(f, str(reason)))
        else:
            g = f if img is f.image else dataclasses.replace(f, image=img)  # keeps every field (e.g. name)
            good.append(g)
            items.append(g)
    return items, good


def shrink_large(images: Sequence[np.ndarray], size: tuple[int, int], fast_resize: bool = True) -> list[torch.Tensor]:
    """BGR uint8 (h, w, 3) images -> (1, h', w', 3) uint8 CPU tensors; with ``fast_resize``, images over
    4 S^2 pixels are shrunk to ``size`` as uint8 first (``core.frame_resize``), the others kept as they are."""
    out = []
    for im in images:
        t = torch.from_numpy(np.ascontiguousarray(im))[None]
        big = fast_resize and im.shape[0] * im.shape[1] > 4 * size[0] * size[1]
        out.append(shrink_bgr_uint8(t, size) if big else t)
    return out


def small_to_input(small: Sequence[torch.Tensor], size: tuple[int, int], mean: Sequence[float],
                   std: Sequence[float], dtype: torch.dtype) -> torch.Tensor:
    """:func:`shrink_large` tensors -> (B, 3, S, S) model input (one ``bgr_to_input`` call when all sizes agree)."""
    if len({tuple(t.shape) for t in small}) == 1:
        return bgr_to_input(torch.cat(list(small)), size, mean, std, dtype)
    return torch.cat([bgr_to_input(t, size, mean, std, dtype) for t in small])


def reported_faces(dets: np.ndarray, keep: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """What faces mode reports for each kept face (events, overlay, snapshots, tracking): the detector's own
    face box clipped to the frame, not the crop the classifier sees (that one adds ``face_margin`` per side),
    and the detector's score.

    Args:
        dets: (N, 4) or (N, 5) detector rows ``[x1, y1, x2, y2(, score)]`` in frame pixels.
        keep: (m,) indices of the rows kept (``core.frame_boxes.crop_rects``'s second result).
        shape: the frame's (H, W).

    Returns:
        (m, 5) float32 ``[x1, y1, x2, y2, score]``: boxes clipped to [0, W] x [0, H]; score 1 when the
        detector gives none.
    """
    keep = np.asarray(keep, np.int64)
    if len(keep) == 0:  # also a detector's empty (0,) array
        return np.zeros((0, 5), np.float32)
    h, w = shape
    d = np.asarray(dets, np.float32)
    boxes = np.clip(d[keep, :4], 0, np.array([w, h, w, h], np.float32))
    scores = d[keep, 4] if d.shape[1] > 4 else np.ones(len(keep), np.float32)
    return np.concatenate([boxes, scores[:, None]], axis=1).astype(np.float32)


def face_crops(frames: Sequence[Frame], detector: Any, cfg: WorkerConfig) -> tuple[list, list, list]:
    """Faces mode's first step: the detector over ``frames`` -> (crops, rects_per, faces_per).

    Returns:
        crops: BGR views, every face of every frame in frame order; rects_per: per frame (m, 4) int crop rects
        (the face box + ``face_margin`` per side); faces_per: per frame (m, 5) float32 :func:`reported_faces`
        (the face boxes and detector scores the results carry).
    """
    dets_all = detector.detect([f.image for f in frames])
    if len(dets_all) != len(frames):
        raise RuntimeError(f"detector returned {len(dets_all)} results for {len(frames)} frames")
    crops, rects_per, faces_per = [], [], []
    for f, d in zip(frames, dets_all):
        d = np.asarray(d, dtype=np.float32)
        rects, keep = crop_rects(d, f.image.shape[:2], cfg.face_margin, cfg.max_faces)
        rects_per.append(rects)
        faces_per.append(reported_faces(d, keep, f.image.shape[:2]))
        crops.extend(f.image[y1:y2, x1:x2] for x1, y1, x2, y2 in rects)
    return crops, rects_per, faces_per


def empty_output(n_classes: int, input_size: int, mode: str) -> dict:
    """The :meth:`Processor.explain` output for zero images (a batch whose frames had no face)."""
    s = int(input_size)
    return {"probs": np.zeros((0, n_classes), np.float32), "labels": np.zeros(0, np.int64),
            "maps": np.zeros((0, s, s), np.uint8), "degenerate": np.zeros(0, bool), "n_components": None,
            "boxes": [] if mode == "frame" else None}


def frame_results(frames: Sequence[Frame], out: dict, class_names: Sequence[str], input_size: tuple[int, int],
                  done_time: float) -> list[FrameResult]:
    """Frame mode's last step: :meth:`Processor.explain` output for ``frames`` -> one FrameResult each
    (class of the frame, map, boxes scaled from model-input pixels to the frame)."""
    names = tuple(class_names)
    nc = out["n_components"]
    results = []
    for i, f in enumerate(frames):
        h, w = f.image.shape[:2]
        dets = Detections.empty(names)
        if out["boxes"][i] is not None:
            xyxy, ms, bp, bk = out["boxes"][i]
            dets = Detections(scale_boxes(xyxy, input_size, (h, w)), bk, bp[np.arange(len(bk)), bk], names,
                              map_score=ms)
        k = int(out["labels"][i])
        results.append(
            FrameResult(
                frame=f,
                label=names[k],
                score=float(out["probs"][i, k]),
                probs=tuple(float(v) for v in out["probs"][i]),
                detections=dets,
                heatmap=out["maps"][i],
                degenerate=bool(out["degenerate"][i]),
                n_components=int(nc[i]) if nc is not None else None,
                done_time=done_time,
                batch_size=len(frames),
            )
        )
    return results


def face_results(frames: Sequence[Frame], rects_per: Sequence, faces_per: Sequence, out: dict,
                 class_names: Sequence[str], done_time: float) -> list[FrameResult]:
    """Faces mode's last step: :meth:`Processor.explain` output for every crop of :func:`face_crops`
    -> one FrameResult per frame (a detection per face: its :func:`reported_faces` box, the detector score as
    ``map_score``; the crop maps pasted into a frame-size map at the crops ``rects_per``)."""
    names = tuple(class_names)
    results, j = [], 0
    for i, f in enumerate(frames):
        n = len(rects_per[i])
        dets = Detections.empty(names)
        if n:
            k = np.asarray(out["labels"][j : j + n]).astype(np.int64)
            faces = np.asarray(faces_per[i], np.float32).reshape(-1, 5)
            dets = Detections(faces[:, :4], k, out["probs"][j : j + n][np.arange(n), k], names,
                              map_score=faces[:, 4])
        heat = paste_maps(f.image.shape[:2], out["maps"][j : j + n], rects_per[i]) if n else None
        j += n
        results.append(FrameResult(frame=f, label=None, score=None, probs=None, detections=dets, heatmap=heat,
                                   done_time=done_time, batch_size=len(frames)))
    return results


# ---------------------------------------------------------------- processor


class Processor:
    """Frames -> results with one forward pass per call (no threads).

    Args:
        backend: a ``core.backends`` backend (``forward``, ``head_weights``, ``meta``, ``device``, ``dtype``).
        cfg: worker settings (method, threshold, mode...).
        detector: faces mode: an object with ``detect(list of BGR images) -> list of (n, 5)``.
        people: a ``stream.people.PeopleStage``: boxes are tracked and voted on per person, and
            faces mode runs the detector and the classifier only when due (None: every frame alone).
        inference_only: only :meth:`explain` is used (an inference replica of the ray engine): no detector needed.
    """

    def __init__(self, backend: Any, cfg: WorkerConfig, detector: Any = None, people: Any = None,
                 inference_only: bool = False) -> None:
        if cfg.mode == "faces" and detector is None and not inference_only:
            raise ValueError("faces mode needs a detector")
        self.backend = backend
        self.cfg = cfg
        self.detector = detector
        self.people = people  # stream.people.PeopleStage: track, detect less, vote per person (None: off)
        self.crowd: Any = None  # stream.crowd_pass.CrowdPass: the full-cost detector on a slow schedule (faces)
        self.still_detector: Any = None  # faces mode: the detector of image-folder photos (None: ``detector``)
        self.meta = backend.meta
        self.class_names = tuple(self.meta.class_names)
        s = int(self.meta.input_size)
        self.input_size = (s, s)
        self.threshold, self.options = resolve_method(cfg)
        self.model_method = None
        if cfg.method in MODEL_METHODS:
            try:
                self.model_method = build_model_method(cfg.method, backend, self.options)
            except ValueError as exc:  # a variant this backend cannot run, bad stored options
                raise UserError(f"worker.method {cfg.method!r}: {exc}") from None
        w, b = backend.head_weights()
        self.head_w = w.to(backend.device).float()
        self.head_b = b.to(backend.device).float()

    def _to_input(self, images: list[np.ndarray]) -> torch.Tensor:
        """(B, 3, S, S) model input; on CPU large frames are shrunk as uint8 first (core.frame_resize)."""
        dev = torch.device(self.backend.device)
        if dev.type != "cpu" or not self.cfg.fast_resize:
            return images_to_input(images, self.meta, dev, self.backend.dtype)
        small = shrink_large(images, self.input_size)
        return small_to_input(small, self.input_size, self.meta.mean, self.meta.std, self.backend.dtype)

    def explain(self, x: torch.Tensor) -> dict:
        """One forward + explanation of the model input ``x`` (B, 3, S, S).

        Returns:
            numpy arrays over the B images: ``probs`` (B, K) float32, ``labels`` (B,) int64 (argmax of the
            logits; probabilities can tie in float32), ``maps`` (B, h, w) uint8 native-size maps, ``degenerate`` (B,) bool,
            ``n_components`` (B,) int64 or None; ``boxes``: frame mode, per image None or (xyxy (m, 4) in
            model-input pixels, map_score (m,), class probs (m, K), class (m,)); faces mode None.
        """
        logits, acts = self.backend.forward(x)
        logits, acts = logits.float(), acts.float()
        frame_mode = self.cfg.mode == "frame"
        if self.model_method is not None:
            exp = explain_model_method(self.model_method, x, logits, self.cfg.method, threshold=self.threshold,
                                       with_boxes=frame_mode, full_maps=False)
        else:
            exp = explain_features(
                logits,
                acts,
                self.cfg.method,
                self.input_size,
                head_weight=self.head_w,
                threshold=self.threshold,
                options=self.options,
                with_boxes=frame_mode,
                full_maps=False,  # boxes come from the small grid; the overlay upsamples what it draws
            )
        boxes = None
        if frame_mode:
            box_logits = box_class_logits(class_evidence_maps(acts, self.head_w, self.head_b), exp.boxes,
                                          self.input_size)
            boxes = [
                (np.array([b.xyxy for b in bxs]), np.array([b.score for b in bxs], np.float64),
                 torch.softmax(box_logits[i], dim=1).numpy(), box_logits[i].argmax(dim=1).numpy())
                if bxs else None
                for i, bxs in enumerate(exp.boxes)
            ]
        return {
            "probs": exp.probs.cpu().numpy(),
            "labels": exp.labels.cpu().numpy().astype(np.int64),
            # (B, h, w) native maps (7x7 for 224 px; haycam+hr 14x14), one small copy per batch; heatmaps are
            # never made at input size here: the overlay upsamples what it draws
            "maps": (exp.low_res_maps * 255.0).round_().clamp_(0, 255).to(torch.uint8).cpu().numpy(),
            "degenerate": exp.degenerate.cpu().numpy().astype(bool),
            "n_components": None if exp.n_components is None else exp.n_components.cpu().numpy().astype(np.int64),
            "boxes": boxes,
        }

    def process(self, frames: Sequence[Frame]) -> list[FrameResult | SkippedFrame]:
        """Results for ``frames``, in order (unusable frames become ``SkippedFrame``)."""
        items, good = usable_frames(frames)
        if not good:
            return items
        # image-folder photos (frames with a name) are unrelated stills: each is judged alone, never tracked
        tracked = [f for f in good if f.name is None] if self.people is not None else []
        stills = [f for f in good if f.name is not None or self.people is None]
        made_by = {}
        if tracked:
            from stream.tracked_faces import process_tracked_faces, track_frame_result

            if self.cfg.mode == "frame":
                out = self.explain(self._to_input([f.image for f in tracked]))
                made = [track_frame_result(r, self.people)
                        for r in frame_results(tracked, out, self.class_names, self.input_size, time.monotonic())]
            else:  # the detector when due, the tracker, then only the faces due in ONE batch
                made = process_tracked_faces(self, tracked, self.people)
            made_by.update(zip(map(id, tracked), made))
        if stills and self.cfg.mode == "frame":  # one class per frame, map blobs as boxes labelled by their evidence
            out = self.explain(self._to_input([f.image for f in stills]))
            made_by.update(zip(map(id, stills), frame_results(stills, out, self.class_names, self.input_size,
                                                              time.monotonic())))
        elif stills:  # the detector, then every face of every frame in ONE batch
            detector = self.detector if self.people is None or self.still_detector is None else self.still_detector
            crops, rects_per, faces_per = face_crops(stills, detector, self.cfg)
            out = (self.explain(self._to_input(crops)) if crops
                   else empty_output(len(self.class_names), self.input_size[0], self.cfg.mode))
            made_by.update(zip(map(id, stills), face_results(stills, rects_per, faces_per, out, self.class_names,
                                                             time.monotonic())))
        return [made_by[id(x)] if isinstance(x, Frame) else x for x in items]


# ---------------------------------------------------------------- the worker thread
