"""``maskstream run --engine ray``: cameras and inference as Ray actors, sinks in this process.

Layout (docs/deployment.md has the picture and the capacity table):

* one :class:`stream.engines.ray_actors.CameraActor` per source (or per ``ray.group_size`` sources),
  spread over the nodes: capture, decode, preprocess, per-source state;
* ``ray.replicas`` :class:`stream.engines.ray_actors.InferenceReplica` actors (a GPU each when the
  cluster has GPUs, else CPUs) batching requests from all cameras;
* here, in the driver, the local engine's :class:`stream.pipeline.Pipeline` with its sinks, overlays,
  display, summary and progress bar, fed by :class:`RayCollector` (in place of the local
  ``BatchWorker``) with the same items: :class:`stream.results.FrameResult`, skips, source events.

Faults: a camera actor that dies (process killed, node gone) is started again, on any node with room,
and resumes after the last frame of each of its sources that reached this process (files: none lost,
none twice; live sources reconnect); replicas are restarted by Ray and their requests retried.

Ray is imported only here and in ``ray_actors`` (``maskstream run`` with the local engine never
imports it). A local instance is started bound to 127.0.0.1 with no dashboard; ``run.address``
joins an existing cluster instead.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import signal
import threading
from dataclasses import replace
from typing import Any, Sequence

from stream.config import Config
from stream.engines.ray_collector import (  # noqa: F401 - re-exported for callers of the engine
    STOP_TIMEOUT_S,
    DriverPeople,
    Group,
    RayCollector,
    RemoteSource,
    import_ray,
    start_replicas,
)
from stream.errors import UserError
from stream.pipeline import Pipeline, build_pipeline

log = logging.getLogger(__name__)


def check_ray() -> None:
    """A UserError now, at build time, when Ray is not installed (without importing it)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise UserError("--engine ray needs Ray: pip install 'maskstream[ray]'")


def connect(cfg: Config, n_cameras: int = 1) -> bool:
    """Connect this process to Ray; returns True when it started or joined (and so must shut down).

    Already connected (e.g. tests on a ``ray.cluster_utils.Cluster``): used as is. ``run.address``
    set: join that cluster. Otherwise a local instance on 127.0.0.1 only (no dashboard, an object
    store of ``ray.object_store_mb``) with at least the logical CPUs that ``n_cameras`` camera actors and
    the replicas reserve (on a small machine they share its cores, as the local engine's threads do).
    """
    if not cfg.run.address:
        # a local instance: Ray reads this when it is first imported (ray._private.ray_constants), and then
        # uses 127.0.0.1 as the node address instead of the machine's network address
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray = import_ray()
    if ray.is_initialized():
        return False
    with _keep_sigterm_handler():  # ray.init installs sys.exit for SIGTERM; ours stops the run cleanly
        return _init(ray, cfg, n_cameras)


@contextlib.contextmanager
def _keep_sigterm_handler():
    main = threading.current_thread() is threading.main_thread()
    old = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if main and old is not None:
            signal.signal(signal.SIGTERM, old)


def _init(ray: Any, cfg: Config, n_cameras: int) -> bool:
    common = {"log_to_driver": False, "logging_level": logging.WARNING, "configure_logging": False}
    if cfg.run.address:
        try:
            ray.init(address=cfg.run.address, **common)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise UserError(f"run.address {cfg.run.address!r}: cannot join the Ray cluster ({exc})") from None
        return True
    need = cfg.ray.replicas * cfg.ray.replica_cpus + n_cameras * cfg.ray.camera_cpus
    ray.init(
        address="local",  # a new instance, never a stale one found in /tmp/ray
        num_cpus=max(os.cpu_count() or 1, math.ceil(need)),
        include_dashboard=False,
        object_store_memory=cfg.ray.object_store_mb * 2**20,
        _node_ip_address="127.0.0.1",
        **common,
    )
    return True


class RayPipeline(Pipeline):
    """The local :class:`stream.pipeline.Pipeline` (sinks, overlays, display, summary) fed by Ray actors."""

    def __init__(self, cfg: Config, groups: Sequence[Group], replicas: Sequence[Any] = (), **kwargs: Any) -> None:
        super().__init__([s for g in groups for s in g.sources], _no_process, **kwargs)
        self.cfg = cfg
        self.replicas = list(replicas)
        self.groups = list(groups)
        self.collector: RayCollector | None = None
        self.connected_here = False

    def _make_worker(self, out: queue.Queue, stop: threading.Event) -> RayCollector:
        self.collector = RayCollector(self.cfg, self.groups, out, stop, self.max_frames, replicas=self.replicas)
        if isinstance(self.people, DriverPeople):
            self.people.collector = self.collector
        return self.collector

    def _stop_worker(self, stop: threading.Event) -> None:
        stop.set()
        w = self.worker
        if w is not None and w.is_alive():
            w.join(self.join_timeout_s + 2 * STOP_TIMEOUT_S)

    def run(self):  # noqa: D102 - Pipeline.run, with Ray connected around it
        self.connected_here = connect(self.cfg, len(self.groups))
        try:
            return super().run()
        finally:
            if self.connected_here:
                import_ray().shutdown()

    def ray_report(self) -> str:
        """One line for the console: camera restarts and the batch sizes the replicas reached."""
        c = self.collector
        if c is None:
            return ""
        sizes = c.batch_sizes()
        n = sum(sizes.values())
        mean = sum(k * v for k, v in sizes.items()) / n if n else 0.0
        restarts = sum(g.restarts for g in self.groups)
        return (f"ray      {len(self.groups)} camera actor(s), {len(c.replicas)} replica(s); {n} forwards, "
                f"mean batch {mean:.1f} images (max {max(sizes) if sizes else 0}); camera restarts {restarts}")


def _no_process(frames: list) -> list:
    raise RuntimeError("the ray engine processes frames in its actors")


def build_ray_pipeline(cfg: Config, replicas: Sequence[Any] = ()) -> RayPipeline:
    """The ray engine's pipeline for ``cfg``: the local build (sinks, overlays, progress) with remote cameras.

    ``replicas``: an inference pool from :func:`start_replicas` to share (default: the run starts its own).
    """
    check_ray()
    local_cfg = replace(cfg, worker=replace(cfg.worker, device="cpu", fp16=None))
    from stream.pipeline import open_sources

    sources, specs = open_sources(cfg)  # validates the specs and picks the ids exactly as the local engine
    remote = [RemoteSource(s.source_id, spec, bool(s.live), getattr(s, "fps", None)) for s, spec in zip(sources, specs)]
    # the local build (sinks, fps probing, progress, annotators) on stand-in sources; the model is read once
    # here only for its class names (CPU, no GPU needed on the driver)
    local = build_pipeline(local_cfg, sources=remote, specs=specs, detector=_NoDetector())
    k = cfg.ray.group_size
    groups = [Group(remote[i : i + k]) for i in range(0, len(remote), k)]
    pipe = RayPipeline(
        cfg,
        groups,
        replicas=replicas,
        sinks=local.sinks,
        annotators=local.annotators,
        display=local.display,
        max_frames=cfg.run.max_frames,
        progress_total=local.progress_total,
        class_names=local.class_names,
    )
    pipe.summary = local.summary  # the annotators' HUD reads this summary's monitors
    pipe.people = DriverPeople() if cfg.people.enabled else None  # "left" events from the camera's snapshots
    return pipe


class _NoDetector:
    """Faces mode: the driver builds no detector (the camera actors do)."""

    def detect(self, images: list) -> list:
        raise RuntimeError("the ray engine detects faces in its camera actors")
