"""The local worker's processing, cut where a network goes: camera side | inference side.

``stream.processor.Processor.process`` runs, in one process: preprocess -> forward + explain ->
pack results. The ray engine runs the same steps in two places, and this module is that split
(no Ray here, so it is tested without Ray against ``Processor`` itself):

* :class:`CameraStage` (on the camera's node): decoded frames -> small model inputs
  (frame mode: the frame shrunk to S x S; faces mode: the detector runs here and only the face
  crops, shrunk to S x S, leave), and later the inference outputs -> :class:`stream.results.FrameResult`.
  With people on, :meth:`CameraStage.run` also runs each source's tracker and vote (``stream.tracked_faces``,
  as ``Processor.process`` does) and snapshots the source's people after every frame.
* :class:`InferenceCore` (on a GPU/CPU replica): inputs of many cameras, concatenated ->
  one forward and one batched explanation -> per-image class scores, the S x S uint8 map and
  the boxes in model-input pixels (never a full-resolution map).

Both sides call ``stream.processor``'s own steps (``usable_frames``, ``face_crops``, ``shrink_large`` /
``small_to_input``, ``Processor.explain``, ``frame_results`` / ``face_results``): this module only decides
what crosses the network, so on the CPU the outputs are the local engine's (tests/test_engine_stages.py
compares them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from core.preprocess import bgr_to_input
from stream.config import WorkerConfig
from stream.frames import Frame
from stream.processor import (
    Processor,
    face_crops,
    face_results,
    frame_results,
    shrink_large,
    small_to_input,
    usable_frames,
)
from stream.processor import empty_output as _empty_output
from stream.results import FrameResult


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
    as uint8 here (``stream.processor.shrink_large``, as ``Processor`` does on the CPU) and sent as
    (n, S, S, 3) uint8: 150 kB per image at S = 224, normalised on the replica. Otherwise the
    normalised input (n, 3, S, S) float32 is computed here, exactly as ``Processor`` does.

    Returns:
        (n, S, S, 3) uint8 BGR or (n, 3, S, S) float32.
    """
    s = int(info.input_size)
    size = (s, s)
    if not images:
        return np.zeros((0, s, s, 3), np.uint8)
    small = shrink_large(images, size, fast_resize)
    if fast_resize and all(im.shape[0] * im.shape[1] > 4 * s * s for im in images):
        return torch.cat(small).contiguous().numpy()
    return small_to_input(small, size, info.mean, info.std, torch.float32).numpy()


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
    return _empty_output(len(info.class_names), info.input_size, mode)


class InferenceCore:
    """Forward + explanation for batches of prepared inputs (the replica's work; no threads).

    Args:
        backend: ``stream.processor.create_backend`` result (any backend of the ``core.backends`` registry).
        cfg: worker settings (method, threshold, mode; ``batch_size`` is not used here).
    """

    def __init__(self, backend: Any, cfg: WorkerConfig) -> None:
        self.proc = Processor(backend, cfg, inference_only=True)
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
            One ``Processor.explain`` dict per input, with arrays over its n_i images.
        """
        p = self.proc
        sizes = [int(x.shape[0]) for x in inputs]
        parts = [inputs_to_tensor(x, self.info, p.backend.dtype, p.backend.device) for x in inputs if len(x)]
        if not parts:
            return [empty_output(self.info, self.cfg.mode) for _ in inputs]
        out = p.explain(torch.cat(parts) if len(parts) > 1 else parts[0])
        split, j = [], 0
        for n in sizes:
            sl = slice(j, j + n)
            split.append({k: (None if v is None else v[sl]) for k, v in out.items()})
            j += n
        return split


@dataclass
class Prepared:
    """What :meth:`CameraStage.prepare` made of a batch: inputs for a replica and how to unpack them."""

    items: list  # per input frame: a Frame (good) or a SkippedFrame
    inputs: np.ndarray  # see model_inputs
    rects: list  # faces mode: per good frame (m, 4) int rects; frame mode: []
    faces: list  # faces mode: per good frame (m, 5) reported face boxes and scores (stream.processor.reported_faces)


class CameraStage:
    """The camera side of :class:`stream.processor.Processor`: prepare inputs, then build results.

    Args:
        info: the model as the replicas describe it.
        cfg: worker settings (mode, face_margin, max_faces, fast_resize).
        detector: faces mode: ``detect(list of BGR images) -> list of (n, 5)`` run on the camera's node.
        people: a ``stream.people.PeopleStage`` for this camera's sources (tracker and per-person vote;
            :meth:`run` then tracks as ``Processor.process`` does); None: every frame judged alone.
    """

    def __init__(self, info: ModelInfo, cfg: WorkerConfig, detector: Any = None, people: Any = None) -> None:
        if cfg.mode == "faces" and detector is None:
            raise ValueError("faces mode needs a detector")
        self.info = info
        self.cfg = cfg
        self.detector = detector
        self.people = people  # stream.people.PeopleStage of this camera's sources (None: every frame alone)
        self.class_names = tuple(info.class_names)
        s = int(info.input_size)
        self.input_size = (s, s)

    def run(self, frames: Sequence[Frame], infer: Callable[[np.ndarray], dict]) -> list[tuple[Any, bytes | None]]:
        """``Processor.process`` on the camera's side: frames -> results, with ``infer`` doing the forward.

        Args:
            frames: a batch (any mix of this camera's sources, each source's frames in order).
            infer: a :func:`model_inputs` array -> ``Processor.explain``'s dict for it (a replica's answer).

        Returns:
            Per frame, in order: (FrameResult or SkippedFrame, state). With people on, the state of a
            FrameResult is its source's :meth:`stream.people.PeopleStage.snapshot` right after that frame
            (what a restarted camera continues from); otherwise, and for skipped frames, None.
        """
        people = self.people
        if people is None or self.cfg.mode == "frame":
            prep = self.prepare(frames)
            out = infer(prep.inputs) if len(prep.inputs) else empty_output(self.info, self.cfg.mode)
            items = self.results(prep, out, time.monotonic())
            if people is None:
                return [(x, None) for x in items]
            from stream.tracked_faces import track_frame_result

            done = []
            for x in items:
                if isinstance(x, FrameResult):
                    x = track_frame_result(x, people)
                    done.append((x, people.snapshot(x.frame.source_id)))
                else:
                    done.append((x, None))
            return done
        from stream.tracked_faces import process_tracked_faces

        items, good = usable_frames(frames)
        states: dict[tuple[str, int], bytes | None] = {}

        def classify(crops: list[np.ndarray]) -> dict:
            return infer(model_inputs(crops, self.info, self.cfg.fast_resize))

        def snap(r: FrameResult) -> None:
            states[(r.frame.source_id, r.frame.index)] = people.snapshot(r.frame.source_id)

        it = iter(process_tracked_faces(self, good, people, classify, snap) if good else [])
        done = []
        for x in items:
            if isinstance(x, Frame):
                r = next(it)
                done.append((r, states.get((r.frame.source_id, r.frame.index))))
            else:
                done.append((x, None))
        return done

    def prepare(self, frames: Sequence[Frame]) -> Prepared:
        """Frames -> model inputs (unusable frames become ``SkippedFrame`` and send nothing)."""
        items, good = usable_frames(frames)
        if self.cfg.mode == "frame":
            return Prepared(items, model_inputs([f.image for f in good], self.info, self.cfg.fast_resize), [], [])
        crops, rects_per, faces_per = face_crops(good, self.detector, self.cfg) if good else ([], [], [])
        return Prepared(items, model_inputs(crops, self.info, self.cfg.fast_resize), rects_per, faces_per)

    def results(self, prep: Prepared, out: dict, done_time: float) -> list:
        """The replica's output for ``prep.inputs`` -> FrameResult / SkippedFrame per input frame, in order."""
        good = [x for x in prep.items if isinstance(x, Frame)]
        s = self.info.input_size
        if self.cfg.mode == "frame":
            made: list[FrameResult] = frame_results(good, out, self.class_names, (s, s), done_time)
        else:
            made = face_results(good, prep.rects, prep.faces, out, self.class_names, done_time)
        it = iter(made)
        return [next(it) if isinstance(x, Frame) else x for x in prep.items]
