"""Run records in blob storage, and the view of a run that joins them with its results.

A run record changes only with dispatch and cancellation, by ETag-guarded read-modify-write
(:func:`~rolecall.storage.documents.update_document`); what instances report goes to result
documents the fold only adds (controller/results.py). Several controllers (a service and an
operator's ``rolecall wait``) may dispatch and fold at once: a change that loses its race is
re-applied to the fresh version, so nothing is lost and nothing is counted twice.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from urllib.parse import quote

from rolecall.controller.results import Results, assemble, dispatch_view
from rolecall.schemas.base import utcnow
from rolecall.schemas.codec import encode_document
from rolecall.schemas.errors import NotFound, UnknownRun
from rolecall.schemas.names import Names
from rolecall.schemas.runs import RunRecord
from rolecall.storage.clients import Storage
from rolecall.storage.documents import read_document, update_document

MAX_CONFLICT_RETRIES = 50
#: a split run with this many targets or fewer keeps their order in its record (20 kB)
INLINE_ORDER = 1000
#: a dispatch lock lapses this long after its holder stops renewing it (a crashed controller)
DISPATCH_LOCK_S = 30


def new_run_id(now: datetime | None = None) -> str:
    now = now or utcnow()
    return f"r{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


class RunStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.container = storage.names.state_container
        self.results = Results(storage)

    # --- the record ----------------------------------------------------------------------

    def load(self, run_id: str) -> tuple[RunRecord, str]:
        """The stored record (for a split run: without its targets' states) and its ETag."""
        found = read_document(self.storage, self.container, Names.run_blob(run_id), RunRecord)
        if found is None:
            raise self._unknown(run_id)
        return found

    def create(self, record: RunRecord, order: list[str] | None = None) -> RunRecord:
        """Store a new run. A split run keeps a short order in its record (one write: ``run
        --any`` is two transactions with its send); a long one goes first, in its own
        document, so a record is only ever seen with its targets in place."""
        if record.split:
            order = order or []
            if len(order) <= INLINE_ORDER:
                record = record.model_copy(update={"order": order})
            else:
                self.results.write_order(record.run_id, order)
        self.storage.put_blob(
            self.container,
            Names.run_blob(record.run_id),
            encode_document(record),
            create_only=True,
            metadata=_metadata(record),
        )
        return record

    def update(
        self,
        run_id: str,
        change: Callable[[RunRecord], RunRecord],
        *,
        before_write: Callable[[RunRecord, RunRecord], None] | None = None,
    ) -> RunRecord:
        """Apply ``change`` to the stored record until it lands on the current version.
        ``before_write(old, new)`` runs before the conditional write: dispatch sends there,
        so a crash can duplicate a message but never record a dispatch that did not happen."""

        def apply(stored: RunRecord | None) -> RunRecord:
            if stored is None:
                raise self._unknown(run_id)
            return change(stored)

        def announce(old: RunRecord | None, new: RunRecord) -> None:
            if before_write is not None and old is not None:
                before_write(old, new)

        return update_document(
            self.storage,
            self.container,
            Names.run_blob(run_id),
            RunRecord,
            apply,
            before_write=announce,
            stamp=lambda run: run.model_copy(update={"updated_at": utcnow()}),
            metadata=_metadata,
            attempts=MAX_CONFLICT_RETRIES,
            gave_up=f"run {run_id} changed {MAX_CONFLICT_RETRIES} times under us",
        )

    # --- the view ------------------------------------------------------------------------

    def get(self, run_id: str) -> RunRecord:
        """The run as operators see it: every target with what it did."""
        return self.view(self.load(run_id)[0])

    def view(self, record: RunRecord) -> RunRecord:
        deltas = self.results.read(record.run_id)
        # a run from before 0.2 keeps its targets in the record; later reports join them
        if not record.split:
            base = record.targets
        else:
            order = record.order if record.order is not None else self.results.order(record.run_id)
            base = dispatch_view(record, order)
        return assemble(record, base, deltas)

    def _unknown(self, run_id: str) -> UnknownRun:
        return UnknownRun(f"no run {run_id!r} in namespace {self.storage.names.namespace}")

    # --- dispatch lock and listing -------------------------------------------------------

    @contextmanager
    def dispatch_lock(self, run_id: str) -> Iterator[str | None]:
        """Serialise dispatch of one run across controllers: a 30 s lease on its
        :meth:`~Names.run_lock_blob`, which the holder renews while a wave goes out
        (``renew_lock``). Yields the lease id, or None if another controller holds it (it
        sends what is due; a later fold or sweep catches anything it missed)."""
        path = Names.run_lock_blob(run_id)
        lease = self.storage.try_lease(self.container, path, DISPATCH_LOCK_S)
        try:
            yield lease
        finally:
            if lease is not None:
                self.storage.release_lease(self.container, path, lease)

    def renew_lock(self, run_id: str, lease: str) -> None:
        self.storage.renew_lease(self.container, Names.run_lock_blob(run_id), lease)

    def list_ids(self, *, active_only: bool = False) -> list[str]:
        """Run ids; ``active_only`` keeps runs that may still need dispatching (one List
        Blobs call a 5,000 runs: the state is in each record's metadata)."""
        try:
            items = self.storage.list_blobs(
                self.container, Names.runs_prefix(), metadata=active_only
            )
        except NotFound:
            return []
        return [
            run_id
            for i in items
            if (run_id := Names.run_id_of_blob(i.name)) is not None
            and (not active_only or i.metadata.get("active") == "1")
        ]


def _metadata(run: RunRecord) -> dict[str, str]:
    """What a run's blob carries besides the record: whether it still needs dispatching, and
    what ``rolecall runs`` shows, so listing runs reads no record (controller/listing.py).
    Values are quoted: metadata is ASCII, a role or description need not be."""
    return {
        "active": "1" if run.active else "0",
        "role": quote(run.role, safe=""),
        "mode": run.mode.value,
        "created": run.created_at.isoformat(),
        "total": str(run.total if run.split else len(run.targets)),
        "cancelled": "1" if run.cancelled else "0",
        "issuer": quote(run.issuer[:128], safe=""),
        "desc": quote(run.description[:200], safe=""),
    }
