"""A value loaded at most once every few seconds, however many ask for it.

Ten browser tabs polling a run page and a Prometheus scrape arriving together must cost one
storage listing, not eleven: whoever comes while a load runs waits for it and shares its
result (one lock, so one load at a time). A load that fails keeps the last good value and
says why (the page shows it, stale); only with nothing to show does the failure reach the
caller.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from rolecall.schemas.errors import RolecallError

T = TypeVar("T")


class Cached(Generic[T]):
    def __init__(
        self, load: Callable[[], T], ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._load = load
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._value: T | None = None
        self._at = 0.0
        #: why the last load failed (None: it did not); the value is then the one before
        self.error: str | None = None
        #: wall-clock time of the value's load
        self.loaded_at = 0.0

    def get(self) -> T:
        with self._lock:
            if self._value is None or self._clock() - self._at >= self.ttl_s:
                self._refresh()
            assert self._value is not None
            return self._value

    def _refresh(self) -> None:
        try:
            value = self._load()
        except RolecallError as e:
            self.error = e.message
            self._at = self._clock()  # a failing storage is not asked again at once either
            if self._value is None:
                raise
            return
        self._value, self.error = value, None
        self._at, self.loaded_at = self._clock(), time.time()
