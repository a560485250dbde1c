"""The ray engine's driver side: starts the actors, pulls their results, restarts dead cameras.

:class:`RayCollector` plays the local ``BatchWorker``'s part for :class:`stream.pipeline.Pipeline`
(see ``ray_engine``); :class:`RemoteSource` stands in the driver for a source a camera actor reads.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from stream.config import Config
from stream.errors import UserError
from stream.frames import SourceEvent, SourceState, SourceStats
from stream.redact import redact_text
from stream.results import Done, FrameResult, SkippedFrame
from stream.worker import put_done, put_until_stopped

log = logging.getLogger(__name__)

TERMINAL = (SourceState.END_OF_STREAM, SourceState.FAILED)
STOP_TIMEOUT_S = 5.0


def import_ray() -> Any:
    """``ray``, or a UserError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError("--engine ray needs Ray: pip install 'maskstream[ray]'") from None
    return ray


class RemoteSource:
    """Stands in the driver for a source read by a camera actor: its id, kind and the stats it reports."""

    def __init__(self, source_id: str, spec: str, live: bool, fps: float | None = None) -> None:
        self.source_id = source_id
        self.spec = spec
        self.live = live
        self.fps = fps
        self.stats = SourceStats()
        self.state = SourceState.CONNECTING

    def start(self) -> None:
        """Nothing: the camera actor starts the real source."""

    def stop(self) -> None:
        """Nothing: the collector stops the camera actors."""


@dataclass
class Group:
    """One camera actor's sources and what the driver knows about them."""

    sources: list[RemoteSource]
    handle: Any = None
    node: str | None = None
    restarts: int = 0
    done: bool = False
    ended: set = field(default_factory=set)
    nodes: list = field(default_factory=list)  # every node it ran on, in order


def place_replicas(ray: Any, cfg: Config) -> tuple[dict, str, int]:
    """Actor options, device and torch threads for the replicas: a GPU each when the cluster has GPUs."""
    gpus = float(ray.cluster_resources().get("GPU", 0))
    want = cfg.worker.device
    if want.startswith("cuda") and gpus < 1:
        raise UserError(f"worker.device {want!r}: the Ray cluster has no GPU (use --device cpu or auto)")
    if want != "cpu" and gpus >= 1:
        return {"num_gpus": 1, "num_cpus": 1}, "cuda", cfg.worker.torch_threads or 1
    threads = cfg.worker.torch_threads or max(1, int(cfg.ray.replica_cpus))
    return {"num_cpus": cfg.ray.replica_cpus}, "cpu", threads


def start_replicas(ray: Any, cfg: Config) -> list:
    """``ray.replicas`` inference replica actors for ``cfg`` (restarted by Ray, their requests retried)."""
    from stream.engines.ray_actors import InferenceReplica

    opts, device, threads = place_replicas(ray, cfg)
    cls = ray.remote(InferenceReplica).options(max_restarts=-1, max_task_retries=-1, max_concurrency=1000, **opts)
    rc = cfg.ray
    log.info("ray: %d inference replica(s) on %s", rc.replicas, device)
    return [cls.remote(cfg, device, threads, rc.max_batch, rc.batch_wait_ms / 1000.0) for _ in range(rc.replicas)]


class RayCollector(threading.Thread):
    """Starts the replicas and camera actors, pulls their results into ``out``, restarts dead cameras.

    It plays the local ``BatchWorker``'s part for :class:`stream.pipeline.Pipeline`: ``out`` gets
    results, skips and source events, then one ``Done`` (with the error, if any); ``frames_in``
    counts the frames handed on.
    """

    def __init__(
        self,
        cfg: Config,
        groups: Sequence[Group],
        out: queue.Queue,
        stop: threading.Event,
        max_frames: int | None = None,
        poll_s: float = 0.2,
        replicas: Sequence[Any] = (),
    ) -> None:
        super().__init__(name="maskstream-ray-collector", daemon=True)
        self.cfg = cfg
        self.groups = list(groups)
        self.out = out
        self.stop_event = stop
        self.max_frames = max_frames
        self.poll_s = poll_s
        self.frames_in = 0
        self.error: BaseException | None = None
        self.last_index: dict[str, int] = {}
        self.states: dict[str, bytes] = {}  # source -> people snapshot after its frame last_index[source]
        self.replicas: list = list(replicas)
        self.own_replicas = True
        self.replica_stats: list[dict] = []
        self.info: Any = None
        self.ready = threading.Event()  # set once every camera actor has started (tests wait on it)
        self._clock = time.time() - time.monotonic()
        self._pending: dict = {}  # ObjectRef -> (kind, group index)
        self._ray: Any = None

    # ------------------------------------------------------------ actors
    def _start_replicas(self) -> None:
        if self.replicas:  # given (a pool shared by several runs): used, not owned
            self.own_replicas = False
        else:
            self.replicas = start_replicas(self._ray, self.cfg)
        self.info = self._ray.get(self.replicas[0].info.remote())

    def _spawn(self, gi: int) -> None:
        from stream.engines.ray_actors import CameraActor

        ray = self._ray
        g = self.groups[gi]
        left = [s for s in g.sources if s.source_id not in g.ended]
        cls = ray.remote(CameraActor).options(
            num_cpus=self.cfg.ray.camera_cpus, max_concurrency=4, max_restarts=0, scheduling_strategy="SPREAD"
        )
        resume = {s.source_id: self.last_index[s.source_id] for s in left if s.source_id in self.last_index}
        states = {s.source_id: self.states.get(s.source_id) for s in left}
        g.handle = cls.remote(self.cfg, [(s.spec, s.source_id) for s in left], resume, states, self.replicas,
                              self.info)
        self._pending[g.handle.start.remote()] = ("start", gi)

    def _restart(self, gi: int, exc: BaseException) -> None:
        g = self.groups[gi]
        names = ", ".join(redact_text(s.source_id) for s in g.sources)
        g.restarts += 1
        if g.restarts > self.cfg.ray.max_restarts:
            raise RuntimeError(f"camera actor for {names} died {g.restarts} times (ray.max_restarts "
                               f"{self.cfg.ray.max_restarts}); last: {type(exc).__name__}")
        log.warning("camera actor for %s died (%s); restarting it (restart %d)", names, type(exc).__name__,
                    g.restarts)
        try:
            self._ray.kill(g.handle, no_restart=True)
        except Exception:  # noqa: BLE001 - it is gone already
            pass
        self._spawn(gi)

    # ------------------------------------------------------------ items
    def _put(self, item: Any) -> bool:
        return put_until_stopped(self.out, item, self.stop_event)

    def _retime(self, item: Any, shift: float) -> Any:
        """Move a camera node's monotonic stamps onto this process's clock (via wall time)."""
        if abs(shift) < 1e-3:
            return item
        if isinstance(item, SourceEvent):
            return replace(item, time=item.time + shift)
        f = replace(item.frame, capture_time=item.frame.capture_time + shift)
        if isinstance(item, FrameResult):
            return replace(item, frame=f, done_time=item.done_time + shift)
        return replace(item, frame=f)

    def _take(self, gi: int, reply: dict) -> None:
        g = self.groups[gi]
        shift = reply["clock"] - self._clock
        by_id = {s.source_id: s for s in g.sources}
        for sid, st in reply["stats"].items():
            if sid in by_id:
                by_id[sid].stats = st
        for item, state in zip(reply["items"], reply["states"]):
            if isinstance(item, Done):
                if item.error is not None:
                    raise item.error
                g.done = True
                return
            if self.max_frames is not None and self.frames_in >= self.max_frames:
                return
            item = self._retime(item, shift)
            if isinstance(item, SourceEvent):
                if item.state in TERMINAL:
                    g.ended.add(item.source_id)
                by_id[item.source_id].state = item.state
            if not self._put(item):
                return
            if isinstance(item, (FrameResult, SkippedFrame)):
                self.frames_in += 1
                self.last_index[item.frame.source_id] = item.frame.index
                if state is not None:  # the people of this source right after the frame just handed on
                    self.states[item.frame.source_id] = state

    # ------------------------------------------------------------ thread body
    def run(self) -> None:  # noqa: D401 - thread body
        try:
            self._ray = import_ray()
            self._start_replicas()
            for gi in range(len(self.groups)):
                self._spawn(gi)
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, never swallowed
            self.error = exc
            log.debug("ray collector failed", exc_info=True)
        finally:
            self._shutdown()
            put_done(self.out, Done(self.error, self.frames_in), self.stop_event)

    def _loop(self) -> None:
        ray = self._ray
        started = 0
        while not self.stop_event.is_set():
            if all(g.done for g in self.groups):
                return
            if self.max_frames is not None and self.frames_in >= self.max_frames:
                return
            ready, _ = ray.wait(list(self._pending), num_returns=1, timeout=0.1)
            for ref in ready:
                kind, gi = self._pending.pop(ref)
                g = self.groups[gi]
                try:
                    got = ray.get(ref)
                except ray.exceptions.RayActorError as exc:
                    self._restart(gi, exc)
                    continue
                if kind == "start":
                    g.node = got
                    g.nodes.append(got)
                    started += 1
                    if started >= len(self.groups):
                        self.ready.set()
                else:
                    self._take(gi, got)
                if not g.done:
                    self._pending[g.handle.poll.remote(self.poll_s)] = ("poll", gi)

    def _shutdown(self) -> None:
        ray = self._ray
        if ray is None or not ray.is_initialized():
            return
        handles = [g.handle for g in self.groups if g.handle is not None]
        try:
            ray.wait([h.stop.remote() for h in handles], num_returns=len(handles), timeout=STOP_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - best effort: the actors are killed next
            log.debug("stopping camera actors failed", exc_info=True)
        try:
            refs = [r.stats.remote() for r in self.replicas]
            self.replica_stats = ray.get(refs, timeout=STOP_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - statistics only
            log.debug("replica statistics unavailable", exc_info=True)
        for h in handles + (self.replicas if self.own_replicas else []):
            try:
                ray.kill(h, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass

    def batch_sizes(self) -> dict[int, int]:
        """Images per forward -> how many forwards, over every replica (after the run)."""
        total: dict[int, int] = {}
        for st in self.replica_stats:
            for n, c in st.get("images", {}).items():
                total[int(n)] = total.get(int(n), 0) + int(c)
        return dict(sorted(total.items()))


class DriverPeople:
    """The driver's part of people tracking: the ``left`` events of a source that ended or of a stopped run.

    Stands where the local engine's ``stream.people.PeopleStage`` stands for :class:`stream.pipeline.Pipeline`
    (``finish_source`` / ``finish_all``). The trackers live in the camera actors; the collector keeps each
    source's snapshot taken right after the last frame it handed on, and the people still tracked in it
    are the ones that leave, exactly as the local engine's tracker would give them at that frame.
    """

    def __init__(self) -> None:
        self.collector: RayCollector | None = None
        self._finished: set[str] = set()

    def finish_source(self, source_id: str) -> list[dict]:
        """``left`` events for everyone still tracked in ``source_id`` (once per source)."""
        from stream.people import restore_source

        c = self.collector
        state = None if c is None else c.states.get(source_id)
        if state is None or source_id in self._finished:
            return []
        self._finished.add(source_id)
        return restore_source(state).finish()

    def finish_all(self) -> list[dict]:
        """``left`` events of every source not finished yet (after the collector stopped)."""
        c = self.collector
        return [ev for sid in (list(c.states) if c is not None else []) for ev in self.finish_source(sid)]
