"""Capped exponential backoff with jitter, for reconnects and for nack retry delays.

The same rule as the Rust client's ``Backoff``: attempt ``n`` (from 0) waits a random time
between half and all of ``min(max, initial * 2**n)``, so consecutive delays grow but never
exceed ``max``, and clients cut off together do not retry in lockstep.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Delays between retries, in seconds.

    ``initial`` is the ceiling of the first delay and ``max`` the ceiling of every delay; a
    ``max`` below ``initial`` caps everything at ``max``.
    """

    initial: float = 0.05
    max: float = 5.0

    def __post_init__(self) -> None:
        if not (self.initial >= 0 and self.max >= 0):
            raise ValueError(f"backoff delays must not be negative: {self!r}")

    def ceiling(self, attempt: int) -> float:
        """Returns the largest delay of ``attempt`` (from 0): ``min(max, initial * 2**attempt)``."""
        attempt = max(0, attempt)
        if self.initial == 0:
            return 0.0
        # 2**attempt overflows a float long before it matters: past the cap, stay at max.
        if attempt >= 1024 or self.initial * math.ldexp(1.0, attempt) >= self.max:
            return self.max
        return self.initial * math.ldexp(1.0, attempt)

    def delay(self, attempt: int, jitter: float | None = None) -> float:
        """Returns the delay of ``attempt`` for a ``jitter`` between 0 and 1 (clamped; NaN is 0).

        From half the :meth:`ceiling` at 0 to all of it at 1; ``None`` draws a random jitter.
        """
        if jitter is None:
            jitter = random.random()
        if math.isnan(jitter):
            jitter = 0.0
        jitter = min(1.0, max(0.0, jitter))
        ceiling = self.ceiling(attempt)
        half = ceiling / 2
        return min(ceiling, half + (ceiling - half) * jitter)


class BackoffState:
    """A backoff in progress: the attempt count of the current run of failures."""

    def __init__(self, policy: Backoff) -> None:
        self.policy = policy
        self.attempt = 0

    def next_delay(self) -> float:
        """Returns the delay before the next attempt and counts the attempt."""
        delay = self.policy.delay(self.attempt)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Starts the count over after a success."""
        self.attempt = 0
