"""Resuming a source after its camera actor was restarted: no frame lost, none delivered twice.

A restarted camera reopens its sources. A file source starts from its first frame again, so
:class:`ResumeAfter` drops the frames up to the last one that reached the sinks (file frame
indices are deterministic: the n-th decoded frame is index n). A live source cannot replay; its
new frames are renumbered after the last delivered index so that a source's indices keep
increasing across restarts.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from stream.frames import Frame


class ResumeAfter:
    """Wraps a ``FrameSource``; frames of a file with index <= ``last`` are dropped, live ones renumbered.

    Args:
        source: the reopened source (not started).
        last: index of the last frame of this source that reached the sinks (None: nothing yet).
    """

    def __init__(self, source: Any, last: int | None) -> None:
        self.source = source
        self.last = last
        self.skipped = 0

    def __getattr__(self, name: str) -> Any:  # source_id, live, stats, state, fps...
        return getattr(self.source, name)

    def start(self) -> None:
        self.source.start()

    def stop(self) -> None:
        self.source.stop()

    def get(self, timeout: float) -> Any:
        """The next item, skipping already-delivered file frames within ``timeout`` seconds."""
        end = time.monotonic() + timeout
        while True:
            item = self.source.get(max(0.0, end - time.monotonic()))
            if self.last is None or not isinstance(item, Frame):
                return item
            if self.source.live:
                return replace(item, index=item.index + self.last + 1)
            if item.index > self.last:
                return item
            self.skipped += 1
            if time.monotonic() >= end:
                return None
