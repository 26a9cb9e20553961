"""``rolecall controller``: the optional long-running service that folds events.

Idle back-off as in the worker, so a quiet installation costs about one transaction a minute.
Several may run at once (competing consumers on the events queue). What the fold has done is
kept in a :class:`FoldProgress`, which ``--http`` serves as metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from rolecall import telemetry
from rolecall.controller.dispatch import Dispatcher
from rolecall.controller.fold import EventFolder, FoldStats
from rolecall.schemas.errors import StorageError
from rolecall.storage.backoff import IdleBackoff
from rolecall.storage.clients import Storage

log = logging.getLogger(__name__)


@dataclass
class FoldProgress:
    """What this service's fold has done since it started (counters), and how far behind it
    is (the oldest report its last round found waiting)."""

    rounds: int = 0
    failed_rounds: int = 0
    reports: int = 0
    completions: int = 0
    hellos: int = 0
    refused: int = 0
    lag_s: float = 0.0
    #: wall-clock time of the last round that completed; None before the first
    last_round: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, stats: FoldStats) -> None:
        with self._lock:
            self.rounds += 1
            self.reports += stats.messages
            self.completions += stats.completions
            self.hellos += stats.hellos
            self.refused += stats.poisoned + stats.set_aside
            self.lag_s = stats.oldest_s
            self.last_round = time.time()

    def failed(self) -> None:
        with self._lock:
            self.failed_rounds += 1

    def snapshot(self) -> dict[str, float]:
        """Every figure at one instant (read from another thread: the metrics endpoint)."""
        with self._lock:
            return {
                "rounds": self.rounds, "failed_rounds": self.failed_rounds,
                "reports": self.reports, "completions": self.completions, "hellos": self.hellos,
                "refused": self.refused, "lag_s": self.lag_s,
                "last_round": self.last_round if self.last_round is not None else 0.0,
            }  # fmt: skip


def serve(
    storage: Storage,
    dispatcher: Dispatcher,
    stop: threading.Event,
    *,
    poll_min_s: float = 0.1,
    poll_max_s: float = 60.0,
    sweep_s: float = 60.0,
    progress: FoldProgress | None = None,
) -> None:
    folder = EventFolder(storage, dispatcher)
    backoff = IdleBackoff(poll_min_s, poll_max_s)
    progress = progress or FoldProgress()
    storage.ensure_containers()
    storage.ensure_queue(storage.names.events_queue)
    next_sweep = 0.0
    log.info("folding events of namespace %s", storage.names.namespace)
    while not stop.is_set():
        try:
            with telemetry.span("rolecall.fold"):
                if time.monotonic() >= next_sweep:
                    folder.sweep()
                    next_sweep = time.monotonic() + sweep_s
                stats = folder.fold_once()
        except StorageError as e:
            log.warning("cannot fold events: %s", e)
            progress.failed()
            stop.wait(backoff.idle())
            continue
        except Exception:
            # Whatever an instance sends must not stop the service that folds everyone's
            # reports: log it with its traceback, back off, go on. Reports are only deleted
            # once folded, so nothing is lost by trying again.
            log.exception("unexpected error while folding; continuing")
            progress.failed()
            stop.wait(backoff.idle())
            continue
        progress.record(stats)
        _rest(stats, backoff, stop)
    log.info("stopped")


def _rest(stats: FoldStats, backoff: IdleBackoff, stop: threading.Event) -> None:
    """Straight on after a busy round; back off while there is nothing to fold."""
    if stats.messages:
        log.info(
            "folded %d completions, %d hellos into %d runs; %d report(s) set aside",
            stats.completions, stats.hellos, len(stats.runs), stats.set_aside + stats.poisoned,
        )  # fmt: skip
        backoff.busy()
    else:
        stop.wait(backoff.idle())
