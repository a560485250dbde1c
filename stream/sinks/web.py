"""The live web view as a sink: keeps :class:`stream.web.state.LiveState` up to date from the pipeline
thread and runs the HTTP server (starlette on uvicorn) on its own thread.

The pipeline thread never waits on a viewer: ``write`` counts, stores a reference to the annotated
frame and returns; encoding happens on server threads and only while someone watches.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, Iterable

import numpy as np

from stream.alerts.rules import AlertRules
from stream.alerts.snapshot import explained_snapshot
from stream.frames import SourceEvent
from stream.redact import redact_text
from stream.sinks.base import Sink, wall_time
from stream.sinks.events import state_event
from stream.sinks.people import box_of, labels_and_box, people_in_view
from stream.sinks.registry import SinkContext, register_sink
from stream.sinks.serve_extra import require_serve_extra
from stream.web.options import WebOptions
from stream.web.state import LiveState

log = logging.getLogger(__name__)


@register_sink("web", WebOptions)
class WebSink(Sink):
    """Serves ``/``, ``/sources/<key>.mjpg``, ``/api/*`` and ``/metrics`` while the run lasts.

    Args:
        options: the ``sinks.web`` section.
        source_ids: the run's sources (the page lists them in this order).
        registry: ``prometheus_client.CollectorRegistry`` for /metrics (None: /metrics answers 404).
        token: bearer token (None: no token).
        alert_labels: labels whose decided people (or, without a tracker, frame runs) make a snapshot.
        fallback_frames: frames of the frame-level no-mask fallback (see ``stream.alerts.rules``).
        announce: print the URL to stderr when the server is up.
    """

    def __init__(
        self,
        options: WebOptions,
        source_ids: Iterable[str] = (),
        *,
        registry: Any = None,
        token: str | None = None,
        alert_labels: Iterable[str] = ("without_mask",),
        fallback_frames: int = 5,
        snapshot_margin: float = 0.25,
        announce: bool = True,
    ) -> None:
        from stream.web.app import create_app
        from stream.web.server import WebServer

        self.options = options
        self.live = LiveState(
            source_ids,
            mjpeg_width=options.mjpeg_width,
            jpeg_quality=options.jpeg_quality,
            events_kept=options.events_kept,
            snapshots_kept=options.snapshots_kept,
        )
        self.closing = threading.Event()
        app = create_app(self.live, mjpeg_fps=options.mjpeg_fps, token=token, registry=registry, closing=self.closing)
        self.server = WebServer(app, options.host, options.port, options.shutdown_s)
        self.rules = AlertRules(frozenset(alert_labels), fallback_frames, 0.0)
        self.margin = snapshot_margin
        self.announce = announce
        self._last: dict[str, tuple[np.ndarray, list[dict]]] = {}
        self._started = False

    @classmethod
    def from_options(cls, opts: WebOptions, ctx: SinkContext) -> "WebSink | None":
        """On with ``sinks.web.enabled`` (``--serve``). Serves the metrics sink's registry at ``/metrics``,
        makes no-mask snapshots by ``sinks.alerts``' rules, and shows the alert sink's source down/up alerts."""
        if not opts.enabled:
            return None
        need = {"starlette": "starlette", "uvicorn": "uvicorn"}
        if ctx.options_of("metrics").enabled:
            need["prometheus_client"] = "prometheus-client"
        require_serve_extra("sinks.web", need)
        from stream.sinks.alerts import AlertSink
        from stream.sinks.metrics import MetricsSink
        from stream.web.auth import load_token

        token = load_token(opts.token_file)
        if token is None and opts.allow_remote:
            log.warning("web: serving other machines without a token (set MASKSTREAM_TOKEN or sinks.web.token_file)")
        metrics = next((s for s in ctx.earlier if isinstance(s, MetricsSink)), None)
        alerts_opts = ctx.options_of("alerts")
        web = cls(opts, ctx.source_ids, registry=metrics.registry if metrics is not None else None, token=token,
                  alert_labels=alerts_opts.labels, fallback_frames=alerts_opts.fallback_frames,
                  snapshot_margin=alerts_opts.snapshot_margin)
        alerts = next((s for s in ctx.earlier if isinstance(s, AlertSink)), None)
        if alerts is not None:  # the page's event log shows source down/up alerts (no-mask ones it finds itself)
            alerts.on_alert = lambda a: web.live.add_event(a) if a["kind"].startswith("source_") else None
        return web

    @property
    def url(self) -> str:
        return self.server.url

    def __enter__(self) -> "WebSink":
        self.server.start()
        self._started = True
        if self.announce:
            print(f"maskstream: web view at {self.server.url}", file=sys.stderr, flush=True)
        return self

    def write(self, result: Any, annotated: np.ndarray) -> None:
        f = result.frame
        people = people_in_view(result)
        found, box = labels_and_box(result, self.rules.labels)
        self.live.on_frame(
            f.source_id,
            label=result.label,
            box_labels=[d.label for d in result.detections],
            people=people,
            latency_s=time.monotonic() - f.capture_time,
            image=annotated,
        )
        self._last[redact_text(f.source_id)] = (annotated, people)
        alert = self.rules.on_frame(f.source_id, f.index, wall_time(f.capture_time), found, box)
        if alert is not None:
            self._snapshot(alert, None, annotated, box)

    def event(self, ev: SourceEvent) -> None:
        self.live.on_state(ev.source_id, ev.state.value, ev.attempt, ev.message, state_event(ev))

    def skip(self, item: Any) -> None:
        self.live.on_skip(item.frame.source_id)

    def person(self, event: dict) -> None:
        self.live.on_person(event)
        alert = self.rules.on_person(event)
        if alert is not None:
            annotated, people = self._last.get(alert["source"], (None, []))
            box = event.get("box") or box_of(people, event.get("person_id"))
            self._snapshot(alert, event.get("snapshot"), annotated, box)

    def _snapshot(self, alert: dict, given: Any, annotated: np.ndarray | None, box: Any) -> None:
        try:
            jpeg = explained_snapshot(given, annotated, box, self.margin)
        except (ValueError, OSError) as exc:
            log.warning("web: no snapshot for %s (%s)", alert["id"], exc)
            jpeg = None
        self.live.add_event(alert)
        if jpeg is not None:
            info = {k: alert.get(k) for k in ("kind", "source", "person_id", "frame_index", "time", "label")}
            self.live.add_snapshot(jpeg, info)

    def close(self) -> None:
        if not self._started:
            return
        self._started = False
        self.live.running = False
        self.closing.set()  # MJPEG streams end; viewers see the last frame
        self.server.stop()
