"""``rolecall controller``: the optional long-running service that folds events.

Idle back-off as in the worker, so a quiet installation costs about one transaction a minute.
Several may run at once (competing consumers on the events queue).
"""

from __future__ import annotations

import logging
import threading
import time

from rolecall.controller.dispatch import Dispatcher
from rolecall.controller.fold import EventFolder
from rolecall.schemas.errors import StorageError
from rolecall.storage.backoff import IdleBackoff
from rolecall.storage.clients import Storage

log = logging.getLogger(__name__)


def serve(
    storage: Storage,
    dispatcher: Dispatcher,
    stop: threading.Event,
    *,
    poll_min_s: float = 0.1,
    poll_max_s: float = 60.0,
    sweep_s: float = 60.0,
) -> None:
    folder = EventFolder(storage, dispatcher)
    backoff = IdleBackoff(poll_min_s, poll_max_s)
    storage.ensure_containers()
    storage.ensure_queue(storage.names.events_queue)
    next_sweep = 0.0
    log.info("folding events of namespace %s", storage.names.namespace)
    while not stop.is_set():
        try:
            if time.monotonic() >= next_sweep:
                folder.sweep()
                next_sweep = time.monotonic() + sweep_s
            stats = folder.fold_once()
        except StorageError as e:
            log.warning("cannot fold events: %s", e)
            stop.wait(backoff.idle())
            continue
        except Exception:
            # Whatever an instance sends must not stop the service that folds everyone's
            # reports: log it with its traceback, back off, go on. Reports are only deleted
            # once folded, so nothing is lost by trying again.
            log.exception("unexpected error while folding; continuing")
            stop.wait(backoff.idle())
            continue
        if stats.messages:
            log.info(
                "folded %d completions, %d hellos into %d runs; %d report(s) set aside",
                stats.completions, stats.hellos, len(stats.runs), stats.set_aside + stats.poisoned,
            )  # fmt: skip
            backoff.busy()
        else:
            stop.wait(backoff.idle())
    log.info("stopped")
