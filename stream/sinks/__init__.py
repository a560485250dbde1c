"""Headless outputs: annotated video, JSON Lines events, JPEG snapshots. Every sink is a context manager."""

from __future__ import annotations

from stream.sinks.base import Sink, safe_name, wall_time
from stream.sinks.events import EventsSink, frame_events, state_event
from stream.sinks.snapshots import SnapshotSink
from stream.sinks.video import VideoSink, output_paths

__all__ = [
    "Sink",
    "VideoSink",
    "EventsSink",
    "SnapshotSink",
    "frame_events",
    "state_event",
    "output_paths",
    "safe_name",
    "wall_time",
]
