"""The local worker's processing, cut where a network goes: camera side | inference side.

``stream.worker.Processor.process`` runs, in one process: preprocess -> forward + explain ->
pack results. The ray engine runs the same steps in two places, and this module is that split
(no Ray here, so it is tested without Ray against ``Processor`` itself):

* :class:`CameraStage` (on the camera's node): decoded frames -> small model inputs
  (frame mode: the frame shrunk to S x S; faces mode: the detector runs here and only the face
  crops, shrunk to S x S, leave), and later the inference outputs -> :class:`stream.results.FrameResult`.
* :class:`InferenceCore` (on a GPU/CPU replica): inputs of many cameras, concatenated ->
  one forward and one batched explanation -> per-image class scores, the S x S uint8 map and
  the boxes in model-input pixels (never a full-resolution map).

The steps call the same ``core`` functions as ``Processor`` in the same order, so on the CPU the
outputs are the local engine's (tests/test_engine_stages.py compares them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np
import torch

from core.explain import explain_features
from core.frame_boxes import box_class_logits, class_evidence_maps, crop_rects, paste_maps, scale_boxes
from core.frame_resize import shrink_bgr_uint8
from core.preprocess import bgr_to_input
from stream.config import WorkerConfig
from stream.frames import Frame
from stream.results import Detections, FrameResult

# The SkippedFrame the local Pipeline recognises: stream.worker's today; issue 12 makes it stream.results'
from stream.worker import Processor, SkippedFrame, as_bgr


@dataclass(frozen=True)
class ModelInfo:
    """What a camera needs to know about the model (sent by a replica; no weights).

    Attributes:
        class_names: the model's classes.
        input_size: model input side S.
        mean, std: input normalisation (RGB).
        dtype: the replica's compute dtype name ("float32", "float16").
    """

    class_names: tuple[str, ...]
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dtype: str = "float32"


def model_inputs(images: Sequence[np.ndarray], info: ModelInfo, fast_resize: bool = True) -> np.ndarray:
    """BGR uint8 images of any size -> what a replica gets for them (the local CPU preprocessing).

    When every image is larger than 4 S^2 pixels and ``fast_resize`` is on, the images are shrunk
    as uint8 here (``core.frame_resize``, as ``Processor`` does on the CPU) and sent as
    (n, S, S, 3) uint8: 150 kB per image at S = 224, normalised on the replica. Otherwise the
    normalised input (n, 3, S, S) float32 is computed here, exactly as ``Processor`` does.

    Returns:
        (n, S, S, 3) uint8 BGR or (n, 3, S, S) float32.
    """
    s = int(info.input_size)
    size = (s, s)
    if not images:
        return np.zeros((0, s, s, 3), np.uint8)
    big = [im.shape[0] * im.shape[1] > 4 * s * s for im in images]
    if fast_resize and all(big):
        t = [shrink_bgr_uint8(torch.from_numpy(np.ascontiguousarray(im))[None], size) for im in images]
        return torch.cat(t).contiguous().numpy()
    small = []
    for im, b in zip(images, big):
        t = torch.from_numpy(np.ascontiguousarray(im))[None]
        small.append(shrink_bgr_uint8(t, size) if fast_resize and b else t)
    if len({tuple(t.shape) for t in small}) == 1:  # one call for a same-size batch, as Processor does
        return bgr_to_input(torch.cat(small), size, info.mean, info.std, torch.float32).numpy()
    return torch.cat([bgr_to_input(t, size, info.mean, info.std, torch.float32) for t in small]).numpy()


def inputs_to_tensor(x: np.ndarray, info: ModelInfo, dtype: torch.dtype, device: Any) -> torch.Tensor:
    """A :func:`model_inputs` array -> (n, 3, S, S) model input of ``dtype`` on ``device``."""
    t = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    if t.dtype == torch.uint8:
        return bgr_to_input(t, int(info.input_size), info.mean, info.std, dtype)
    # the local preprocessing leaves its output in channels-last memory (a permuted view); numpy made it
    # contiguous on the way here; the same layout picks the same conv kernels, so the same numbers
    return t.to(dtype).contiguous(memory_format=torch.channels_last)


def empty_output(info: ModelInfo, mode: str) -> dict:
    """The :meth:`InferenceCore.run` output for zero images (a batch whose frames had no face)."""
    s, k = info.input_size, len(info.class_names)
    return {"probs": np.zeros((0, k), np.float32), "labels": np.zeros(0, np.int64),
            "maps": np.zeros((0, s, s), np.uint8), "degenerate": np.zeros(0, bool), "n_components": None,
            "boxes": [] if mode == "frame" else None}


class InferenceCore:
    """Forward + explanation for batches of prepared inputs (the replica's work; no threads).

    Args:
        backend: ``stream.worker.create_backend`` result (torch or onnxruntime).
        cfg: worker settings (method, threshold, mode; ``batch_size`` is not used here).
    """

    def __init__(self, backend: Any, cfg: WorkerConfig) -> None:
        self.proc = Processor(backend, cfg, detector=object() if cfg.mode == "faces" else None)
        self.cfg = cfg
        meta = backend.meta
        self.info = ModelInfo(
            tuple(meta.class_names),
            int(meta.input_size),
            tuple(float(v) for v in meta.mean),
            tuple(float(v) for v in meta.std),
            str(backend.dtype).replace("torch.", ""),
        )

    def run(self, inputs: Sequence[np.ndarray]) -> list[dict]:
        """One forward over all ``inputs`` (each (n_i, ...) from :func:`model_inputs`), split back.

        Returns:
            One dict per input with arrays over its n_i images: ``probs`` (n, K) float32,
            ``labels`` (n,) int64, ``maps`` (n, S, S) uint8, ``degenerate`` (n,) bool,
            ``n_components`` (n,) int64 or None; frame mode also ``boxes``: per image a tuple
            (xyxy (m, 4) in model-input pixels, map_score (m,), class probs (m, K), class (m,)).
        """
        p = self.proc
        sizes = [int(x.shape[0]) for x in inputs]
        parts = [inputs_to_tensor(x, self.info, p.backend.dtype, p.backend.device) for x in inputs if len(x)]
        if not parts:
            return [empty_output(self.info, self.cfg.mode) for _ in inputs]
        x = torch.cat(parts) if len(parts) > 1 else parts[0]
        logits, acts = p.backend.forward(x)
        logits, acts = logits.float(), acts.float()
        frame_mode = self.cfg.mode == "frame"
        exp = explain_features(
            logits, acts, self.cfg.method, p.input_size, head_weight=p.head_w, threshold=p.threshold,
            options=p.options, with_boxes=frame_mode,
        )
        maps = (exp.maps * 255.0).round_().clamp_(0, 255).to(torch.uint8).cpu().numpy()
        probs = exp.probs.cpu().numpy()
        labels = exp.labels.cpu().numpy().astype(np.int64)
        degenerate = exp.degenerate.cpu().numpy().astype(bool)
        ncomp = exp.n_components.cpu().numpy().astype(np.int64) if exp.n_components is not None else None
        boxes: list = []
        if frame_mode:
            box_logits = box_class_logits(class_evidence_maps(acts, p.head_w, p.head_b), exp.boxes, p.input_size)
            for i, bxs in enumerate(exp.boxes):
                if not bxs:
                    boxes.append(None)
                    continue
                xyxy = np.array([b.xyxy for b in bxs], dtype=np.float64)
                ms = np.array([float(b.score) for b in bxs], np.float64)
                boxes.append((xyxy, ms, torch.softmax(box_logits[i], dim=1).numpy(), box_logits[i].argmax(dim=1).numpy()))
        out, j = [], 0
        for n in sizes:
            sl = slice(j, j + n)
            out.append({
                "probs": probs[sl], "labels": labels[sl], "maps": maps[sl], "degenerate": degenerate[sl],
                "n_components": None if ncomp is None else ncomp[sl], "boxes": boxes[sl] if frame_mode else None,
            })
            j += n
        return out


class SourceStage(Protocol):
    """Per-source state a camera keeps between frames (the tracker and per-person vote plug in here).

    ``step`` gets each result of its source in frame order and returns the result to send on
    (e.g. with ``detections.with_tracks(...)`` and person events in ``extra``). ``state`` /
    ``restore`` carry it over a camera restart (return None when there is nothing to carry).
    """

    def step(self, result: FrameResult) -> FrameResult: ...

    def state(self) -> Any: ...

    def restore(self, state: Any) -> None: ...


class PassThrough:
    """The default :class:`SourceStage`: no per-source state (results pass unchanged)."""

    def step(self, result: FrameResult) -> FrameResult:
        return result

    def state(self) -> Any:
        return None

    def restore(self, state: Any) -> None:
        pass


@dataclass
class Prepared:
    """What :meth:`CameraStage.prepare` made of a batch: inputs for a replica and how to unpack them."""

    items: list  # per input frame: a Frame (good) or a SkippedFrame
    inputs: np.ndarray  # see model_inputs
    rects: list  # faces mode: per good frame (m, 4) int rects; frame mode: []
    det_scores: list  # faces mode: per good frame (m,) detector scores


class CameraStage:
    """The camera side of :class:`stream.worker.Processor`: prepare inputs, then build results.

    Args:
        info: the model as the replicas describe it.
        cfg: worker settings (mode, face_margin, max_faces, fast_resize).
        detector: faces mode: ``detect(list of BGR images) -> list of (n, 5)`` run on the camera's node.
    """

    def __init__(self, info: ModelInfo, cfg: WorkerConfig, detector: Any = None) -> None:
        if cfg.mode == "faces" and detector is None:
            raise ValueError("faces mode needs a detector")
        self.info = info
        self.cfg = cfg
        self.detector = detector
        self.class_names = tuple(info.class_names)

    def prepare(self, frames: Sequence[Frame]) -> Prepared:
        """Frames -> model inputs (unusable frames become ``SkippedFrame`` and send nothing)."""
        items: list = []
        good: list[Frame] = []
        for f in frames:
            img, reason = as_bgr(f.image)
            if img is None:
                items.append(SkippedFrame(f, reason))
            else:
                g = f if img is f.image else Frame(f.source_id, f.index, img, f.capture_time, f.pos_ms)
                good.append(g)
                items.append(g)
        if self.cfg.mode == "frame":
            return Prepared(items, model_inputs([f.image for f in good], self.info, self.cfg.fast_resize), [], [])
        dets_all = self.detector.detect([f.image for f in good]) if good else []
        if len(dets_all) != len(good):
            raise RuntimeError(f"detector returned {len(dets_all)} results for {len(good)} frames")
        crops, rects_per, scores_per = [], [], []
        for f, d in zip(good, dets_all):
            d = np.asarray(d, dtype=np.float32)
            rects, keep = crop_rects(d, f.image.shape[:2], self.cfg.face_margin, self.cfg.max_faces)
            rects_per.append(rects)
            scores_per.append(d[keep, 4] if len(keep) and d.shape[1] > 4 else np.ones(len(keep), np.float32))
            crops.extend(f.image[y1:y2, x1:x2] for x1, y1, x2, y2 in rects)
        return Prepared(items, model_inputs(crops, self.info, self.cfg.fast_resize), rects_per, scores_per)

    def results(self, prep: Prepared, out: dict, done_time: float) -> list:
        """The replica's output for ``prep.inputs`` -> FrameResult / SkippedFrame per input frame, in order."""
        good = [x for x in prep.items if isinstance(x, Frame)]
        made = self._frames(good, out, done_time) if self.cfg.mode == "frame" else self._faces(good, prep, out,
                                                                                               done_time)
        it = iter(made)
        return [next(it) if isinstance(x, Frame) else x for x in prep.items]

    def _frames(self, frames: list[Frame], out: dict, t: float) -> list[FrameResult]:
        s = (self.info.input_size, self.info.input_size)
        res = []
        for i, f in enumerate(frames):
            h, w = f.image.shape[:2]
            b = out["boxes"][i]
            if b is None:
                dets = Detections.empty(self.class_names)
            else:
                xyxy, ms, bp, bk = b
                dets = Detections(
                    scale_boxes(xyxy, s, (h, w)), bk, bp[np.arange(len(bk)), bk], self.class_names, map_score=ms
                )
            k = int(out["labels"][i])
            nc = out["n_components"]
            res.append(FrameResult(
                frame=f, label=self.class_names[k], score=float(out["probs"][i, k]),
                probs=tuple(float(v) for v in out["probs"][i]), detections=dets, heatmap=out["maps"][i],
                degenerate=bool(out["degenerate"][i]), n_components=None if nc is None else int(nc[i]),
                done_time=t, batch_size=len(frames),
            ))
        return res

    def _faces(self, frames: list[Frame], prep: Prepared, out: dict, t: float) -> list[FrameResult]:
        res, j = [], 0
        for i, f in enumerate(frames):
            rects = prep.rects[i]
            n = len(rects)
            labels = out["labels"][j : j + n]
            probs = out["probs"][j : j + n]
            dets = Detections(
                np.asarray(rects, np.float32).reshape(-1, 4), labels, probs[np.arange(n), labels] if n else [],
                self.class_names, map_score=np.asarray(prep.det_scores[i], np.float32),
            )
            heat = paste_maps(f.image.shape[:2], out["maps"][j : j + n], rects) if n else None
            j += n
            res.append(FrameResult(frame=f, label=None, score=None, probs=None, detections=dets, heatmap=heat,
                                   done_time=t, batch_size=len(frames)))
        return res
