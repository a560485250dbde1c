"""Prometheus metrics of a run (official ``prometheus_client``, a private registry per run).

Per source (label ``source``, always redacted): frames in / out / dropped / skipped, end-to-end latency
histogram, up (1 connected, 0 otherwise), reconnects, boxes and frame labels per class; people seen per
decided label and people currently without a mask (from the tracker's person events). Frames in,
dropped and reconnects are read from the sources' own counters at scrape time, the rest is counted
here; on a run that ends at the end of its input they equal the run summary's numbers.
"""

from __future__ import annotations

import collections
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from stream.errors import UserError
from stream.frames import SourceEvent
from stream.redact import redact_text
from stream.sinks.base import Sink
from stream.sinks.registry import SinkContext, register_sink
from stream.sinks.serve_extra import require_serve_extra
from stream.web.options import MetricsOptions

NO_MASK = "without_mask"


class _SourceStatsCollector:
    """Counters the sources keep themselves (frames read, dropped, reconnects), read at scrape time."""

    def __init__(self, sources: Sequence[Any]) -> None:
        self.sources = list(sources)

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        fam = {
            "frames_in": CounterMetricFamily("maskstream_frames_in", "Frames read from the source", labels=["source"]),
            "frames_dropped": CounterMetricFamily(
                "maskstream_frames_dropped", "Frames a live source dropped (processing slower than capture)",
                labels=["source"]),
            "reconnects": CounterMetricFamily(
                "maskstream_source_reconnects", "Successful reconnections after the first connection",
                labels=["source"]),
        }
        for s in self.sources:
            st = getattr(s, "stats", None)
            if st is None:
                continue
            sid = redact_text(s.source_id)
            fam["frames_in"].add_metric([sid], int(st.frames_read))
            fam["frames_dropped"].add_metric([sid], int(st.frames_dropped))
            fam["reconnects"].add_metric([sid], int(st.reconnects))
        return list(fam.values())


@register_sink("metrics", MetricsOptions)
class MetricsSink(Sink):
    """Counts what the pipeline does into ``registry``.

    Args:
        options: the ``sinks.metrics`` section.
        source_ids: the run's sources (their series exist from the start, at 0).
        sources: the source objects, for frames in / dropped / reconnects (None: frames in are
            counted here as frames out + skipped, dropped and reconnects from events).
        registry: a ``prometheus_client.CollectorRegistry`` (None: a new one; see :attr:`registry`).
        labels: class names (their series exist from the start).
    """

    def __init__(
        self,
        options: MetricsOptions,
        source_ids: Iterable[str] = (),
        *,
        sources: Sequence[Any] | None = None,
        registry: Any = None,
        labels: Iterable[str] = ("with_mask", "without_mask"),
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.options = options
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.frames_out = Counter("maskstream_frames_out", "Frames processed and rendered", ["source"], registry=r)
        self.frames_skipped = Counter("maskstream_frames_skipped", "Unusable frames", ["source"], registry=r)
        self.latency = Histogram("maskstream_latency_seconds", "Capture-to-rendered latency", ["source"],
                                 buckets=options.latency_buckets, registry=r)
        self.up = Gauge("maskstream_source_up", "1 while the source delivers frames, else 0", ["source"], registry=r)
        self.boxes = Counter("maskstream_boxes", "Boxes drawn, per class", ["source", "label"], registry=r)
        self.frame_labels = Counter("maskstream_frame_labels", "Frames per predicted frame class (frame mode)",
                                    ["source", "label"], registry=r)
        self.people_seen = Counter("maskstream_people", "People decided per label (a change counts again)",
                                   ["source", "label"], registry=r)
        self.no_mask_now = Gauge("maskstream_people_without_mask", "People in view decided without a mask now",
                                 ["source"], registry=r)
        self.own_stats = sources is None
        if sources is not None:
            r.register(_SourceStatsCollector(sources))
        else:
            self.frames_in = Counter("maskstream_frames_in", "Frames read from the source", ["source"], registry=r)
            self.reconnects = Counter("maskstream_source_reconnects", "Reconnections", ["source"], registry=r)
        self._labels = tuple(labels)
        self._no_mask: dict[str, set] = collections.defaultdict(set)
        self._was_down: set[str] = set()
        for sid in source_ids:
            self._init_source(redact_text(sid))

    @classmethod
    def from_options(cls, opts: MetricsOptions, ctx: SinkContext) -> "MetricsSink | None":
        """On when ``sinks.metrics.enabled`` and there is a reader: the web view (``/metrics``) or a textfile."""
        if not (opts.enabled and (ctx.options_of("web").enabled or opts.textfile)):
            return None
        require_serve_extra("sinks.metrics", {"prometheus_client": "prometheus-client"})
        labels = tuple(ctx.class_names) or ("with_mask", "without_mask")
        return cls(opts, ctx.source_ids, sources=ctx.sources or None, labels=labels)

    def _init_source(self, sid: str) -> None:
        self.frames_out.labels(sid)
        self.frames_skipped.labels(sid)
        self.up.labels(sid).set(0)
        self.no_mask_now.labels(sid).set(0)
        for lab in self._labels:
            self.boxes.labels(sid, lab)
        if self.own_stats:
            self.frames_in.labels(sid)
            self.reconnects.labels(sid)

    def write(self, result: Any, annotated: np.ndarray) -> None:
        f = result.frame
        sid = redact_text(f.source_id)
        self.frames_out.labels(sid).inc()
        if self.own_stats:
            self.frames_in.labels(sid).inc()
        self.latency.labels(sid).observe(max(0.0, time.monotonic() - f.capture_time))
        self.up.labels(sid).set(1)
        for d in result.detections:
            self.boxes.labels(sid, d.label).inc()
        if result.label is not None:
            self.frame_labels.labels(sid, result.label).inc()

    def skip(self, item: Any) -> None:
        sid = redact_text(item.frame.source_id)
        self.frames_skipped.labels(sid).inc()
        if self.own_stats:
            self.frames_in.labels(sid).inc()

    def event(self, ev: SourceEvent) -> None:
        sid = redact_text(ev.source_id)
        state = ev.state.value
        self.up.labels(sid).set(1 if state == "connected" else 0)
        if self.own_stats:
            if state in ("disconnected", "reconnecting"):
                self._was_down.add(sid)
            elif state == "connected" and sid in self._was_down:
                self._was_down.discard(sid)
                self.reconnects.labels(sid).inc()

    def person(self, event: dict) -> None:
        sid = redact_text(str(event.get("source", "")))
        kind, label, pid = event.get("event"), event.get("label"), event.get("person_id")
        if kind in ("decided", "changed") and label is not None:
            self.people_seen.labels(sid, label).inc()
        if kind in ("decided", "changed") and label == NO_MASK:
            self._no_mask[sid].add(pid)
        elif kind in ("changed", "left") or (kind == "decided" and label != NO_MASK):
            self._no_mask[sid].discard(pid)
        self.no_mask_now.labels(sid).set(len(self._no_mask[sid]))

    def text(self) -> bytes:
        """The metrics in Prometheus text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def close(self) -> None:
        path = self.options.textfile
        if not path:
            return
        p = Path(path)
        try:  # atomic: node_exporter must never read half a file
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=p.name, dir=p.parent)
            with os.fdopen(fd, "wb") as fh:
                fh.write(self.text())
            os.replace(tmp, p)
        except OSError as exc:
            raise UserError(f"metrics.textfile {p}: cannot be written ({exc.strerror or exc})") from None
