"""Idle back-off for pollers: fast while there is work, cheap when there is none.

Azure Functions' queue trigger polls at 100 ms while messages flow and doubles the interval
when a queue is empty, up to 60 s; we do the same, with jitter so a fleet that booted together
does not poll in lock-step. Every empty poll is a billed transaction, so the ceiling is what an
idle instance costs: two queues polled at most once a minute each, about 123 transactions an
hour, plus the heartbeat (bench/RESULTS.md measures it).
"""

from __future__ import annotations

import random


class IdleBackoff:
    def __init__(
        self, minimum: float = 0.1, maximum: float = 60.0, factor: float = 2.0, jitter: float = 0.1
    ) -> None:
        if not 0 < minimum <= maximum:
            raise ValueError("need 0 < minimum <= maximum")
        self.minimum, self.maximum, self.factor, self.jitter = minimum, maximum, factor, jitter
        self._current = minimum

    @property
    def current(self) -> float:
        return self._current

    def idle(self) -> float:
        """Delay before the next poll after an empty one; grows up to ``maximum``."""
        delay = self._current
        self._current = min(self.maximum, self._current * self.factor)
        return min(self.maximum, delay * (1 + random.uniform(-self.jitter, self.jitter)))  # noqa: S311

    def busy(self) -> None:
        """Work appeared: poll fast again."""
        self._current = self.minimum
