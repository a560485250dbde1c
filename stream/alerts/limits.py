"""Per-source alert limits: a sliding-window rate limit and quiet hours (local time). Pure; the caller
passes the clock."""

from __future__ import annotations

import collections
import time

from stream.alerts.options import SourceLimits, parse_quiet_hours


def in_quiet_hours(spans: tuple[tuple[int, int], ...], minute_of_day: int) -> bool:
    """True when ``minute_of_day`` (0..1439) falls in one of ``spans`` ((start, end) minutes; end < start
    crosses midnight; start inclusive, end exclusive)."""
    for a, b in spans:
        if (a <= minute_of_day < b) if a < b else (minute_of_day >= a or minute_of_day < b):
            return True
    return False


class SourceLimiter:
    """Decides whether an alert of one source may go out now.

    Args:
        limits: the source's limits.
    """

    def __init__(self, limits: SourceLimits) -> None:
        self.limits = limits
        self.quiet = parse_quiet_hours(limits.quiet_hours)
        self._sent: collections.deque = collections.deque()

    def check(self, now: float, wall: float | None = None) -> str | None:
        """None when the alert may go (and counts it), else why not: ``"quiet hours"`` or ``"rate limit"``.

        Args:
            now: monotonic seconds (the rate window).
            wall: Unix time for the quiet hours (local time of this machine); default ``time.time()``.
        """
        if self.quiet:
            lt = time.localtime(time.time() if wall is None else wall)
            if in_quiet_hours(self.quiet, lt.tm_hour * 60 + lt.tm_min):
                return "quiet hours"
        n, period = self.limits.max_alerts, self.limits.period_s
        if n > 0:
            while self._sent and now - self._sent[0] >= period:
                self._sent.popleft()
            if len(self._sent) >= n:
                return "rate limit"
        self._sent.append(now)
        return None
