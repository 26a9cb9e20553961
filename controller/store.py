"""Run records in blob storage, changed only by ETag-guarded read-modify-write
(:func:`~rolecall.storage.documents.update_document`).

Several controllers (a service and an operator's ``rolecall wait``) may fold events into the
same run at once. A change that loses the race is re-applied to the fresh version, so it must
be idempotent, which the fold is: nothing is lost and nothing is counted twice.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from rolecall.schemas.base import utcnow
from rolecall.schemas.codec import encode_document
from rolecall.schemas.errors import NotFound, UnknownRun
from rolecall.schemas.names import Names
from rolecall.schemas.records import RunRecord, TargetState
from rolecall.storage.clients import Storage
from rolecall.storage.documents import read_document, update_document

MAX_CONFLICT_RETRIES = 50
#: longest a dispatch may take before another controller can take over (1,000 sends: ~3 s)
DISPATCH_LOCK_S = 30


def new_run_id(now: datetime | None = None) -> str:
    now = now or utcnow()
    return f"r{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


class RunStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.container = storage.names.state_container

    def load(self, run_id: str) -> tuple[RunRecord, str]:
        found = read_document(self.storage, self.container, Names.run_blob(run_id), RunRecord)
        if found is None:
            raise self._unknown(run_id)
        return found

    def get(self, run_id: str) -> RunRecord:
        return self.load(run_id)[0]

    def create(self, record: RunRecord) -> RunRecord:
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
        create: Callable[[], RunRecord] | None = None,
        before_write: Callable[[RunRecord, RunRecord], None] | None = None,
    ) -> RunRecord:
        """Apply ``change`` until it lands on the current version (``update_document``).

        ``create()`` makes the record if there is none; without it a missing run is
        UnknownRun. ``before_write(old, new)`` runs after ``change`` and before the
        conditional write: dispatch sends messages there, so a crash can duplicate a message
        but never record a dispatch that did not happen.
        """
        base: RunRecord | None = None  # what change was last applied to: stored or created

        def apply(stored: RunRecord | None) -> RunRecord:
            nonlocal base
            if stored is not None:
                base = stored
            elif create is not None:
                base = create()
            else:
                raise self._unknown(run_id)
            return change(base)

        def announce(_: RunRecord | None, new: RunRecord) -> None:
            if before_write is not None and base is not None:
                before_write(base, new)

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

    def _unknown(self, run_id: str) -> UnknownRun:
        return UnknownRun(f"no run {run_id!r} in namespace {self.storage.names.namespace}")

    @contextmanager
    def dispatch_lock(self, run_id: str) -> Iterator[bool]:
        """Serialise dispatch of one run across controllers: a 30 s lease on its
        :meth:`~Names.run_lock_blob`. Yields False if another controller is dispatching right
        now (it will send what is due; a later fold or sweep catches anything it missed)."""
        path = Names.run_lock_blob(run_id)
        lease = self.storage.try_lease(self.container, path, DISPATCH_LOCK_S)
        try:
            yield lease is not None
        finally:
            if lease is not None:
                self.storage.release_lease(self.container, path, lease)

    def list_ids(self, *, active_only: bool = False) -> list[str]:
        """Run ids; ``active_only`` keeps runs that may still need dispatching (one List
        Blobs call: the state is in each blob's metadata)."""
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
    pending = any(t.state is TargetState.PENDING for t in run.targets.values())
    return {"state": run.state.value, "active": "1" if pending and not run.cancelled else "0"}
