"""A value loaded at most once every few seconds, however many ask for it, and never waited for
once there is one to show.

Ten browser tabs polling a run page and a Prometheus scrape arriving together must cost one
storage listing, not eleven: one load runs at a time and everyone shares its result. Only the
first load is waited for (there is nothing to show before it). After that, whoever finds the
value older than ``ttl_s`` starts a load in the background and is answered at once with what
there is: listing 10,000 instance records takes seconds, and a page must not hang for them
every few seconds. A load that fails keeps the last good value and says why (the page shows
it, stale); only with nothing to show does the failure reach the caller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from rolecall.schemas.errors import RolecallError

T = TypeVar("T")
log = logging.getLogger(__name__)


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
        self._loading = False
        self._stopped = False
        #: why the last load failed (None: it did not); the value is then the one before
        self.error: str | None = None
        #: wall-clock time of the value's load
        self.loaded_at = 0.0

    def get(self) -> T:
        with self._lock:
            if self._value is None:
                self._first()
            elif not (self._loading or self._stopped) and self._clock() - self._at >= self.ttl_s:
                self._loading = True
                threading.Thread(target=self._refresh, name="dashboard-load", daemon=True).start()
            assert self._value is not None
            return self._value

    def _first(self) -> None:
        """The first load, under the lock: whoever else asks meanwhile waits for it."""
        try:
            value = self._load()
        except RolecallError as e:
            self.error = e.message
            raise
        self._value, self.error = value, None
        self._at, self.loaded_at = self._clock(), time.time()

    def _refresh(self) -> None:
        """A later load, in the background; the lock is held only to swap the result in."""
        try:
            value = self._load()
        except Exception as e:  # the last good value stays; the page says why it is old
            if not isinstance(e, RolecallError) and not self._stopped:
                log.exception("the dashboard could not load its data; showing the last")
            with self._lock:
                self.error = e.message if isinstance(e, RolecallError) else str(e)
                self._at, self._loading = self._clock(), False  # not asked again at once
            return
        with self._lock:
            self._value, self.error = value, None
            self._at, self.loaded_at, self._loading = self._clock(), time.time(), False

    def stop(self) -> None:
        """No more loads; one under way may fail as its client closes, and says nothing."""
        with self._lock:
            self._stopped = True
