"""Options of the event clips (``stream.sinks.clips.ClipSink``), config section ``sinks.clips``.

Kept apart from the sink module for the same import-cycle reason as ``stream.record_options``.
"""

from __future__ import annotations

from dataclasses import dataclass

from stream.record_options import CODECS, check

TRIGGERS = ("auto", "person", "nomask_run")


@dataclass(frozen=True)
class ClipOptions:
    """Short annotated clips around the moments that matter.

    Attributes:
        dir: clips directory (``<dir>/<source>_<frame>_<UTC>.mp4`` and ``<dir>/clips.jsonl``). None: off.
        pre_roll_s: seconds of video kept before the trigger (a ring buffer of annotated frames).
        post_roll_s: seconds kept after the last no-mask frame.
        min_frames: a no-mask frame run must last this many frames to trigger a clip.
        max_clip_s: a clip is cut after this long even if no-mask frames continue (the next one starts).
        trigger: person (a tracked person decided ``without_mask``), nomask_run (a run of no-mask
            frames) or auto (no-mask runs until the first person event arrives, then persons only).
        labels: classes that count as "no mask" (a detection's label or the frame's label).
        codec: h264 | mp4v | mjpg.
        max_buffer_mb: memory cap of each source's pre-roll buffer (large frames: shorter pre-roll).
        queue_frames: frames each source's clip writer may hold (live sources drop beyond it).
    """

    dir: str | None = None
    pre_roll_s: float = 3.0
    post_roll_s: float = 3.0
    min_frames: int = 5
    max_clip_s: float = 60.0
    trigger: str = "auto"
    labels: tuple[str, ...] = ("without_mask",)
    codec: str = "h264"
    max_buffer_mb: float = 256.0
    queue_frames: int = 64

    def __post_init__(self) -> None:
        check(0 <= self.pre_roll_s <= 60, "pre_roll_s", f"must be in [0, 60] seconds, got {self.pre_roll_s}")
        check(0 <= self.post_roll_s <= 60, "post_roll_s", f"must be in [0, 60] seconds, got {self.post_roll_s}")
        check(1 <= self.min_frames <= 10000, "min_frames", f"must be an int in [1, 10000], got {self.min_frames}")
        check(1 <= self.max_clip_s <= 3600, "max_clip_s", f"must be in [1, 3600] seconds, got {self.max_clip_s}")
        check(self.trigger in TRIGGERS, "trigger", f"must be one of {', '.join(TRIGGERS)}, got {self.trigger!r}")
        check(len(self.labels) > 0, "labels", "must name at least one class")
        check(self.codec in CODECS, "codec", f"must be one of {', '.join(CODECS)}, got {self.codec!r}")
        check(1 <= self.max_buffer_mb <= 65536, "max_buffer_mb", f"must be in [1, 65536], got {self.max_buffer_mb}")
        check(1 <= self.queue_frames <= 10000, "queue_frames", f"must be an int in [1, 10000], got {self.queue_frames}")
