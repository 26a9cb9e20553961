"""The outbox: completions and hello events waiting to be posted, and the claimed messages
waiting on them.

Two rules give "no completion is ever lost" and few transactions at once:

* A claimed message is deleted (or poisoned, or released for retry) only *after* the events
  describing it are on the events queue. A crash in between re-delivers the message, and the
  job marker turns the re-run into a re-report.
* Events are persisted in the state directory as they are added, and posted together: many
  completions share one queue message (one transaction), up to the 64 KiB limit. If posting
  fails they stay on disk and the worker retries before it claims more work.
"""

from __future__ import annotations

import binascii
import json
import logging
import secrets
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import TypeAdapter

from rolecall.schemas.base import utcnow
from rolecall.schemas.codec import MAX_MESSAGE_BYTES, report_parts
from rolecall.schemas.errors import ConfigError, NotFound, StorageError
from rolecall.schemas.events import Event, EventBatch, Started
from rolecall.schemas.names import Names
from rolecall.schemas.signing import b64, canonical_bytes, key_id, unb64
from rolecall.storage.clients import Storage
from rolecall.worker.claim import Claim, Settlement
from rolecall.worker.state import atomic_write

log = logging.getLogger(__name__)

_EVENT = TypeAdapter(Event)
#: JSON budget per events message: base64 grows text by 4/3, keep headroom for the envelope
_BATCH_JSON_BYTES = int(MAX_MESSAGE_BYTES * 3 / 4) - 2048
#: settlements left running in the background while jobs go on: about two batches' worth
_MAX_INFLIGHT = 64

#: A claim and what to do with it once the events about it are posted.
Pending = tuple[Claim, Settlement]


@dataclass
class _Entry:
    path: Path | None  # None: held in memory, its message brings it back after a crash
    events: list[Event]
    added: float = field(default_factory=time.monotonic)


class BatchSigner:
    """Signs each batch with the instance's enrolled key (from its SAS bundle), so the
    controller believes reports about this instance only from it (controller/enrolment.py)."""

    def __init__(self, private_b64: str) -> None:
        try:
            self._key = Ed25519PrivateKey.from_private_bytes(unb64(private_b64))
        except (ValueError, binascii.Error) as e:
            raise ConfigError("the SAS bundle's instance key is not an Ed25519 key") from e
        raw = self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_id = key_id(raw)

    def sign(self, data: dict[str, Any]) -> dict[str, Any]:
        value = b64(self._key.sign(canonical_bytes(data)))
        return {**data, "signature": {"key_id": self.key_id, "algorithm": "ed25519",
                                      "value": value}}  # fmt: skip


class Outbox:
    def __init__(
        self,
        storage: Storage,
        root: Path,
        sender: str,
        flush_s: float,
        container: str,
        signer: BatchSigner | None = None,
    ) -> None:
        self.storage = storage
        self.root = root
        self.sender = sender
        self.flush_s = flush_s
        #: this role's results container: only its role's credentials may create blobs there
        self.container = container
        self.signer = signer
        self._started: list[tuple[float, Started]] = []
        self._entries: list[_Entry] = []
        self._pending: list[Pending] = []
        self._inflight: list[Future[Pending | None]] = []
        self._seq = 0
        self.failing = False
        self._executor: ThreadPoolExecutor | None = None

    def recover(self) -> int:
        """Load events a previous agent process persisted but never posted."""
        for path in sorted(self.root.glob("*.json")):
            try:
                raw = json.loads(path.read_bytes())
                events = [_EVENT.validate_python(e) for e in raw]
            except ValueError:
                log.warning("dropping unreadable outbox entry %s", path.name)
                path.unlink(missing_ok=True)
                continue
            self._entries.append(_Entry(path, events, added=0.0))
        return len(self._entries)

    def add(
        self, events: list[Event], claim: Claim | None = None, then: Settlement | None = None
    ) -> None:
        """Queue events for posting and, with ``claim``, settle it ``then`` once they are.

        Events about a claimed message are kept in memory only: until they are posted the
        message is not deleted, so a crash re-delivers it and the job marker re-reports.
        Events with no message behind them (hello, baseline steps) are persisted, since
        nothing else would bring them back."""
        if events:
            path = None
            if claim is None:
                self._seq += 1
                path = self.root / f"{time.time_ns():020d}-{self._seq:06d}.json"
                body = json.dumps([e.model_dump(mode="json", exclude_none=True) for e in events])
                atomic_write(path, body.encode())
            self._entries.append(_Entry(path, events))
        if claim is not None:
            assert then is not None, "a claim handed to the outbox needs its settlement"
            self._pending.append((claim, then))

    def holds(self, claim: Claim) -> bool:
        """``claim``'s settlement is waiting here (its message is the outbox's now)."""
        return any(c is claim for c, _ in self._pending)

    def started(self, note: Started) -> None:
        """Say a job started, with the next batch: ``status`` shows it running. Kept in
        memory only (a note lost in a crash costs nothing: the job's result follows)."""
        self._started.append((time.monotonic(), note))

    def due(self) -> bool:
        """Time to flush: something waited ``flush_s``, or a held lease is running short."""
        now = time.monotonic()
        if any(now - e.added >= self.flush_s for e in self._entries):
            return True
        if any(now - added >= self.flush_s for added, _ in self._started):
            return True
        return any(claim.running_short for claim, _ in self._pending)

    def flush(self, *, wait: bool = True) -> bool:
        """Post events, then settle their messages. False if events could not be posted or a
        settlement must wait for storage to come back.

        With ``wait=False`` (between batches of jobs) the settlements run in the background
        while the next jobs do: a batch's 32 deletes are 32 round trips, and a worker that
        waits for them leaves its storage idle while it runs jobs and itself idle while
        storage deletes. The events are still posted first, and synchronously: no message
        is deleted before its completion is on the events queue."""
        if self._entries or self._started:
            try:
                self._post()
            except StorageError as e:
                if not self.failing:
                    log.warning("cannot post events yet; keeping them on disk: %s", e)
                self.failing = True
                return False
        pending, self._pending = self._pending, []
        if wait and len(pending) <= 2 and not self._inflight:
            self._pending.extend(p for p in pending if not _settle(p))
        else:
            self._inflight.extend(self._pool().submit(_settle_later, p) for p in pending)
        # bounded even when not waiting: a backlog of deletes would eat into their leases
        self._collect(keep=0 if wait else _MAX_INFLIGHT)
        self.failing = bool(self._pending)
        return not self.failing

    def _collect(self, keep: int) -> None:
        """Take in finished settlements (waiting until at most ``keep`` are still running);
        those storage refused come back for the next flush."""
        running: list[Future[Pending | None]] = []
        for i, f in enumerate(self._inflight):
            if f.done() or len(self._inflight) - i > keep:
                kept = f.result()
                if kept is not None:
                    self._pending.append(kept)
            else:
                running.append(f)
        self._inflight = running

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="settle")
        return self._executor

    def _post(self) -> None:
        started = [note for _, note in self._started]
        while self._entries or started:
            chunk: list[_Entry] = []
            size = sum(len(n.model_dump_json()) for n in started)
            for entry in self._entries:
                n = sum(len(e.model_dump_json(exclude_none=True)) for e in entry.events)
                if chunk and size + n > _BATCH_JSON_BYTES:
                    break
                chunk.append(entry)
                size += n
            batch = EventBatch(
                sender=self.sender, events=[e for c in chunk for e in c.events], started=started
            )
            data = batch.model_dump(mode="json", exclude_none=True)
            if self.signer is not None:
                data = self.signer.sign(data)
            self._put(data)
            self._started, started = [], []
            for entry in chunk:
                if entry.path is not None:
                    entry.path.unlink(missing_ok=True)
            self._entries = self._entries[len(chunk) :]

    def _put(self, data: dict[str, Any]) -> None:
        """One report blob (create-only: nobody's report is overwritten, ours included), in
        its metadata when small, so the controller lists reports rather than reading them."""
        body, metadata = report_parts(data)
        name = Names.report_blob(self.sender, utcnow(), secrets.token_hex(4))
        try:
            self.storage.put_blob(self.container, name, body, create_only=True,
                                  metadata=metadata)  # fmt: skip
        except NotFound:
            self.storage.ensure_container(self.container)  # where our credentials allow
            self.storage.put_blob(self.container, name, body, create_only=True,
                                  metadata=metadata)  # fmt: skip


def _settle(pending: Pending) -> bool:
    claim, settlement = pending
    return claim.settle(settlement)


def _settle_later(pending: Pending) -> Pending | None:
    """For the pool: the pending settlement again if it must be retried."""
    return None if _settle(pending) else pending
