"""The ray engine's actors: one per camera (or group of cameras), and the shared inference replicas.

* :class:`CameraActor` opens its sources on its node, decodes, batches its own frames with the
  local engine's :class:`stream.worker.BatchWorker`, and per batch sends only the small model
  inputs to a replica (``stages.CameraStage.run``: with people on, the tracker and the per-person
  vote of each source run here, in faces mode deciding when the detector runs and which faces are
  classified, exactly as the local worker does); it builds the :class:`stream.results.FrameResult`
  there and queues it, with its source's people snapshot after it, for the driver, which pulls with
  :meth:`CameraActor.poll`. Back-pressure: a full queue blocks the
  worker; a file source then waits (no frame lost), a live source drops its oldest frames and
  counts them (``SourceStats.frames_dropped``), as in the local engine.
* :class:`InferenceReplica` is an async actor that batches requests from every camera
  dynamically (up to ``max_batch`` images, waiting ``batch_wait_ms`` after the first) and runs
  them as one forward (``stages.InferenceCore``) in a worker thread while the next batch gathers.
  Created with ``max_restarts=-1, max_task_retries=-1``: a replica that dies is restarted by Ray
  and the requests it held are sent again, so no frame is lost.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import ray

from stream.config import Config
from stream.engines.resume import ResumeAfter
from stream.engines.stages import CameraStage, InferenceCore, ModelInfo
from stream.frames import SourceStats
from stream.results import Done
from stream.worker import BatchWorker

log = logging.getLogger(__name__)

POLL_MAX_ITEMS = 64


class InferenceReplica:
    """The shared inference service (one instance per replica).

    Args:
        cfg: the run configuration (``worker`` section: model, method, threshold, mode).
        device: "cpu" or "cuda" (the engine picks cuda when the replica was given a GPU).
        threads: torch intra-op threads (CPU replicas).
        max_batch: most images per forward.
        wait_s: how long to wait for more requests after the first of a batch.
    """

    def __init__(self, cfg: Config, device: str, threads: int, max_batch: int, wait_s: float) -> None:
        import torch

        from stream.processor import create_backend

        torch.set_num_threads(max(1, threads))
        wcfg = replace(cfg.worker, device=device)
        self.core = InferenceCore(create_backend(wcfg), wcfg)
        self.max_batch = max_batch
        self.wait_s = wait_s
        self._queue: asyncio.Queue | None = None
        self._held: tuple | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="maskstream-infer")
        self.images = collections.Counter()  # images per forward -> count
        self.requests = collections.Counter()  # requests per forward -> count

    def info(self) -> ModelInfo:
        """The model's classes, input size and normalisation (what cameras need)."""
        return self.core.info

    def ping(self) -> str:
        """The node this replica runs on."""
        return ray.get_runtime_context().get_node_id()

    async def infer(self, x: Any) -> dict:
        """Queue one request (a ``stages.model_inputs`` array of n images); its share of a batched forward."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            asyncio.get_running_loop().create_task(self._batches())
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put((x, fut))
        return await fut

    async def _batches(self) -> None:
        loop = asyncio.get_running_loop()
        q = self._queue
        assert q is not None
        while True:
            first = self._held or await q.get()
            self._held = None
            batch = [first]
            n = len(first[0])
            deadline = loop.time() + self.wait_s
            while n < self.max_batch:
                left = deadline - loop.time()
                try:
                    item = q.get_nowait() if left <= 0 else await asyncio.wait_for(q.get(), left)
                except (asyncio.TimeoutError, asyncio.QueueEmpty):
                    break
                if n + len(item[0]) > self.max_batch:
                    self._held = item
                    break
                batch.append(item)
                n += len(item[0])
            try:
                outs = await loop.run_in_executor(self._pool, self.core.run, [b[0] for b in batch])
            except Exception as exc:  # noqa: BLE001 - every caller of this batch gets the error
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.images[n] += 1
            self.requests[len(batch)] += 1
            for (_, fut), o in zip(batch, outs):
                if not fut.done():
                    fut.set_result(o)

    def stats(self) -> dict:
        """Forwards run so far by batch size: {"images": {n: count}, "requests": {n: count}}."""
        return {"images": dict(self.images), "requests": dict(self.requests)}


class CameraActor:
    """Capture, decode, preprocess and per-source state for a group of sources.

    Args:
        cfg: the run configuration.
        sources: (spec, source_id) pairs this actor opens.
        resume: source_id -> index of its last frame that reached the sinks (after a restart).
        states: source_id -> its people snapshot (``PeopleStage.snapshot``) taken right after that frame:
            the tracker and votes continue from there, so nobody appears twice or is lost.
        replicas: inference replica handles (requests go round-robin).
        info: the model as the replicas describe it.
        infer_timeout_s: a request not answered in this long fails the camera (a replica that can
            never come back).
    """

    def __init__(
        self,
        cfg: Config,
        sources: list[tuple[str, str]],
        resume: dict[str, int],
        states: dict[str, Any],
        replicas: list,
        info: ModelInfo,
        infer_timeout_s: float = 120.0,
    ) -> None:
        import torch

        from stream.pipeline import face_detectors, people_stage
        from stream.sources import SourceOptions, open_source

        torch.set_num_threads(1)
        opts = SourceOptions(**cfg.sources.source_options())
        self.sources = [ResumeAfter(open_source(spec, source_id=sid, options=opts), resume.get(sid))
                        for spec, sid in sources]
        people = people_stage(cfg, info.class_names, {s.source_id: bool(s.live) for s in self.sources},
                              {s.source_id: bool(getattr(s, "stills", False)) for s in self.sources})
        detector = full = None
        if cfg.worker.mode == "faces":  # the same tiers as the local engine (stream.pipeline.face_detectors)
            detector, _, full = face_detectors(cfg, people)
        mine = {s.source_id for s in self.sources}
        for sid, st in states.items():
            if people is not None and st is not None and sid in mine:
                people.restore(sid, st)
        self.stage = CameraStage(info, cfg.worker, detector, people)
        if people is not None and full is not None:  # the crowd preset's full-cost pass on its slow schedule
            from stream.crowd_pass import CrowdPass

            self.stage.crowd = CrowdPass(full, cfg.people.crowd)
        self.replicas = list(replicas)
        self.infer_timeout_s = infer_timeout_s
        self._rr = 0
        self.out: queue.Queue = queue.Queue(maxsize=max(8, 4 * cfg.worker.batch_size))
        self.stop_event = threading.Event()
        self.worker = BatchWorker(
            self.sources, self._process, self.out, self.stop_event,
            cfg.worker.batch_size, cfg.worker.batch_timeout_ms / 1000.0, None,
        )
        self.started = False

    def start(self) -> str:
        """Start the sources and the batching thread; returns this actor's node id."""
        if not self.started:
            self.started = True
            for s in self.sources:
                s.start()
            self.worker.start()
        return ray.get_runtime_context().get_node_id()

    def _infer(self, inputs: Any) -> dict:
        replica = self.replicas[self._rr % len(self.replicas)]
        self._rr += 1
        return ray.get(replica.infer.remote(inputs), timeout=self.infer_timeout_s)

    def _process(self, frames: list) -> list:
        return [Tracked(x, st) for x, st in self.stage.run(frames, self._infer)]

    def poll(self, timeout_s: float = 0.5) -> dict:
        """What is ready: {"items": results/skips/events (a ``Done`` last when finished), "states": per item,
        its source's people snapshot after it (None: unchanged or no people), "stats", "clock": time.time() -
        time.monotonic() on this node}. Waits up to ``timeout_s`` for the first item."""
        items: list = []
        try:
            items.append(self.out.get(timeout=timeout_s))
            while len(items) < POLL_MAX_ITEMS and not isinstance(items[-1], Done):
                items.append(self.out.get_nowait())
        except queue.Empty:
            pass
        return {
            "items": [x.item if isinstance(x, Tracked) else x for x in items],
            "states": [x.state if isinstance(x, Tracked) else None for x in items],
            "stats": {s.source_id: _copy_stats(s.stats) for s in self.sources},
            "clock": time.time() - time.monotonic(),
        }

    def stop(self) -> None:
        """Stop the batching thread and the sources (joined with timeouts)."""
        self.stop_event.set()
        if self.worker.is_alive():
            self.worker.join(5.0)
        for s in self.sources:
            try:
                s.stop()
            except Exception:  # noqa: BLE001 - stopping is best effort; the actor is killed next
                log.debug("stopping %s failed", s.source_id, exc_info=True)


@dataclass
class Tracked:
    """A result on its way to the driver with its source's people snapshot after it (None: no change)."""

    item: Any
    state: bytes | None


def _copy_stats(st: SourceStats) -> SourceStats:
    return replace(st, skip_reasons=dict(st.skip_reasons), conversions=dict(st.conversions))
