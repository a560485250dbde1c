"""The batched inference worker: frames from every source -> one forward per batch -> results.

No math here: preprocessing is ``core.preprocess``, maps and boxes are ``core.explain_features``,
box labelling and frame geometry are ``core.frame_boxes``. This module only batches, moves
tensors and packs results.

* :class:`Processor` turns a list of frames into results (no threads; unit-testable).
* :class:`BatchWorker` is the thread that collects frames across sources until ``batch_size``
  frames or ``batch_timeout`` after the first one (DeepStream's batched-push-timeout),
  runs the processor and passes results (and source events, in order) to the output queue.
  Any exception ends it and is handed to the consumer with a DONE marker; it never blocks
  on a full queue once ``stop`` is set.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch

from core.explain import explain_features
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
from stream.frames import Frame, FrameSource, SourceEvent, SourceState

log = logging.getLogger(__name__)

TERMINAL_STATES = (SourceState.END_OF_STREAM, SourceState.FAILED)


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Detection:
    """One box in frame pixels with its class.

    Attributes:
        box: (x1, y1, x2, y2) in frame pixels.
        label: class name.
        label_index: class index.
        score: probability of ``label`` (frame mode: from the class evidence inside the box;
            faces mode: the face crop's classification).
        map_score: frame mode: mean map value inside the blob; faces mode: detector score.
    """

    box: tuple[float, float, float, float]
    label: str
    label_index: int
    score: float
    map_score: float | None = None

    def __post_init__(self) -> None:
        if len(self.box) != 4 or not (self.box[2] >= self.box[0] and self.box[3] >= self.box[1]):
            raise ValueError(f"box must be (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1, but got {self.box}")


@dataclass(frozen=True)
class FrameResult:
    """Everything the worker found in one frame.

    Attributes:
        frame: the input frame; ``frame.image`` is the (H, W, 3) uint8 BGR image the model saw
            (grayscale / BGRA inputs already converted).
        label: frame mode: predicted class of the whole frame; faces mode: None.
        score: probability of ``label`` (frame mode), else None.
        probs: (K,) class probabilities (frame mode), else None.
        detections: boxes in frame pixels, best first.
        heatmap: (h, w) uint8 map in [0, 255] covering the whole frame at any resolution
            (frame mode: the model-input map, squashed like the input; faces mode: face maps
            pasted at frame size), or None (faces mode with no face).
        degenerate: frame mode: the map was all zero (constant/NaN activations).
        n_components: PCA components used (PCA methods, frame mode), else None.
        done_time: ``time.monotonic()`` when the worker finished the batch.
        batch_size: frames in the batch this frame was processed in.
    """

    frame: Frame
    label: str | None
    score: float | None
    probs: tuple[float, ...] | None
    detections: tuple[Detection, ...]
    heatmap: np.ndarray | None
    degenerate: bool = False
    n_components: int | None = None
    done_time: float = 0.0
    batch_size: int = 1


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


def as_bgr(image: Any) -> tuple[np.ndarray | None, str]:
    """A frame image as (H, W, 3) uint8 BGR, or (None, reason) when it is unusable.

    Grayscale (H, W) / (H, W, 1) and BGRA (H, W, 4) are converted; float images in [0, 1]
    are scaled; zero-size images and other shapes are refused.
    """
    if not isinstance(image, np.ndarray):
        return None, f"not an array ({type(image).__name__})"
    if image.size == 0 or image.ndim < 2 or image.shape[0] == 0 or image.shape[1] == 0:
        return None, f"zero-size image {tuple(image.shape)}"
    if image.dtype != np.uint8:
        im = image.astype(np.float32)
        if not np.isfinite(im).all():
            im = np.nan_to_num(im, nan=0.0, posinf=255.0, neginf=0.0)
        if image.dtype.kind == "f" and im.max(initial=0) <= 1.0:
            im = im * 255.0
        image = np.clip(np.rint(im), 0, 255).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), ""
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR), ""
    if image.ndim == 3 and image.shape[2] == 3:
        return image, ""
    return None, f"unsupported image shape {tuple(image.shape)}"


# ---------------------------------------------------------------- backend adapter


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; ``cuda`` without CUDA is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available (use --device cpu or auto)")
    return torch.device(name)


class TorchBackend:
    """A ``CamModel`` with the Backend duck-type of ``core.backends`` (used when that is absent).

    ``forward(images (B, 3, S, S)) -> (logits (B, K), acts (B, C, h, w))``,
    ``head_weights() -> (W (K, C), b (K,))``, ``meta``, ``device``, ``dtype``.
    """

    def __init__(self, model: torch.nn.Module, meta: Any, device: torch.device, fp16: bool) -> None:
        self.device = device
        self.dtype = torch.float16 if fp16 else torch.float32
        self.model = model.to(device=device, dtype=self.dtype).eval()
        self.meta = meta

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            return self.model(images.to(self.device, self.dtype))

    def head_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        w, b = self.model.head_weights()
        return w.detach().float(), b.detach().float()


def resolve_threshold(cfg: WorkerConfig):
    """The ``core.boxes.Threshold`` the worker draws boxes with.

    ``threshold.mode: calibrated`` reads the checkpoint's stored threshold for ``cfg.method`` (no model
    is built); an ONNX file given without its checkpoint, or a checkpoint without one for the method,
    falls back to ``fraction`` at ``threshold.value``, with a log line saying so.
    """
    t = cfg.threshold
    if t.mode != "calibrated":
        return t.to_core()
    from core.boxes import Threshold
    from core.checkpoint import read_thresholds
    from core.localization import threshold_from_dict

    if cfg.onnx_path is not None and cfg.checkpoint is None:
        log.info("threshold: calibrated, but an ONNX file carries none; using fraction %.2f", t.value)
        return t.to_core()
    stored = read_thresholds(cfg.checkpoint).get(cfg.method)
    if stored is None:
        log.info("threshold: %s stores no calibrated threshold for %s; using fraction %.2f",
                 cfg.checkpoint or "the shipped model", cfg.method, t.value)
        return t.to_core()
    try:
        fitted = threshold_from_dict(stored, f"checkpoint {cfg.checkpoint or 'shipped'}: thresholds[{cfg.method!r}]")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    log.info("threshold: %s %.2f for %s (calibrated on val), min_area %.3f", fitted.mode, fitted.value,
             cfg.method, t.min_area)
    return Threshold(fitted.mode, fitted.value, float(t.min_area))


def create_backend(cfg: WorkerConfig) -> Any:
    """The inference backend for ``cfg``: ``core.backends.create_backend`` when present, else torch."""
    try:
        from core.backends import create_backend as _create
    except ImportError:
        _create = None
    if _create is not None:
        from core.checkpoint import CheckpointError

        try:
            return _create(
                cfg.backend, checkpoint=cfg.checkpoint, device=cfg.device, fp16=cfg.fp16, onnx_path=cfg.onnx_path
            )
        except CheckpointError:
            raise
        except ValueError as exc:  # unknown device, fp16 on cpu, a missing ONNX file...
            raise UserError(f"worker.backend {cfg.backend!r}: {exc}") from None
    if cfg.backend != "torch":
        raise UserError(f"worker.backend {cfg.backend!r} needs core.backends, which this checkout lacks; use torch")
    from core.checkpoint import load_checkpoint

    device = resolve_device(cfg.device)
    fp16 = (device.type == "cuda") if cfg.fp16 is None else bool(cfg.fp16)
    if fp16 and device.type != "cuda":
        raise UserError("worker.fp16 needs a cuda device (set fp16: null or false on cpu)")
    ck = load_checkpoint(cfg.checkpoint)
    return TorchBackend(ck.model, ck.meta, device, fp16)


# ---------------------------------------------------------------- processor


class Processor:
    """Frames -> results with one forward pass per call (no threads).

    Args:
        backend: see :class:`TorchBackend`.
        cfg: worker settings (method, threshold, mode...).
        detector: faces mode: an object with ``detect(list of BGR images) -> list of (n, 5)``.
    """

    def __init__(self, backend: Any, cfg: WorkerConfig, detector: Any = None) -> None:
        if cfg.mode == "faces" and detector is None:
            raise ValueError("faces mode needs a detector")
        self.backend = backend
        self.cfg = cfg
        self.detector = detector
        self.meta = backend.meta
        self.class_names = tuple(self.meta.class_names)
        s = int(self.meta.input_size)
        self.input_size = (s, s)
        self.threshold = resolve_threshold(cfg)
        self.options = {"variance_fraction": cfg.variance_fraction}
        w, b = backend.head_weights()
        self.head_w = w.to(backend.device).float()
        self.head_b = b.to(backend.device).float()

    # -- shared
    def _to_input(self, images: list[np.ndarray]) -> torch.Tensor:
        """(B, 3, S, S) model input; on CPU large frames are shrunk as uint8 first (core.frame_resize)."""
        dev = torch.device(self.backend.device)
        if dev.type != "cpu" or not self.cfg.fast_resize:
            return images_to_input(images, self.meta, dev, self.backend.dtype)
        small = []
        for im in images:
            t = torch.from_numpy(np.ascontiguousarray(im))[None]
            small.append(
                shrink_bgr_uint8(t, self.input_size)
                if im.shape[0] * im.shape[1] > 4 * self.input_size[0] * self.input_size[1]
                else t
            )
        if len({tuple(t.shape) for t in small}) == 1:
            return bgr_to_input(torch.cat(small), self.input_size, self.meta.mean, self.meta.std, self.backend.dtype)
        return torch.cat(
            [bgr_to_input(t, self.input_size, self.meta.mean, self.meta.std, self.backend.dtype) for t in small]
        )

    def _forward_explain(self, images: list[np.ndarray]):
        x = self._to_input(images)
        logits, acts = self.backend.forward(x)
        logits, acts = logits.float(), acts.float()
        exp = explain_features(
            logits,
            acts,
            self.cfg.method,
            self.input_size,
            head_weight=self.head_w,
            threshold=self.threshold,
            options=self.options,
            with_boxes=self.cfg.mode == "frame",
        )
        maps_u8 = (exp.maps * 255.0).round_().clamp_(0, 255).to(torch.uint8).cpu().numpy()  # one copy per batch
        return exp, acts, maps_u8

    def process(self, frames: Sequence[Frame]) -> list[FrameResult | SkippedFrame]:
        """Results for ``frames``, in order (unusable frames become ``SkippedFrame``)."""
        good: list[Frame] = []
        out: list[FrameResult | SkippedFrame | None] = []
        for f in frames:
            img, reason = as_bgr(f.image)
            if img is None:
                out.append(SkippedFrame(f, reason))
            else:
                good.append(f if img is f.image else dataclasses.replace(f, image=img))
                out.append(None)
        if good:
            done = self._frames(good) if self.cfg.mode == "frame" else self._faces(good)
            it = iter(done)
            out = [r if r is not None else next(it) for r in out]
        return out  # type: ignore[return-value]

    # -- frame mode: one class per frame, map blobs as boxes labelled by their class evidence
    def _frames(self, frames: list[Frame]) -> list[FrameResult]:
        exp, acts, maps_u8 = self._forward_explain([f.image for f in frames])
        probs = exp.probs.cpu().numpy()
        labels = exp.labels.cpu().tolist()  # argmax of the logits (probabilities can tie in float32)
        box_logits = box_class_logits(class_evidence_maps(acts, self.head_w, self.head_b), exp.boxes, self.input_size)
        ncomp = exp.n_components.cpu().tolist() if exp.n_components is not None else None
        degenerate = exp.degenerate.cpu().tolist()
        t = time.monotonic()
        results = []
        for i, f in enumerate(frames):
            h, w = f.image.shape[:2]
            boxes = exp.boxes[i]
            dets: list[Detection] = []
            if boxes:
                xyxy = scale_boxes(np.array([b.xyxy for b in boxes]), self.input_size, (h, w))
                bp = torch.softmax(box_logits[i], dim=1).numpy()
                bk = box_logits[i].argmax(dim=1).tolist()
                for bx, xy, p, k in zip(boxes, xyxy, bp, bk):
                    dets.append(
                        Detection(tuple(float(v) for v in xy), self.class_names[k], k, float(p[k]), float(bx.score))
                    )
            k = int(labels[i])
            results.append(
                FrameResult(
                    frame=f,
                    label=self.class_names[k],
                    score=float(probs[i, k]),
                    probs=tuple(float(v) for v in probs[i]),
                    detections=tuple(dets),
                    heatmap=maps_u8[i],
                    degenerate=bool(degenerate[i]),
                    n_components=int(ncomp[i]) if ncomp is not None else None,
                    done_time=t,
                    batch_size=len(frames),
                )
            )
        return results

    # -- faces mode: detector, then every face of every frame in ONE batch
    def _faces(self, frames: list[Frame]) -> list[FrameResult]:
        dets_all = self.detector.detect([f.image for f in frames])
        if len(dets_all) != len(frames):
            raise RuntimeError(f"detector returned {len(dets_all)} results for {len(frames)} frames")
        crops, owners, rects_per, scores_per, faces_per = [], [], [], [], []
        for i, (f, d) in enumerate(zip(frames, dets_all)):
            rects, keep = crop_rects(
                np.asarray(d, dtype=np.float32), f.image.shape[:2], self.cfg.face_margin, self.cfg.max_faces
            )
            d = np.asarray(d, dtype=np.float32)
            rects_per.append(rects)
            scores_per.append(d[keep, 4] if len(keep) and d.shape[1] > 4 else np.ones(len(keep), np.float32))
            h, w = f.image.shape[:2]  # the reported box is the detector's face box; the crop adds face_margin
            faces_per.append(np.clip(d[keep, :4], 0, [w, h, w, h]) if len(keep) else np.zeros((0, 4), np.float32))
            for x1, y1, x2, y2 in rects:
                crops.append(f.image[y1:y2, x1:x2])
                owners.append(i)
        t_probs = np.zeros((0, len(self.class_names)), np.float32)
        t_labels = np.zeros(0, np.int64)
        maps_u8 = np.zeros((0,) + self.input_size, np.uint8)
        if crops:
            exp, _, maps_u8 = self._forward_explain(crops)
            t_probs = exp.probs.cpu().numpy()
            t_labels = exp.labels.cpu().numpy()
        t = time.monotonic()
        results, j = [], 0
        for i, f in enumerate(frames):
            n = len(rects_per[i])
            dets = []
            for r, p, k, s in zip(faces_per[i], t_probs[j : j + n], t_labels[j : j + n], scores_per[i]):
                k = int(k)
                dets.append(Detection(tuple(float(v) for v in r), self.class_names[k], k, float(p[k]), float(s)))
            heat = paste_maps(f.image.shape[:2], maps_u8[j : j + n], rects_per[i]) if n else None
            j += n
            results.append(
                FrameResult(
                    frame=f,
                    label=None,
                    score=None,
                    probs=None,
                    detections=tuple(dets),
                    heatmap=heat,
                    done_time=t,
                    batch_size=len(frames),
                )
            )
        return results


# ---------------------------------------------------------------- the worker thread


class BatchWorker(threading.Thread):
    """Collects frames from all sources into batches and runs the processor on each.

    Args:
        sources: started frame sources (polled round-robin).
        process: ``Processor.process`` (or any callable list[Frame] -> list of results).
        out: bounded queue the consumer reads; receives results, ``SkippedFrame``, source
            events in source order, and finally one :class:`Done`.
        stop: set by the consumer to end the worker; it then never blocks.
        batch_size: frames per batch.
        batch_timeout_s: push a partial batch this long after its first frame.
        max_frames: stop after this many frames in total (None: until every source ended).
    """

    def __init__(
        self,
        sources: Sequence[FrameSource],
        process: Callable[[list[Frame]], list],
        out: queue.Queue,
        stop: threading.Event,
        batch_size: int = 4,
        batch_timeout_s: float = 0.01,
        max_frames: int | None = None,
        poll_s: float = 0.05,
    ) -> None:
        super().__init__(name="maskstream-worker", daemon=True)
        self.sources = list(sources)
        self.process = process
        self.out = out
        self.stop_event = stop
        self.batch_size = batch_size
        self.batch_timeout_s = batch_timeout_s
        self.max_frames = max_frames
        self.poll_s = poll_s
        self.frames_in = 0
        self.batches = 0
        self.error: BaseException | None = None

    def _put(self, item: Item) -> bool:
        while not self.stop_event.is_set():
            try:
                self.out.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _flush(self, pending: list) -> None:
        frames = [x for x in pending if isinstance(x, Frame)]
        results = iter(self.process(frames) if frames else [])
        if frames:
            self.batches += 1
        for x in pending:
            if not self._put(next(results) if isinstance(x, Frame) else x):
                return
        pending.clear()

    def run(self) -> None:  # noqa: D401 - thread body
        active = list(self.sources)
        pending: list = []
        n_frames = 0
        deadline: float | None = None
        start = 0
        try:
            while not self.stop_event.is_set():
                limit = self.max_frames is not None and self.frames_in >= self.max_frames
                if not active or limit:
                    break
                now = time.monotonic()
                wait = self.poll_s if deadline is None else max(0.0, deadline - now)
                per = wait / len(active)
                got = False
                order = active[start:] + active[:start]
                start = (start + 1) % max(1, len(active))
                for src in order:
                    item = src.get(timeout=per)
                    if item is None:
                        continue
                    got = True
                    if isinstance(item, SourceEvent):
                        pending.append(item)
                        if item.state in TERMINAL_STATES and src in active:
                            active.remove(src)
                    else:
                        pending.append(item)
                        n_frames += 1
                        self.frames_in += 1
                        if deadline is None:
                            deadline = time.monotonic() + self.batch_timeout_s
                    if n_frames >= self.batch_size or (
                        self.max_frames is not None and self.frames_in >= self.max_frames
                    ):
                        break
                full = n_frames >= self.batch_size
                timed_out = deadline is not None and time.monotonic() >= deadline
                ended = not active or (self.max_frames is not None and self.frames_in >= self.max_frames)
                if pending and (full or timed_out or ended or (n_frames == 0 and not got)):
                    self._flush(pending)
                    n_frames, deadline = 0, None
            if pending and not self.stop_event.is_set():
                self._flush(pending)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, never swallowed
            self.error = exc
            log.debug("worker failed", exc_info=True)
        finally:
            done = Done(self.error, self.frames_in)
            # The consumer may already be gone; never block on a full queue after stop.
            while True:
                try:
                    self.out.put(done, timeout=0.05)
                    break
                except queue.Full:
                    if self.stop_event.is_set():
                        try:  # make room: the consumer drains after stop only to find Done
                            self.out.get_nowait()
                        except queue.Empty:
                            pass
