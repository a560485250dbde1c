"""Headless outputs: annotated video, JSON Lines events, JPEG snapshots, recordings, event clips,
Prometheus metrics, alerts (webhook, MQTT) and the live web view. Every sink is a context manager.

Sink types register themselves (``stream.sinks.registry.register_sink``) when their module is imported;
``SINK_MODULES`` lists them, in the order ``run`` builds and feeds them. A new sink module adds one entry.
"""

from __future__ import annotations

import importlib

from stream.sinks.base import Sink, safe_name, wall_time
from stream.sinks.registry import SINKS, SinkContext, SinkType, register_sink

SINK_MODULES: tuple[str, ...] = (
    "stream.sinks.video",
    "stream.sinks.events",
    "stream.sinks.snapshots",
    "stream.sinks.record",  # after events: built with its emit, closed before it (last events written)
    "stream.sinks.clips",
    "stream.sinks.metrics",  # before alerts and web: they count into / serve its registry
    "stream.sinks.alerts",
    "stream.sinks.web",
)
for _module in SINK_MODULES:
    importlib.import_module(_module)

from stream.sinks.events import EventsSink, frame_events, state_event  # noqa: E402
from stream.sinks.snapshots import SnapshotSink  # noqa: E402
from stream.sinks.video import VideoSink, output_paths  # noqa: E402

__all__ = [
    "SINKS",
    "SINK_MODULES",
    "Sink",
    "SinkContext",
    "SinkType",
    "VideoSink",
    "EventsSink",
    "SnapshotSink",
    "frame_events",
    "register_sink",
    "state_event",
    "output_paths",
    "safe_name",
    "wall_time",
]
