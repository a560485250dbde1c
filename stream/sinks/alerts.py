"""Alerts as a sink: decides (``stream.alerts.rules``), limits per source (``stream.alerts.limits``),
attaches the explained snapshot and hands the alert to the webhook and MQTT transports.

Never blocks the pipeline: transports queue (bounded) and deliver on their own threads. At the end of
the run they get ``sinks.alerts.flush_s`` seconds to deliver; what they could not is reported (log warning
and :meth:`AlertSink.report`).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

import numpy as np

from stream.alerts.limits import SourceLimiter
from stream.alerts.options import AlertsOptions
from stream.alerts.rules import AlertRules
from stream.alerts.snapshot import explained_snapshot
from stream.frames import SourceEvent
from stream.redact import redact_text
from stream.sinks.base import Sink, wall_time
from stream.sinks.events import state_event
from stream.sinks.people import box_of, labels_and_box, people_in_view
from stream.sinks.registry import SinkContext, register_sink
from stream.sinks.serve_extra import require_serve_extra

log = logging.getLogger(__name__)
TICK_S = 0.25


@register_sink("alerts", AlertsOptions)
class AlertSink(Sink):
    """Alerts on people decided without a mask and on sources down too long.

    Args:
        options: the ``sinks.alerts`` section.
        registry: a ``prometheus_client.CollectorRegistry`` to count alerts into (None: not counted there).
        transports: injected transports (tests); default: from ``options``.
        on_alert: called with every alert that goes out (e.g. the events file); optional.
    """

    def __init__(self, options: AlertsOptions, *, registry: Any = None, transports: list | None = None,
                 on_alert: Any = None) -> None:
        self.options = options
        self.rules = AlertRules(frozenset(options.labels), options.fallback_frames, options.source_down_s)
        if transports is None:
            transports = []
            if options.webhook.url:
                from stream.alerts.webhook import WebhookTransport

                transports.append(WebhookTransport(options.webhook))
            if options.mqtt.host:
                from stream.alerts.mqtt import MqttTransport

                transports.append(MqttTransport(options.mqtt))
        self.transports = transports
        self.mqtt = next((t for t in transports if getattr(t, "name", "") == "mqtt"), None)
        self.on_alert = on_alert
        self._limiters: dict[str, SourceLimiter] = {}
        self._last: dict[str, tuple[np.ndarray, list[dict]]] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self.raised: collections.Counter = collections.Counter()  # by kind
        self.suppressed: collections.Counter = collections.Counter()  # by reason
        self._open = False
        self._counter = None
        if registry is not None:
            from prometheus_client import Counter

            self._counter = Counter("maskstream_alerts", "Alerts by kind and outcome (sent to the transports, "
                                    "suppressed by quiet hours or the rate limit)", ["kind", "outcome"],
                                    registry=registry)
            registry.register(_TransportCollector(self.transports))

    @classmethod
    def from_options(cls, opts: AlertsOptions, ctx: SinkContext) -> "AlertSink | None":
        """On when a transport is configured; counts into the metrics sink's registry when that is on."""
        if not opts.enabled:
            return None
        need = {"httpx": "httpx"} if opts.webhook.url else {}
        if opts.mqtt.host:
            need["paho"] = "paho-mqtt"
        require_serve_extra("sinks.alerts", need)
        from stream.sinks.metrics import MetricsSink

        metrics = next((s for s in ctx.earlier if isinstance(s, MetricsSink)), None)
        return cls(opts, registry=metrics.registry if metrics is not None else None)

    def __enter__(self) -> "AlertSink":
        for t in self.transports:
            t.start()
        self._open = True
        self._ticker = threading.Thread(target=self._tick_loop, name="maskstream-alerts", daemon=True)
        self._ticker.start()
        return self

    # ---------------------------------------------------------------- inputs (pipeline thread)
    def write(self, result: Any, annotated: np.ndarray) -> None:
        f = result.frame
        people = people_in_view(result)
        with self._lock:
            self._last[redact_text(f.source_id)] = (annotated, people)
            found, box = labels_and_box(result, self.rules.labels)
            alert = self.rules.on_frame(f.source_id, f.index, wall_time(f.capture_time), found, box)
        if alert is not None:
            self._emit(alert, None, annotated, box)

    def person(self, event: dict) -> None:
        if self.mqtt is not None and self.options.mqtt.person_events:
            ev = {k: v for k, v in event.items() if k != "snapshot"}
            ev["source"] = redact_text(str(ev.get("source", "")))
            self.mqtt.publish(self.mqtt.topic(ev["source"], "person"), ev)
        with self._lock:
            alert = self.rules.on_person(event)
            annotated, people = self._last.get(redact_text(str(event.get("source", ""))), (None, []))
        if alert is not None:
            box = event.get("box") or box_of(people, event.get("person_id"))
            self._emit(alert, event.get("snapshot"), annotated, box)

    def event(self, ev: SourceEvent) -> None:
        if self.mqtt is not None:
            st = state_event(ev)
            self.mqtt.publish(self.mqtt.topic(st["source"], "state"), st, retain=True)
        with self._lock:
            alert = self.rules.on_state(ev.source_id, ev.state.value, ev.time, wall_time(ev.time), ev.message)
        if alert is not None:
            self._emit(alert, None, None, None)

    def _tick_loop(self) -> None:
        while not self._stop.wait(TICK_S):
            now = time.monotonic()
            with self._lock:
                alerts = self.rules.tick(now, wall_time(now))
            for a in alerts:
                self._emit(a, None, None, None)

    # ---------------------------------------------------------------- out
    def _emit(self, alert: dict, given: Any, annotated: np.ndarray | None, box: Any) -> None:
        src = alert["source"]
        with self._lock:
            lim = self._limiters.get(src)
            if lim is None:
                lim = self._limiters[src] = SourceLimiter(self.options.limits_for(src))
            why = lim.check(time.monotonic())
            kind = alert["kind"]
            if why is not None:
                self.suppressed[why] += 1
                if self._counter is not None:
                    self._counter.labels(kind, "suppressed").inc()
                log.info("alert %s of %s suppressed (%s)", kind, src, why)
                return
            self.raised[kind] += 1
            if self._counter is not None:
                self._counter.labels(kind, "raised").inc()
        jpeg = None
        if kind in ("no_mask", "no_mask_frames"):
            try:
                jpeg = explained_snapshot(given, annotated, box, self.options.snapshot_margin)
            except (ValueError, OSError) as exc:
                log.warning("alert %s: no snapshot (%s)", alert["id"], exc)
        for t in self.transports:
            t.submit((alert, jpeg))
        if self.on_alert is not None:
            self.on_alert(alert)

    def report(self) -> dict:
        """Counts: alerts raised by kind, suppressed by reason, and each transport's sent/dropped/undelivered."""
        return {"raised": dict(self.raised), "suppressed": dict(self.suppressed),
                "transports": {t.name: t.counts() for t in self.transports}}

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(2.0)
        deadline = time.monotonic() + self.options.flush_s
        for t in self.transports:
            t.close(max(0.1, deadline - time.monotonic()))
        rep = self.report()
        parts = [f"{name}: sent {c['sent']}" + (f", dropped {c['dropped']} (queue full)" if c["dropped"] else "")
                 + (f", failed {c['failed']}" if c["failed"] else "")
                 + (f", NOT DELIVERED {c['undelivered']}" if c["undelivered"] else "")
                 for name, c in rep["transports"].items()]
        sup = sum(self.suppressed.values())
        msg = f"alerts: raised {sum(self.raised.values())}" + (f", suppressed {sup}" if sup else "")
        msg += "; " + "; ".join(parts) if parts else ""
        if any(c["undelivered"] or c["dropped"] or c["failed"] for c in rep["transports"].values()):
            log.warning("%s (within the %.0f s flush time)", msg, self.options.flush_s)
        else:
            log.info("%s", msg)


class _TransportCollector:
    """Transport counters (sent, dropped, failed, pending) at scrape time."""

    def __init__(self, transports: list) -> None:
        self.transports = transports

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        sent = CounterMetricFamily("maskstream_alert_messages_sent", "Alert messages delivered", labels=["transport"])
        dropped = CounterMetricFamily("maskstream_alert_messages_dropped", "Alert messages dropped (queue full)",
                                      labels=["transport"])
        failed = CounterMetricFamily("maskstream_alert_messages_failed", "Alert messages given up",
                                     labels=["transport"])
        pending = GaugeMetricFamily("maskstream_alert_messages_pending", "Alert messages waiting",
                                    labels=["transport"])
        for t in self.transports:
            c = t.counts()
            sent.add_metric([t.name], c["sent"])
            dropped.add_metric([t.name], c["dropped"])
            failed.add_metric([t.name], c["failed"])
            pending.add_metric([t.name], c["pending"])
        return [sent, dropped, failed, pending]
