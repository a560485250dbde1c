"""The ``people.crowd`` section: when the full-cost ("crowd") detector runs beside the cheap one.

The full-cost detector is ``worker.crowd_detector_options`` (options of ``core.detect.create_detector``
over ``worker.detector_options``; empty: no second tier). With people tracking on, it runs on the slow
schedule below and seeds tracks (``stream.crowd_pass``); without tracking, and on image-folder photos,
it is the detector of every frame. Validated on load like the rest of the config: a bad value is refused
with its dotted key (``people.crowd.every must be ...``).
"""

from __future__ import annotations

from dataclasses import dataclass

from stream.errors import check as _check


@dataclass(frozen=True)
class CrowdConfig:
    """``people.crowd``: the full-cost pass's schedule.

    Attributes:
        every: frames per cycle of the full-cost pass (every tile once).
        every_s: the cycle in seconds of media time instead (null: ``every`` frames); needs the source's
            frame rate, ``every`` is used until it is known.
        backoff_max: the cycle may grow up to this factor while the worker is slower than the source
            (1: never backs off).
        spread: run the pass one tile at a time, round-robin, evenly over the cycle (false: every tile
            at once, once per cycle). A pass without tiles is one piece either way.
    """

    every: int = 25
    every_s: float | None = None
    backoff_max: float = 4.0
    spread: bool = True

    def __post_init__(self) -> None:
        _check(1 <= self.every <= 100_000, "every", f"must be an int in [1, 100000] frames, got {self.every}")
        _check(
            self.every_s is None or 0 < self.every_s <= 3600,
            "every_s",
            f"must be null or in (0, 3600] seconds, got {self.every_s}",
        )
        _check(1.0 <= self.backoff_max <= 100.0, "backoff_max", f"must be in [1, 100], got {self.backoff_max}")
