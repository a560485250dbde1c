"""Capped exponential backoff with jitter, for reconnecting network sources.

Delay before reconnect attempt ``n`` (1-based) is
``min(maximum, initial * factor**(n-1))`` scaled by a random factor in ``[1 - jitter, 1 + jitter]``
and clipped again to ``[0, maximum]``. Jitter spreads reconnects of many cameras that dropped at
the same moment (a switch reboot) so they do not hammer the server in lock step. The random
stream is private and seedable, so tests get exact delays.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays for successive reconnect attempts.

    Attributes:
        initial: delay before the first attempt, seconds (> 0).
        maximum: cap on any delay, seconds (>= initial).
        factor: growth per attempt (>= 1).
        jitter: relative spread in [0, 1): 0.2 means +-20 %.
        seed: seed of the private random stream (None: seeded from the OS).
    """

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    seed: int | None = None
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.initial > 0:
            raise ValueError(f"initial must be > 0 seconds, got {self.initial!r}")
        if not self.maximum >= self.initial:
            raise ValueError(f"maximum must be >= initial ({self.initial}), got {self.maximum!r}")
        if not self.factor >= 1:
            raise ValueError(f"factor must be >= 1, got {self.factor!r}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter!r}")
        self._rng = random.Random(self.seed)

    def base_delay(self, attempt: int) -> float:
        """Delay without jitter before attempt ``attempt`` (1-based), in seconds."""
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {attempt!r}")
        # Cap the exponent so huge attempt numbers (max_attempts=0: forever) never overflow.
        exponent = min(attempt - 1, 64)
        return min(self.maximum, self.initial * self.factor**exponent)

    def delay(self, attempt: int) -> float:
        """Jittered delay before attempt ``attempt`` (1-based), in seconds; draws one random number."""
        base = self.base_delay(attempt)
        if self.jitter == 0:
            return base
        scale = 1.0 + self.jitter * (2.0 * self._rng.random() - 1.0)
        return min(self.maximum, max(0.0, base * scale))
